"""Standard profiles as data: YAML models, the sensor-side reference, loading and resolution.

A *profile* (``configs/standards/<name>.yaml``) states one standard's limits, each with the
clause it comes from. A sensor's :class:`StandardRef` names a profile, gives its parameters
(noise zone, water class, land use, soil pH, restaurant size …) and may override limits
with stricter local ones, recording who and why. :func:`resolve_limits` turns both into
plain :class:`~sensors.rules.Limit` values per time period, in the sensor's units, so the
hot path never looks at YAML.
"""

from __future__ import annotations

import importlib.resources
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.events import Severity
from sensors.rules import Aggregate, Limit

__all__ = [
    "PERIODS",
    "HealthConfig",
    "LimitOverride",
    "LimitRow",
    "PhBand",
    "Profile",
    "ProfileError",
    "QuantitySpec",
    "StandardRef",
    "load_profiles",
    "ph_band",
    "resolve_limits",
    "unit_factor",
]

PERIODS = ("day", "night")
ANY_PERIOD = "any"
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ProfileError(ValueError):
    """A profile file or a sensor's reference to it is inconsistent."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- units ------------------------------------------------------------------------------

# Factors to a base unit per dimension. HJ 212-2017 prints particulate in ng/m³ while many
# platforms send µg/m³, so the unit is always explicit and limits are converted once.
_UNITS: dict[str, tuple[str, float]] = {
    "ng/m3": ("mass/volume", 1e-6),
    "ug/m3": ("mass/volume", 1e-3),
    "mg/m3": ("mass/volume", 1.0),
    "ug/l": ("mass/liquid", 1e-3),
    "mg/l": ("mass/liquid", 1.0),
    "mg/kg": ("mass/mass", 1.0),
    "g/kg": ("mass/mass", 1e3),
    "db": ("level", 1.0),
    "db(a)": ("level", 1.0),
    "dba": ("level", 1.0),
    "ph": ("ph", 1.0),
    "": ("ph", 1.0),
    "us/cm": ("conductivity", 1.0),
    "ms/cm": ("conductivity", 1e3),
}


def _norm_unit(unit: str) -> str:
    return (
        unit.strip().lower().replace("µ", "u").replace("μ", "u").replace("³", "3").replace(" ", "")
    )


def unit_factor(from_unit: str, to_unit: str) -> float:
    """Return the factor that converts a value in ``from_unit`` into ``to_unit``.

    Units are compared case-insensitively (µ/μ/u and ³/3 alike); identical units convert
    with 1; unknown or incompatible units raise :class:`ProfileError` rather than silently
    compare ng with µg.
    """
    a, b = _norm_unit(from_unit), _norm_unit(to_unit)
    if a == b:
        return 1.0
    try:
        dim_a, fa = _UNITS[a]
        dim_b, fb = _UNITS[b]
    except KeyError as exc:
        raise ProfileError(f"cannot convert {from_unit!r} to {to_unit!r}") from exc
    if dim_a != dim_b:
        raise ProfileError(f"incompatible units {from_unit!r} and {to_unit!r}")
    return fa / fb


# --- profile files ----------------------------------------------------------------------

Confidence = Literal["verified", "secondary", "unverified"]
BoundKind = Literal["max", "min", "range"]
LimitValue = float | tuple[float, float]


class ParameterSpec(_Model):
    """A parameter a sensor must (or may) give to select limits from the profile."""

    description: str = Field(description="What the parameter means, in the standard's terms.")
    choices: tuple[str, ...] = Field(description="Allowed values.", min_length=1)
    default: str | None = Field(default=None, description="Value when the sensor gives none.")


class QuantitySpec(_Model):
    """A quantity the profile limits, and how a window of readings becomes its value."""

    unit: str = Field(description="Unit the profile's limits are stated in.")
    aggregate: Aggregate = Field(
        default=Aggregate.MEAN, description="How a window's readings become one value."
    )
    input: str | None = Field(
        default=None, description="Reading name this quantity is computed from (default: itself)."
    )
    inlet: str | None = Field(
        default=None, description="For efficiency: the inlet reading; ``input`` is the outlet."
    )
    hj212: str | None = Field(default=None, description="HJ 212-2017 pollutant code, if any.")
    description: str = Field(default="", description="What is measured.")

    @model_validator(mode="after")
    def _inlet_only_for_efficiency(self) -> QuantitySpec:
        if (self.aggregate is Aggregate.EFFICIENCY) != (self.inlet is not None):
            raise ValueError("'inlet' is required for, and only for, aggregate 'efficiency'")
        return self


class LimitRow(_Model):
    """One row of a standard's table: a bound on a quantity under some conditions.

    The value is given one of three ways: ``value`` (one number, or ``[lo, hi]`` for a
    range); ``by`` a parameter plus ``values`` keyed by that parameter (a table column);
    or ``relative_to`` another quantity's resolved upper limit plus ``offset`` (the
    night-time Lmax rules).
    """

    quantity: str = Field(description="Profile quantity this row limits.")
    bound: BoundKind = Field(description="'max' upper bound, 'min' lower bound, 'range' both.")
    clause: str = Field(min_length=1, description="Clause/table of the standard it comes from.")
    severity: Literal["warning", "alarm"] = Field(
        default="alarm", description="Severity of an event breaking this row."
    )
    when: dict[str, str | tuple[str, ...]] = Field(
        default_factory=dict, description="Conditions on parameters (and 'period')."
    )
    value: LimitValue | None = Field(default=None, description="The limit value.")
    by: str | None = Field(default=None, description="Parameter keying ``values``.")
    values: dict[str, LimitValue] | None = Field(
        default=None, description="Limit per value of the ``by`` parameter."
    )
    relative_to: str | None = Field(
        default=None, description="Quantity whose resolved upper limit this row offsets."
    )
    offset: float | None = Field(default=None, description="Offset added to ``relative_to``.")
    confidence: Confidence = Field(
        default="verified", description="How well the number is sourced (see standards.md)."
    )
    note: str = Field(default="", description="Free-text remark.")

    @model_validator(mode="after")
    def _one_way_to_give_a_value(self) -> LimitRow:
        ways = [
            self.value is not None,
            self.by is not None and self.values is not None,
            self.relative_to is not None and self.offset is not None,
        ]
        if sum(ways) != 1:
            raise ValueError("give exactly one of value, by+values, relative_to+offset")
        if self.relative_to is not None and self.bound != "max":
            raise ValueError("relative limits are upper bounds")
        for v in [self.value, *(self.values or {}).values()]:
            if v is not None and isinstance(v, tuple) != (self.bound == "range"):
                raise ValueError("a 'range' bound takes [lo, hi]; 'max'/'min' take a number")
        return self


class PhBand(_Model):
    """A soil pH band of GB 15618-2018: ``above`` < pH ≤ ``up_to``."""

    name: str = Field(description="Band name used as a parameter value.")
    above: float | None = Field(default=None, description="Exclusive lower pH (None: no bound).")
    up_to: float | None = Field(default=None, description="Inclusive upper pH (None: no bound).")


class Profile(_Model):
    """One standard, as loaded from ``configs/standards/<name>.yaml``."""

    name: str = Field(description="Profile id, the file's stem, e.g. 'gb3096-2008'.")
    standard: str = Field(description="Standard number, e.g. 'GB 3096-2008'.")
    title: str = Field(description="Standard title.")
    source: str = Field(description="Where the numbers were checked.")
    periods: bool = Field(default=False, description="Limits differ by day/night.")
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict, description="Inputs.")
    ph_bands: tuple[PhBand, ...] = Field(default=(), description="Soil pH bands, if used.")
    quantities: dict[str, QuantitySpec] = Field(description="Limited quantities.")
    limits: tuple[LimitRow, ...] = Field(default=(), description="The standard's table rows.")

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        known = set(self.parameters) | {"period"} | ({"ph_band"} if self.ph_bands else set())
        for row in self.limits:
            if row.quantity not in self.quantities:
                raise ValueError(f"limit on undeclared quantity {row.quantity!r}")
            if row.relative_to is not None and row.relative_to not in self.quantities:
                raise ValueError(f"relative_to undeclared quantity {row.relative_to!r}")
            for key in [*row.when, *([row.by] if row.by else [])]:
                if key not in known:
                    raise ValueError(f"row on {row.quantity!r} uses unknown parameter {key!r}")
        return self


def load_profiles(directory: Path | str | None = None) -> dict[str, Profile]:
    """Load every ``*.yaml`` profile from ``directory`` (default: the shipped profiles).

    Profiles are keyed by file stem, which must equal the profile's ``name``.
    """
    root = (
        Path(directory)
        if directory is not None
        else importlib.resources.files("offsite_configs") / "standards"
    )
    profiles: dict[str, Profile] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        stem = entry.name.removesuffix(".yaml")
        try:
            profile = Profile.model_validate(yaml.safe_load(entry.read_text(encoding="utf-8")))
        except (ValueError, yaml.YAMLError) as exc:
            raise ProfileError(f"{entry.name}: {exc}") from exc
        if profile.name != stem:
            raise ProfileError(f"{entry.name}: name {profile.name!r} does not match the file")
        profiles[stem] = profile
    return profiles


# --- the sensor-side reference ------------------------------------------------------------


class LimitOverride(_Model):
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


class StandardRef(_Model):
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


class HealthConfig(_Model):
    """When a sensor counts as offline or stuck."""

    expected_interval_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0, description="How often the sensor normally reports (HJ 212 RtdInterval)."
    )
    offline_multiple: Annotated[float, Field(ge=1)] = Field(
        default=3.0, description="Offline after this many expected intervals without a reading."
    )
    stuck_after_s: Annotated[float, Field(gt=0)] | None = Field(
        default=3600.0,
        description="A quantity repeating one value this long is stuck (None disables).",
    )
    stuck_tolerance: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Values within this of the run's first value count as equal."
    )
    stuck_tolerances: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="Per-quantity stuck tolerance."
    )
    stuck_exempt: tuple[str, ...] = Field(
        default=(), description="Quantities allowed to stay constant (e.g. status codes)."
    )


# --- resolution ---------------------------------------------------------------------------


def ph_band(profile: Profile, ph: float) -> str:
    """Return the name of the profile's pH band containing ``ph`` (upper edge inclusive)."""
    for band in profile.ph_bands:
        if (band.above is None or ph > band.above) and (band.up_to is None or ph <= band.up_to):
            return band.name
    raise ProfileError(f"pH {ph} is in no band of {profile.name}")


