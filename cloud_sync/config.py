"""Cloud-sync configuration (the ``cloud:`` section of the gateway YAML).

One model per section, unknown keys rejected, uplinks chosen by a discriminated union on
``type``. Secrets never appear in the file: fields ending in ``_env`` name the
environment variable that holds them, read when the uplink connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edge.config import StrictModel
from edge.tls import TLSConfig

DataClass = Literal["alarm", "event", "status", "minute"]
ALL_CLASSES: tuple[DataClass, ...] = ("alarm", "event", "status", "minute")
_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class _UplinkBase(StrictModel):
    name: str = Field(pattern=_NAME, description="Uplink name; delivery state is kept per name.")
    classes: list[DataClass] = Field(
        default_factory=lambda: list(ALL_CLASSES),
        min_length=1,
        description="Data classes this uplink carries (alarm, event, status, minute).",
    )
    batch_records: int = Field(
        default=500, ge=1, le=5000, description="Records taken from the outbox per send."
    )


class MqttUplinkConfig(_UplinkBase):
    """MQTT to the cloud broker: QoS 1, persistent session, PUBACK marks delivery."""

    type: Literal["mqtt"] = Field(description="Uplink type.")
    host: str = Field(min_length=1, description="Cloud broker host.")
    port: int = Field(default=8883, ge=1, le=65535, description="Cloud broker port.")
    protocol: Literal["3.1.1", "5"] = Field(default="5", description="MQTT protocol version.")
    client_id: str | None = Field(
        default=None,
        max_length=64,
        description="Fixed client id of the persistent session; default offsite-edge-up-<gateway>.",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive.")
    session_expiry_s: int = Field(
        default=7 * 86400,
        ge=0,
        description="MQTT 5 session expiry; the broker keeps our session this long offline.",
    )
    topic_prefix: str = Field(
        default="offsite", pattern=r"^[^+#]{1,64}$", description="First level of the topic tree."
    )
    records_per_message: int = Field(
        default=100, ge=1, le=1000, description="Records packed into one MQTT message."
    )
    ack_timeout_s: float = Field(
        default=15.0, gt=0, le=300, description="Wait this long for PUBACKs before retrying."
    )
    username_env: str | None = Field(default=None, description="Env var holding the username.")
    password_env: str | None = Field(default=None, description="Env var holding the password.")
    tls: TLSConfig = Field(default_factory=TLSConfig, description="TLS settings.")
    commands: bool = Field(default=True, description="Subscribe to downlink commands.")


class HttpsUplinkConfig(_UplinkBase):
    """HTTPS batch POST; HTTP 2xx marks delivery; idempotency keys per batch and record."""

    type: Literal["https"] = Field(description="Uplink type.")
    url: str = Field(
        pattern=r"^https?://", description="Ingest URL, e.g. https://cloud.example/v1/records."
    )
    timeout_s: float = Field(default=15.0, gt=0, le=300, description="Per-request timeout.")
    token_env: str | None = Field(
        default=None, description="Env var holding a bearer token for the Authorization header."
    )
    tls: TLSConfig = Field(
        default_factory=TLSConfig, description="CA and client certificate for https URLs."
    )


class Hj212UplinkConfig(_UplinkBase):
    """HJ 212-2017 over TCP to an environmental data platform; 9014 marks delivery."""

    type: Literal["hj212"] = Field(description="Uplink type.")
    classes: list[DataClass] = Field(
        default_factory=lambda: list[DataClass](["minute"]),
        min_length=1,
        description="Only minute data maps onto HJ 212 (2051, 2061 and 2011); keep 'minute'.",
    )
    host: str = Field(min_length=1, description="Platform host.")
    port: int = Field(ge=1, le=65535, description="Platform TCP port.")
    st: str = Field(
        default="22", pattern=r"^\d{2}$", description="System code ST (22 air quality)."
    )
    mn: str = Field(min_length=1, max_length=24, description="Monitoring-point number MN.")
    sensor_mn: dict[str, str] = Field(
        default_factory=dict, description="Per-sensor MN overriding mn (sensor id → MN)."
    )
    pw_env: str | None = Field(
        default=None, description="Env var holding the 6-char password PW (default 123456)."
    )
    codes: dict[str, str] = Field(
        default_factory=dict,
        description="Quantity → pollutant code; defaults to each hj212 sensor's decoder codes, "
        "else the quantity name.",
    )
    ack_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="HJ 212 answer timeout (standard: 10 s)."
    )
    retries: int = Field(default=3, ge=0, le=10, description="Resends before reconnecting (3).")
    utc_offset_hours: float = Field(default=8.0, ge=-12, le=14, description="DataTime time zone.")
    realtime: bool = Field(
        default=True, description="Also send 2011 real-time frames (latest values, minute close)."
    )
    hourly: bool = Field(default=True, description="Also send 2061 hour data when an hour closes.")


Uplink = Annotated[
    MqttUplinkConfig | HttpsUplinkConfig | Hj212UplinkConfig, Field(discriminator="type")
]


class OutboxConfig(StrictModel):
    """How long records are kept, and how much disk the outbox may use."""

    quota_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=4096,
        description="Disk quota for outbox records; beyond it the oldest routine data is evicted.",
    )
    retention_s: float = Field(
        default=7 * 86400, ge=0, description="Keep delivered records this long, then prune."
    )
    ttl_s: dict[DataClass, float] = Field(
        default_factory=lambda: dict[DataClass, float](
            {"minute": 30 * 86400.0, "status": 7 * 86400.0}
        ),
        description="Per-class time to live of undelivered records; expiry leaves a gap record.",
    )
    minute_close_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="A minute closes this long after it ends; later readings send a correction.",
    )
    status_interval_s: float = Field(
        default=300.0, ge=1, description="Seconds between gateway status records."
    )


class BackoffConfig(StrictModel):
    """Exponential backoff with full jitter between failed sends."""

    initial_s: float = Field(default=1.0, gt=0, le=60, description="First retry delay.")
    max_s: float = Field(default=60.0, gt=0, le=3600, description="Longest retry delay.")


class CloudConfig(StrictModel):
    """Store-and-forward to the supervision cloud."""

    key_file: Path | None = Field(
        default=None,
        description="Ed25519 key of the gateway (0600); default gateway.key next to the database.",
    )
    uplinks: list[Uplink] = Field(min_length=1, description="Where records go (one or several).")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Outbox limits.")
    backoff: BackoffConfig = Field(default_factory=BackoffConfig, description="Retry timing.")
    rollback_timeout_s: float = Field(
        default=60.0,
        ge=5,
        le=3600,
        description="After a remote config change, roll back if no uplink reconnects in time.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> CloudConfig:
        names = [u.name for u in self.uplinks]
        if len(set(names)) != len(names):
            raise ValueError(f"uplink names repeat: {names}")
        return self
