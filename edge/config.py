"""Gateway configuration: validated pydantic models, loaded from one YAML file.

Every model forbids unknown keys, so a technician's typo is an error rather than a
silently ignored setting. Validators only check values; they never open files, sockets
or hardware. Secrets are never in the file: the broker credentials are read from the
environment variables the config names, when the gateway connects.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cloud_sync.config import CloudConfig
from edge.tls import TLSConfig
from sensors.standards import HealthConfig, StandardRef
from vision.config import VisionConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SensorKind = Literal["noise", "gas", "water", "soil"]

# GB 32100-2015: unified social credit code alphabet (no I, O, Z, S, V) and check weights.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_char(first17: str) -> str:
    """Return the GB 32100-2015 check character for the first 17 characters of a code."""
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


class GatewayIdentity(_Model):
    """Who this gateway is."""

    id: str = Field(
        pattern=_ID_PATTERN,
        description="Gateway id, unique within the supervision platform; also the MQTT client id "
        "prefix and the namespace of the gateway's sequence numbers.",
    )


class SiteConfig(_Model):
    """The monitored enterprise."""

    name: str = Field(min_length=1, max_length=200, description="Enterprise name as registered.")
    credit_code: str = Field(
        description="Unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters "
        "with a check character."
    )

    @field_validator("credit_code")
    @classmethod
    def _check_uscc(cls, value: str) -> str:
        code = value.strip().upper()
        if not re.fullmatch(rf"[{_USCC_ALPHABET}]{{18}}", code):
            raise ValueError("must be 18 characters of 0-9 and A-Y except I, O, S, V, Z")
        expected = uscc_check_char(code[:17])
        if code[17] != expected:
            raise ValueError(f"check character is {code[17]!r}, expected {expected!r}")
        return code


class BrokerConfig(_Model):
    """The local MQTT broker the sensors publish to."""

    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")
    protocol: Literal["3.1.1", "5"] = Field(
        default="3.1.1", description="MQTT protocol version used to talk to the broker."
    )
    client_id: str | None = Field(
        default=None,
        max_length=64,
        description="MQTT client id; must stay the same across restarts for the persistent "
        "session. Defaults to 'offsite-edge-<gateway id>'.",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive in seconds.")
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="MQTT 5 session expiry: how long the broker keeps queued readings while the "
        "gateway is away (MQTT 3.1.1 sessions do not expire).",
    )
    username_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the broker user name.",
    )
    password_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the broker password.",
    )
    tls: TLSConfig = Field(default_factory=TLSConfig, description="TLS settings.")
    reconnect_max_s: float = Field(
        default=30.0, gt=0, le=600, description="Longest wait between reconnect attempts."
    )

    @model_validator(mode="after")
    def _password_needs_user(self) -> Self:
        if self.password_env is not None and self.username_env is None:
            raise ValueError("password_env is set but username_env is not")
        return self


class StoreConfig(_Model):
    """The gateway's one SQLite database."""

    path: Path = Field(
        default=Path("/var/lib/offsite-edge/gateway.db"),
        description="SQLite database file; relative paths are resolved against the config file.",
    )
    commit_interval_ms: int = Field(
        default=1000,
        ge=5,
        le=5000,
        description="Group commit: the longest a received reading waits before its batch is "
        "committed (and only then acknowledged to the broker). Each commit writes a few "
        "database pages whatever its size, so longer intervals spare the SD card.",
    )
    commit_max_readings: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="Group commit: a batch is committed early once it holds this many messages.",
    )
    dead_letter_keep: int = Field(
        default=10_000,
        ge=100,
        le=10_000_000,
        description="Newest dead letters kept; older ones are pruned so a misbehaving device "
        "cannot fill the disk (the total count is kept).",
    )
    raw_history: int = Field(
        default=60,
        ge=0,
        le=10_000,
        description="Last raw readings kept in memory per sensor for context (never written to "
        "disk one row per reading, to spare the SD card).",
    )