def _params(profile: Profile, ref: StandardRef) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in ref.params.items():
        if key == "ph_band" and profile.ph_bands:
            if value not in {b.name for b in profile.ph_bands}:
                raise ProfileError(f"{profile.name}: unknown ph_band {value!r}")
        elif key not in profile.parameters:
            raise ProfileError(f"{profile.name}: unknown parameter {key!r}")
        elif value not in profile.parameters[key].choices:
            choices = ", ".join(profile.parameters[key].choices)
            raise ProfileError(f"{profile.name}: {key}={value!r} not one of {choices}")
        params[key] = value
    for key, spec in profile.parameters.items():
        if key not in params:
            if spec.default is None:
                raise ProfileError(f"{profile.name}: parameter {key!r} is required")
            params[key] = spec.default
    if profile.ph_bands:
        if ref.soil_ph is not None:
            if "ph_band" in params and params["ph_band"] != ph_band(profile, ref.soil_ph):
                raise ProfileError(f"{profile.name}: ph_band contradicts soil_ph")
            params["ph_band"] = ph_band(profile, ref.soil_ph)
        elif "ph_band" not in params:
            raise ProfileError(f"{profile.name}: give soil_ph or params.ph_band")
    elif ref.soil_ph is not None:
        raise ProfileError(f"{profile.name}: soil_ph given but profile has no pH bands")
    return params


