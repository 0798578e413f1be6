"""Units of measure: one table of conversion factors, and :func:`unit_factor` over it.

Limits are stated in a standard's unit and readings arrive in the sensor's; converting
once when limits are resolved keeps the hot path free of unit handling.
"""

from __future__ import annotations

from sensors.errors import ProfileError

__all__ = ["unit_factor"]

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