class IngestConfig(_Model):
    """How messages are received and screened."""

    max_payload_bytes: int = Field(
        default=8192, ge=16, le=1_048_576, description="Larger payloads are dead-lettered."
    )
    dead_letter_payload_bytes: int = Field(
        default=512,
        ge=0,
        le=65536,
        description="How much of a rejected payload is kept in its dead-letter row.",
    )
    catch_all: list[str] = Field(
        default_factory=list,
        description="Extra topic filters to subscribe to (e.g. 'site/#'), so that devices "
        "publishing where no sensor is configured show up as dead letters instead of vanishing.",
    )


class Calibration(_Model):
    """Linear calibration: calibrated = raw × gain + offset."""

    gain: float = Field(
        default=1.0, allow_inf_nan=False, description="Multiplier on the raw value."
    )
    offset: float = Field(
        default=0.0,
        allow_inf_nan=False,
        description="Added after the gain, in the quantity's unit.",
    )


class QuantityConfig(_Model):
    """One measured quantity of a sensor."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="Quantity name, e.g. LA (A-weighted level), fume, pH, DO.",
    )
    unit: str = Field(min_length=1, max_length=16, description="Unit, e.g. dB(A), mg/m3, mg/L.")
    range: tuple[float, float] = Field(
        description="Physical range [min, max] of the instrument; calibrated values outside it "
        "are instrument faults and are dead-lettered."
    )
    calibration: Calibration = Field(
        default_factory=Calibration, description="Per-quantity calibration."
    )
    aggregate: Literal["auto", "arithmetic", "energy"] = Field(
        default="auto",
        description="How the minute mean is formed: 'energy' for sound levels (Leq, "
        "10·log10 of the mean of 10^(L/10)), 'arithmetic' otherwise; 'auto' picks energy for "
        "units starting with dB.",
    )
    required: bool = Field(
        default=True,
        description="A message lacking a required quantity is dead-lettered for that quantity.",
    )

    @field_validator("range")
    @classmethod
    def _range_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise ValueError("must be two finite numbers [min, max] with min < max")
        return value

    @property
    def energy_average(self) -> bool:
        """True when the minute mean is an energy average (Leq)."""
        if self.aggregate == "auto":
            return self.unit.lower().startswith("db")
        return self.aggregate == "energy"


class JsonDecoderConfig(_Model):
    """JSON payload; each quantity is read from a dotted path."""

    type: Literal["json"] = Field(description="Decoder type.")
    fields: dict[str, str] = Field(
        description="Quantity name → dotted path in the JSON object, e.g. {LA: data.la}; "
        "list items by index: values.0."
    )
    timestamp: str | None = Field(
        default=None, description="Dotted path of the device timestamp, if the payload has one."
    )
    timestamp_format: Literal["epoch_s", "epoch_ms", "iso8601"] = Field(
        default="epoch_s", description="How the device timestamp is written."
    )
    flags: dict[str, str] = Field(
        default_factory=dict,
        description="Quantity name → dotted path of its HJ 212 data flag (N, F, M, S, D, C, T, B).",
    )


class NumberDecoderConfig(_Model):
    """Plain-text number payload, e.g. b'52.3', for a sensor with one quantity."""

    type: Literal["number"] = Field(description="Decoder type.")


class Hj212DecoderConfig(_Model):
    """HJ 212-2017 frame payload, as data loggers publish it."""

    type: Literal["hj212"] = Field(description="Decoder type.")
    codes: dict[str, str] = Field(
        description="Quantity name → pollutant code (e.g. {LA: LA, pm25: a34004, pH: w01001})."
    )
    value_field: str = Field(
        default="Rtd",
        pattern=r"^[A-Za-z]{1,12}$",
        description="CP field suffix holding the value: Rtd (real-time), Avg, Min, Max, Data…",
    )
    mn: str | None = Field(
        default=None,
        description="Only accept frames from this MN (device number); others are dead-lettered.",
    )
    utc_offset_hours: float = Field(
        default=8.0, ge=-12, le=14, description="Time zone of DataTime (China: +8)."
    )


Decoder = Annotated[
    JsonDecoderConfig | NumberDecoderConfig | Hj212DecoderConfig, Field(discriminator="type")
]


class SensorConfig(_Model):
    """One installed sensor."""

    id: str = Field(pattern=_ID_PATTERN, description="Sensor id, unique on this gateway.")
    kind: SensorKind = Field(description="What the sensor measures: noise, gas, water or soil.")
    topic: str = Field(
        min_length=1,
        max_length=256,
        description="MQTT topic the sensor publishes to (exact topic, no wildcards).",
    )
    decoder: Decoder = Field(description="How the payload is decoded.")
    quantities: list[QuantityConfig] = Field(
        min_length=1, description="Quantities the sensor reports, with units and calibration."
    )
    location: str = Field(default="", max_length=200, description="Where it is installed.")
    standard: StandardRef | None = Field(
        default=None,
        description="The standard profile its readings are judged against (none: stored only).",
    )
    health: HealthConfig = Field(
        default_factory=HealthConfig,
        description="When the sensor counts as offline or stuck.",
    )

    @field_validator("topic")
    @classmethod
    def _exact_topic(cls, value: str) -> str:
        if "+" in value or "#" in value:
            raise ValueError("must be an exact topic, without + or # wildcards")
        return value

    @model_validator(mode="after")
    def _decoder_matches_quantities(self) -> Self:
        names = [q.name for q in self.quantities]
        if len(set(names)) != len(names):
            raise ValueError(f"quantity names repeat: {names}")
        decoder = self.decoder
        if isinstance(decoder, NumberDecoderConfig):
            if len(names) != 1:
                raise ValueError("the number decoder needs exactly one quantity")
            return self
        mapped = decoder.fields if isinstance(decoder, JsonDecoderConfig) else decoder.codes
        unknown = sorted(set(mapped) - set(names))
        if unknown:
            raise ValueError(f"decoder maps quantities that are not declared: {unknown}")
        missing = sorted(set(names) - set(mapped))
        if missing:
            raise ValueError(f"declared quantities have no decoder mapping: {missing}")
        if isinstance(decoder, JsonDecoderConfig):
            stray = sorted(set(decoder.flags) - set(names))
            if stray:
                raise ValueError(f"flags map quantities that are not declared: {stray}")
        return self


class GatewayConfig(_Model):
    """The whole gateway, as described by one YAML file."""

    gateway: GatewayIdentity = Field(description="Gateway identity.")
    site: SiteConfig = Field(description="The monitored enterprise this gateway reports for.")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="Local MQTT broker.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Local SQLite store.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Message screening.")
    vision: VisionConfig | None = Field(
        default=None,
        description="Kitchen cameras and violation detection (明厨亮灶); none: no video.",
    )
    sensors: list[SensorConfig] = Field(default_factory=list, description="Installed sensors.")
    cloud: CloudConfig | None = Field(
        default=None, description="Store-and-forward to the supervision cloud (none: local only)."
    )

    @model_validator(mode="after")
    def _unique_sensors(self) -> Self:
        ids = [s.id for s in self.sensors]
        dup_ids = sorted({i for i in ids if ids.count(i) > 1})
        if dup_ids:
            raise ValueError(f"sensor ids repeat: {dup_ids}")
        topics = [s.topic for s in self.sensors]
        dup_topics = sorted({t for t in topics if topics.count(t) > 1})
        if dup_topics:
            raise ValueError(f"several sensors share a topic: {dup_topics}")
        return self

    @property
    def client_id(self) -> str:
        """The MQTT client id for the persistent session."""
        return self.broker.client_id or f"offsite-edge-{self.gateway.id}"