def _matches(when: Mapping[str, str | tuple[str, ...]], ctx: Mapping[str, str]) -> bool:
    for key, want in when.items():
        have = ctx.get(key)
        if isinstance(want, tuple):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


_Bounds = tuple[float | None, float | None]


def _bounds(row: LimitRow, ctx: Mapping[str, str]) -> _Bounds | None:
    value: LimitValue | None
    if row.value is not None:
        value = row.value
    elif row.by is not None and row.values is not None:
        value = row.values.get(ctx.get(row.by, ""))
        if value is None:
            return None  # the table has no column for this parameter value
    else:
        return None  # relative rows are resolved in a second pass
    if isinstance(value, tuple):
        return value[0], value[1]
    return (None, value) if row.bound == "max" else (value, None)


def _stricter(old: _Bounds, new: _Bounds) -> bool:
    lo_old, hi_old = old
    lo_new, hi_new = new
    if hi_new is not None and hi_old is not None and hi_new > hi_old:
        return False
    return not (lo_new is not None and lo_old is not None and lo_new < lo_old)


def resolve_limits(
    profile: Profile, ref: StandardRef, units: Mapping[str, str] | None = None
) -> dict[str, tuple[Limit, ...]]:
    """Resolve the profile's rows for this sensor into limits per period.

    Returns ``{"day": ..., "night": ...}`` for profiles with periods, else ``{"any": ...}``.
    ``units`` maps profile quantities to the unit of the sensor's readings (default: the
    profile's unit); limits come back in those units with hysteresis thresholds applied.
    Raises :class:`ProfileError` on missing or invalid parameters, two rows claiming the
    same quantity and severity, or an override looser than the limit it replaces.
    """
    if ref.profile != profile.name:
        raise ProfileError(f"reference names {ref.profile!r}, not {profile.name!r}")
    units = dict(units or {})
    for q in [*units, *ref.deadband]:
        if q not in profile.quantities:
            raise ProfileError(f"{profile.name}: unknown quantity {q!r}")
    params = _params(profile, ref)
    periods = PERIODS if profile.periods else (ANY_PERIOD,)
    out: dict[str, tuple[Limit, ...]] = {}
    for period in periods:
        ctx = {**params, "period": period}
        # (quantity, severity) -> bounds, row-clause, confidence, override
        found: dict[tuple[str, str], tuple[_Bounds, str, str, LimitOverride | None]] = {}
        for row in profile.limits:
            if not _matches(row.when, ctx):
                continue
            bounds = _bounds(row, ctx)
            if bounds is None:
                continue
            key = (row.quantity, row.severity)
            if key in found:
                raise ProfileError(f"{profile.name}: two rows for {key} in {ctx}")
            found[key] = (bounds, row.clause, row.confidence, None)
        for ov in ref.overrides:
            if ov.quantity not in profile.quantities:
                raise ProfileError(f"{profile.name}: override of unknown quantity {ov.quantity!r}")
            if ov.period is not None and ov.period != period:
                continue
            key = (ov.quantity, ov.severity)
            new: _Bounds = (ov.min, ov.max)
            if key in found:
                old, clause, conf, _ = found[key]
                if not ov.allow_relaxed and not _stricter(old, new):
                    raise ProfileError(
                        f"{profile.name}: override of {ov.quantity} is looser than {clause}"
                    )
                # keep the untouched side of a range (e.g. override pH max only)
                new = (
                    old[0] if new[0] is None else new[0],
                    old[1] if new[1] is None else new[1],
                )
                found[key] = (new, clause, conf, ov)
            else:
                found[key] = (new, ov.clause, "verified", ov)
        for row in profile.limits:
            if row.relative_to is None or row.offset is None or not _matches(row.when, ctx):
                continue
            base = found.get((row.relative_to, row.severity))
            if base is None or base[0][1] is None:
                continue
            key = (row.quantity, row.severity)
            if key in found:  # an override on the relative quantity wins
                continue
            found[key] = ((None, base[0][1] + row.offset), row.clause, row.confidence, base[3])
        out[period] = tuple(
            _limit(
                profile,
                ref,
                units,
                q,
                Severity(sev),
                period=period,
                bounds=b,
                clause=clause,
                confidence=conf,
                override=ov,
            )
            for (q, sev), (b, clause, conf, ov) in sorted(found.items())
        )
    return out


