"""Cloud-sync configuration (the ``cloud:`` section of the gateway YAML).

One model per section, unknown keys rejected, uplinks chosen by a discriminated union on
``type``. Secrets never appear in the file: fields ending in ``_env`` name the
environment variable that holds them; a named variable that is unset is an error (at
start, at ``config check`` and when the uplink connects), never an empty secret.
Transport fails closed too: every cloud uplink uses TLS unless its section says
``tls: {enabled: false}``, and an ``http://`` URL never carries a token.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cloud_sync.errors import SecretError
from cloud_sync.policy import TTL_FLOOR_S
from edge.config import StrictModel
from edge.tls import TLSConfig

DataClass = Literal["alarm", "event", "status", "minute"]
ALL_CLASSES: tuple[DataClass, ...] = ("alarm", "event", "status", "minute")
_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_ENV = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class CloudTLSConfig(TLSConfig):
    """TLS to the cloud: on unless the config says ``enabled: false`` (logged as a warning)."""

    enabled: bool = Field(
        default=True,
        description="Connect with TLS (default). false sends in clear; the gateway logs a "
        "warning at every start.",
    )


def read_secret(env_name: str) -> str:
    """The value of the environment variable ``env_name``; raise SecretError when unset.

    An empty value counts as unset: a secret that silently became "" would let an uplink
    log in with no password, or send a bearer token that says nothing.
    """
    value = os.environ.get(env_name)
    if not value:
        raise SecretError(f"environment variable {env_name} is not set (or empty)")
    return value


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
    username_env: str | None = Field(
        default=None, pattern=_ENV, description="Env var holding the username."
    )
    password_env: str | None = Field(
        default=None, pattern=_ENV, description="Env var holding the password."
    )
    tls: CloudTLSConfig = Field(
        default_factory=CloudTLSConfig, description="TLS settings (on unless enabled: false)."
    )
    commands: bool = Field(default=True, description="Subscribe to downlink commands.")


class HttpsUplinkConfig(_UplinkBase):
    """HTTPS batch POST; HTTP 2xx marks delivery; idempotency keys per batch and record."""

    type: Literal["https"] = Field(description="Uplink type.")
    url: str = Field(
        pattern=r"^https?://", description="Ingest URL, e.g. https://cloud.example/v1/records."
    )
    timeout_s: float = Field(default=15.0, gt=0, le=300, description="Per-request timeout.")
    token_env: str | None = Field(
        default=None,
        pattern=_ENV,
        description="Env var holding a bearer token for the Authorization header.",
    )
    tls: CloudTLSConfig = Field(
        default_factory=CloudTLSConfig,
        description="CA and client certificate for https URLs; an http:// URL needs "
        "enabled: false.",
    )

    @model_validator(mode="after")
    def _scheme_matches_tls(self) -> HttpsUplinkConfig:
        plain = self.url.startswith("http://")
        if plain and self.token_env is not None:
            raise ValueError("an http:// url would send the bearer token in clear; use https://")
        if plain and self.tls.enabled:
            raise ValueError("url is http:// but TLS is on: use https:// or tls: {enabled: false}")
        if not plain and not self.tls.enabled:
            raise ValueError("url is https:// but tls.enabled is false")
        return self


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
    st: str | None = Field(
        default=None,
        pattern=r"^\d{2}$",
        description="System code ST for every sensor; default per sensor by profile/kind "
        "(noise 23, water 21, catering fume 31, soil 25, else 22 air).",
    )
    sensor_st: dict[str, Annotated[str, Field(pattern=r"^\d{2}$")]] = Field(
        default_factory=dict,
        description="Per-sensor ST overriding st (sensor id → ST), e.g. 36 for a noise source.",
    )
    mn: str = Field(min_length=1, max_length=24, description="Monitoring-point number MN.")
    sensor_mn: dict[str, str] = Field(
        default_factory=dict, description="Per-sensor MN overriding mn (sensor id → MN)."
    )
    pw_env: str = Field(
        pattern=_ENV,
        description="Env var holding the password PW the platform assigned (no default).",
    )
    codes: dict[str, str] = Field(
        default_factory=dict,
        description="Quantity → pollutant code, overriding the sensor's profile and decoder "
        "codes (needed where no national code exists, e.g. cooking fume); else the quantity name.",
    )
    decimals: dict[str, Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=dict,
        description="Pollutant code → decimals printed, overriding HJ 212-2017 Annex B.",
    )
    default_decimals: int = Field(
        default=3, ge=0, le=6, description="Decimals for codes Annex B does not list."
    )
    eflag_chars: int = Field(
        default=4,
        ge=0,
        le=7,
        description="Other data flags of a mixed minute reported in -EFlag (C4 in the "
        "standard: 4; 7 carries all; 0 sends no -EFlag).",
    )
    time_tolerance_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="A platform set-time (1012) is answered done only when the gateway clock "
        "already agrees within this; the system clock is never set from the platform.",
    )
    audit_every_s: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="At most one audit record per request code (CN) in this time; the "
        "suppressed count goes into the next one.",
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
    daily: bool = Field(
        default=True,
        description="Also send 2031 day data (noise: Ld/Ln/Ldn) once all 24 hour records of "
        "a local day have passed through this uplink.",
    )
    tls: CloudTLSConfig = Field(
        default_factory=CloudTLSConfig,
        description="TLS to the platform (on by default); a plain-TCP platform needs "
        "enabled: false, which is logged as a warning.",
    )


Uplink = Annotated[
    MqttUplinkConfig | HttpsUplinkConfig | Hj212UplinkConfig, Field(discriminator="type")
]


class OutboxConfig(StrictModel):
    """How long records are kept, and how much disk the outbox may use."""

    quota_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=4096,
        description="Disk quota for outbox records; beyond it delivered records, then the "
        "oldest undelivered minute and status data are evicted. Undelivered alarms and events are "
        "never evicted by the quota.",
    )
    retention_s: float = Field(
        default=7 * 86400, ge=0, description="Keep delivered records this long, then prune."
    )
    ttl_s: dict[DataClass, float] = Field(
        default_factory=lambda: dict[DataClass, float](
            {"minute": 30 * 86400.0, "status": 7 * 86400.0}
        ),
        description="Per-class time to live of undelivered records; expiry leaves a gap record. "
        "Never below the regulator floors: alarm and event 365 days, minute 7 days, status 1 day.",
    )

    @field_validator("ttl_s")
    @classmethod
    def _regulator_floors(cls, value: dict[DataClass, float]) -> dict[DataClass, float]:
        for data_class, ttl in value.items():
            floor = TTL_FLOOR_S[data_class]
            if ttl < floor:
                raise ValueError(
                    f"{data_class}: {ttl:g} s is below the regulator floor of {floor:g} s "
                    f"({floor / 86400:g} days); undelivered {data_class} records are kept at least "
                    "that long"
                )
        return value

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


class RegulatorKeyConfig(StrictModel):
    """A regulator public key whose signed commands the gateway obeys (set at commissioning)."""

    name: str = Field(
        pattern=_NAME, description="Who holds the key; recorded as the issuer of its commands."
    )
    public_key: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Raw Ed25519 public key, 64 lower-case hex digits "
        "(`offsite-edge cloud keygen` prints it).",
    )


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
        description="After a remote config change, roll back unless the cloud acknowledges a "
        "record sent under it within this time.",
    )
    regulator_keys: list[RegulatorKeyConfig] = Field(
        default_factory=list,
        description="Regulator keys whose signed commands are obeyed; none: every command is "
        "refused. A remote config cannot change them.",
    )

    def plaintext_uplinks(self) -> list[str]:
        """Names of the uplinks whose config turns TLS off (the gateway warns about each)."""
        return [u.name for u in self.uplinks if not u.tls.enabled]

    @model_validator(mode="after")
    def _unique_names(self) -> CloudConfig:
        names = [u.name for u in self.uplinks]
        if len(set(names)) != len(names):
            raise ValueError(f"uplink names repeat: {names}")
        keys = [k.public_key for k in self.regulator_keys]
        if len(set(keys)) != len(keys) or len({k.name for k in self.regulator_keys}) != len(keys):
            raise ValueError("regulator_keys repeat a name or a key")
        return self
