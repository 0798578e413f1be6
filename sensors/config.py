"""Sensor-side configuration: the local broker, message screening, sensors, their
quantities and decoders, the standard each is judged against, and its health checks.

These are the ``broker:``, ``ingest:`` and ``sensors:`` sections of the gateway YAML
(composed in ``edge.app.config``). Secrets are never in the file: the broker credentials
are read from the environment variables the config names, when the gateway connects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Literal, Protocol, Self

from pydantic import Field, field_validator, model_validator

from edge.config import ID_PATTERN, StoreConfig, StrictModel
from edge.tls import TLSConfig

# Re-exported (mypy needs the alias): the health block moved to its own module for size.
from sensors.health_config import HealthConfig as HealthConfig  # noqa: PLC0414

SensorKind = Literal["noise", "gas", "water", "soil"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class BrokerConfig(StrictModel):
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


class IngestConfig(StrictModel):
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
    max_skew_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        allow_inf_nan=False,
        description="How far a reading's device timestamp may lie ahead of the time it was "
        "received (seconds); a reading dated later is a dead letter, so a device clock "
        "running ahead cannot move the judging windows into the future.",
    )
    max_lateness_s: float = Field(
        default=7 * 86_400,
        gt=0,
        le=100 * 365 * 86_400,
        allow_inf_nan=False,
        description="How far a reading's device timestamp may lie behind the time it was "
        "received (seconds); older readings are dead letters. Generous by default (7 days) "
        "for sensors that buffer while offline; raise it to replay an archive.",
    )


class Calibration(StrictModel):
    """Linear calibration: calibrated = raw × gain + offset."""

    gain: float = Field(
        default=1.0, allow_inf_nan=False, description="Multiplier on the raw value."
    )
    offset: float = Field(
        default=0.0,
        allow_inf_nan=False,
        description="Added after the gain, in the quantity's unit.",
    )


class QuantityConfig(StrictModel):
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


class JsonDecoderConfig(StrictModel):
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


class NumberDecoderConfig(StrictModel):
    """Plain-text number payload, e.g. b'52.3', for a sensor with one quantity."""

    type: Literal["number"] = Field(description="Decoder type.")


class Hj212DecoderConfig(StrictModel):
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


class LimitOverride(StrictModel):
    """A local limit a technician puts in place of (or next to) the profile's, with why."""

    quantity: str = Field(description="Profile quantity, e.g. 'fume'.")
    max: float | None = Field(default=None, description="New upper bound (profile unit).")
    min: float | None = Field(default=None, description="New lower bound (profile unit).")
    severity: Literal["warning", "alarm"] = Field(
        default="alarm", description="Which level of the quantity's limits this replaces."
    )
    period: Literal["day", "night"] | None = Field(
        default=None, description="Only this period (default: all)."
    )
    clause: str = Field(min_length=1, description="Legal basis, e.g. 'DB11/1488-2018 表1'.")
    who: str = Field(min_length=1, description="Technician who set it.")
    why: str = Field(min_length=1, description="Reason, e.g. the local standard in force.")
    allow_relaxed: bool = Field(
        default=False,
        description="Permit a limit looser than the national one (local standards are stricter).",
    )

    @model_validator(mode="after")
    def _has_bound(self) -> LimitOverride:
        if self.max is None and self.min is None:
            raise ValueError("an override needs max and/or min")
        return self


class PeriodOverride(StrictModel):
    """A sensor's change to how a profile quantity is evaluated, with its legal basis."""

    period: Literal["window", "day_night", "hour", "samples"] | None = Field(
        default=None, description="Evaluation period kind (default: the profile's)."
    )
    rolling: bool | None = Field(default=None, description="Hours: trailing, not clock hours.")
    sample_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Samples: sample length in seconds."
    )
    samples: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description="Samples: samples per block."
    )
    min_coverage: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None, description="Valid data: share of the period with data."
    )
    early_warning: bool | None = Field(default=None, description="Projected-exceedance warnings.")
    clause: str = Field(min_length=1, description="Legal basis of the change (clause, permit).")


class StandardRef(StrictModel):
    """Which standard profile a sensor is judged against, with its parameters."""

    profile: str = Field(description="Profile name, e.g. 'gb3096-2008'.")
    params: dict[str, str] = Field(
        default_factory=dict,
        description="Profile parameters, e.g. zone: '2', class: 'III', land_use: paddy.",
    )
    soil_ph: Annotated[float, Field(ge=0, le=14)] | None = Field(
        default=None, description="Measured soil pH; selects the GB 15618 pH band."
    )
    quantity_map: dict[str, str] = Field(
        default_factory=dict, description="Sensor reading name -> profile input name."
    )
    window_s: Annotated[float, Field(gt=0, le=86400)] = Field(
        default=60.0, description="Evaluation window, e.g. the Leq interval, in seconds."
    )
    day_start: str = Field(default="06:00", description="Local start of day (HH:MM).")
    night_start: str = Field(default="22:00", description="Local start of night (HH:MM).")
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone for day/night.")
    min_duration_s: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Breach must last this long before an event opens."
    )
    clear_duration_s: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Value must be clear this long before the event closes."
    )
    hysteresis: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.05, description="Deadband as a fraction of the limit, to close an event."
    )
    deadband: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="Absolute deadband per quantity (overrides fraction)."
    )
    update_every_s: Annotated[float, Field(gt=0)] = Field(
        default=600.0, description="Re-emit an open event at least this often (peak rises too)."
    )
    overrides: tuple[LimitOverride, ...] = Field(
        default=(), description="Stricter local limits, with who and why."
    )
    evaluation: dict[str, PeriodOverride] = Field(
        default_factory=dict,
        description="Per profile quantity: change its evaluation period or validity rule.",
    )

    @field_validator("day_start", "night_start")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError("expected HH:MM")
        return v

    def seconds_of(self, hhmm: str) -> float:
        """Return an HH:MM field as seconds after local midnight."""
        hours, minutes = hhmm.split(":")
        return float(int(hours) * 3600 + int(minutes) * 60)


class SensorConfig(StrictModel):
    """One installed sensor."""

    id: str = Field(pattern=ID_PATTERN, description="Sensor id, unique on this gateway.")
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


class SensorsSetup(Protocol):
    """The parts of the gateway config the sensor side reads (``edge.app``'s GatewayConfig)."""

    @property
    def broker(self) -> BrokerConfig:
        """The local MQTT broker."""
        ...

    @property
    def ingest(self) -> IngestConfig:
        """Message screening."""
        ...

    @property
    def store(self) -> StoreConfig:
        """Group-commit settings and the raw history kept in memory."""
        ...

    @property
    def sensors(self) -> Sequence[SensorConfig]:
        """Installed sensors."""
        ...

    @property
    def client_id(self) -> str:
        """The MQTT client id of the gateway's persistent session."""
        ...