def _limit(
    profile: Profile,
    ref: StandardRef,
    units: Mapping[str, str],
    quantity: str,
    severity: Severity,
    *,
    period: str,
    bounds: _Bounds,
    clause: str,
    confidence: str,
    override: LimitOverride | None,
) -> Limit:
    spec = profile.quantities[quantity]
    unit = units.get(quantity, spec.unit)
    factor = unit_factor(spec.unit, unit)
    lo = None if bounds[0] is None else bounds[0] * factor
    hi = None if bounds[1] is None else bounds[1] * factor
    deadband = ref.deadband.get(quantity)

    def band(edge: float) -> float:
        if deadband is not None:
            return deadband * factor
        return abs(edge) * ref.hysteresis

    clear_hi = None if hi is None else hi - band(hi)
    clear_lo = None if lo is None else lo + band(lo)
    if clear_lo is not None and clear_hi is not None and clear_lo > clear_hi:
        # a deadband wider than a range would make clearing impossible; meet in the middle
        clear_lo = clear_hi = (clear_lo + clear_hi) / 2
    if lo is not None and hi is not None and lo > hi:
        raise ProfileError(f"{profile.name}: {quantity} range {lo}..{hi} is empty")
    for edge in (lo, hi):
        if edge is not None and not math.isfinite(edge):
            raise ProfileError(f"{profile.name}: {quantity} limit is not finite")
    return Limit(
        quantity=quantity,
        unit=unit,
        lower=lo,
        upper=hi,
        clear_lower=clear_lo,
        clear_upper=clear_hi,
        severity=severity,
        profile=profile.name,
        standard=profile.standard,
        clause=clause,
        confidence=confidence,
        period=period,
        override_by=None if override is None else override.who,
        override_why=None if override is None else override.why,
        override_clause=None if override is None else override.clause,
    )
