"""Standard profiles resolved for one sensor: plain limits per time period.

A sensor's :class:`~sensors.config.StandardRef` names a profile (the data models and loading
are :mod:`sensors.profiles`), gives its parameters (noise zone, water class, land use, soil
pH, restaurant size …) and may override limits with stricter local ones, recording who and
why. :func:`resolve_limits` turns both into plain :class:`~sensors.rules.Limit` values per
time period, in the sensor's units (:mod:`sensors.units`), so the hot path never looks at
YAML.

The profile models, :func:`load_profiles` and :func:`unit_factor` are re-exported here so
callers keep one import for everything about standards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from edge.events import Severity
from sensors.config import LimitOverride, StandardRef
from sensors.errors import ProfileError
from sensors.profiles import LimitRow, LimitValue, PhBand, Profile, QuantitySpec, load_profiles
from sensors.rules import Limit
from sensors.units import unit_factor

__all__ = [
    "PERIODS",
    "LimitRow",
    "PhBand",
    "Profile",
    "ProfileError",
    "QuantitySpec",
    "load_profiles",
    "numeric_param",
    "ph_band",
    "resolve_limits",
    "unit_factor",
]

PERIODS = ("day", "night")
ANY_PERIOD = "any"


def ph_band(profile: Profile, ph: float) -> str:
    """Return the name of the profile's pH band containing ``ph`` (upper edge inclusive)."""
    for band in profile.ph_bands:
        if (band.above is None or ph > band.above) and (band.up_to is None or ph <= band.up_to):
            return band.name
    raise ProfileError(f"pH {ph} is in no band of {profile.name}")


def numeric_param(profile: Profile, key: str, value: str) -> float:
    """Parse and check a numeric parameter (e.g. ``stoves: "4"``); ProfileError if invalid."""
    above = profile.numeric_parameters[key].above
    try:
        number = float(value)
    except ValueError:
        raise ProfileError(f"{profile.name}: {key}={value!r} is not a number") from None
    if not math.isfinite(number) or number <= above:
        raise ProfileError(f"{profile.name}: {key}={value!r} must be a number above {above:g}")
    return number


def _numeric_agrees(profile: Profile, params: Mapping[str, str]) -> None:
    """A numeric parameter inside another choice's band must agree with that choice."""
    for key, spec in profile.numeric_parameters.items():
        if key not in params or spec.agrees_with is None:
            continue
        number = numeric_param(profile, key, params[key])
        for choice, (lo, hi) in spec.bands.items():
            if (
                number >= lo
                and (hi is None or number < hi)
                and params.get(spec.agrees_with) != choice
            ):
                raise ProfileError(
                    f"{profile.name}: {key}={params[key]} means {spec.agrees_with}={choice}, "
                    f"not {params.get(spec.agrees_with)!r}"
                )


def _params(profile: Profile, ref: StandardRef) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in ref.params.items():
        if key == "ph_band" and profile.ph_bands:
            if value not in {b.name for b in profile.ph_bands}:
                raise ProfileError(f"{profile.name}: unknown ph_band {value!r}")
        elif key in profile.numeric_parameters:
            numeric_param(profile, key, value)
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
    _numeric_agrees(profile, params)
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
