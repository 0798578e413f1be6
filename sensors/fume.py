"""Cooking fume (GB 18483-2001): removal efficiency by mass, concentration at base airflow.

GB 18483-2001 defines the purifier's removal efficiency (去除效率) by *mass*: the share of
the fume mass entering the purifier that does not leave it,
``P = 1 - (C_out * Q_out) / (C_in * Q_in)`` with C the concentration and Q the airflow
before (inlet) and after (outlet) the purifier. A ratio of concentrations equals it only
when both airflows are equal: fresh air drawn in after the purifier dilutes the outlet and
overstates the efficiency, a leak before the outlet port understates it.

The emission concentration is judged normalised to the base airflow per base stove
(基准灶头): ``C_base = C * Q / (n * q_base)``, n the unit's base stove count and q_base
2000 m³/h (a default the profile states and a technician can change: see standards.md §3).

Without airflow readings neither figure can be the standard's. Rather than refuse, the
window is judged on concentrations and its event detail says so (``basis:
"concentration"`` and a ``basis_note``), so a reader never mistakes it for the mass figure.
Everything here is pure: one window's statistics in, a value and its detail out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sensors.errors import ProfileError
from sensors.rules import WindowStats

__all__ = [
    "CONCENTRATION_BASIS",
    "MASS_BASIS",
    "FumeSpec",
    "airflow_factor",
    "efficiency_window",
    "mass_efficiency",
    "normalised_concentration",
    "normalised_window",
]

MASS_BASIS = "mass"
CONCENTRATION_BASIS = "concentration"

_EFFICIENCY_METHOD = "1 - (C_out*Q_out)/(C_in*Q_in): GB 18483-2001 去除效率, by mass"
_CONC_EFFICIENCY_NOTE = (
    "concentration-based (C_in - C_out)/C_in: {why}; this is NOT the GB 18483-2001 "
    "mass-based removal efficiency and is wrong whenever inlet and outlet airflows differ"
)
_NORMALISE_METHOD = "C*Q/(n*q_base): concentration at the base airflow per base stove"
_RAW_NOTE = "measured concentration, not normalised to the base airflow: {why}"

# Airflow units to m³/h; the base airflow is stated per hour.
_AIRFLOW_UNITS = {"m3/h": 1.0, "m3/min": 60.0, "m3/s": 3600.0}


def airflow_factor(unit: str) -> float:
    """Return the factor converting an airflow in ``unit`` to m³/h (ProfileError if unknown)."""
    key = unit.strip().lower().replace("³", "3").replace(" ", "")
    try:
        return _AIRFLOW_UNITS[key]
    except KeyError:
        known = ", ".join(_AIRFLOW_UNITS)
        raise ProfileError(f"airflow unit {unit!r} is not one of {known}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class FumeSpec:
    """How one profile quantity of a fume sensor uses airflow, as bound to its readings.

    ``airflow``/``inlet_airflow`` are the sensor's reading names (None: not reported), with
    factors to m³/h. ``base_airflow`` (m³/h per base stove) and ``stoves`` (the unit's base
    stove count) enable normalisation of a concentration quantity.
    """

    airflow: str | None = None
    airflow_factor: float = 1.0
    inlet_airflow: str | None = None
    inlet_airflow_factor: float = 1.0
    base_airflow: float | None = None
    stoves: float | None = None


def mass_efficiency(c_in: float, q_in: float, c_out: float, q_out: float) -> float | None:
    """Removal efficiency in percent by mass; None when no fume mass enters (undefined)."""
    mass_in = c_in * q_in
    if mass_in <= 0.0:
        return None
    return 100.0 * (1.0 - (c_out * q_out) / mass_in)


def normalised_concentration(c: float, q: float, stoves: float, base_airflow: float) -> float:
    """Concentration at the base airflow: ``c * q / (stoves * base_airflow)`` (q in m³/h)."""
    return c * q / (stoves * base_airflow)


def _mean(stats: WindowStats | None) -> float | None:
    if stats is None or stats.n == 0:
        return None
    return stats.total / stats.n


def efficiency_window(
    spec: FumeSpec,
    stats: Mapping[str, WindowStats],
    outlet: str,
    inlet: str,
) -> tuple[float | None, dict[str, Any]]:
    """One window's removal efficiency (percent) and the detail that explains it.

    Mass-based when both airflows are bound and have valid readings in the window; else
    concentration-based, labelled so. ``(None, {})`` when either concentration is missing
    or nothing entered the purifier.
    """
    c_out, c_in = _mean(stats.get(outlet)), _mean(stats.get(inlet))
    if c_out is None or c_in is None:
        return None, {}
    q_out = _mean(stats.get(spec.airflow)) if spec.airflow else None
    q_in = _mean(stats.get(spec.inlet_airflow)) if spec.inlet_airflow else None
    detail: dict[str, Any] = {"c_in": c_in, "c_out": c_out}
    if q_out is not None and q_in is not None:
        q_out *= spec.airflow_factor
        q_in *= spec.inlet_airflow_factor
        value = mass_efficiency(c_in, q_in, c_out, q_out)
        if value is None:
            return None, {}
        detail.update(
            basis=MASS_BASIS,
            method=_EFFICIENCY_METHOD,
            q_in_m3h=q_in,
            q_out_m3h=q_out,
            mass_in_mg_h=c_in * q_in,
            mass_out_mg_h=c_out * q_out,
        )
        return value, detail
    if c_in <= 0.0:
        return None, {}
    if spec.airflow is None or spec.inlet_airflow is None:
        why = "the sensor reports no inlet and outlet airflow"
    else:
        why = "no valid airflow reading in this window"
    detail.update(basis=CONCENTRATION_BASIS, basis_note=_CONC_EFFICIENCY_NOTE.format(why=why))
    return 100.0 * (c_in - c_out) / c_in, detail


def normalised_window(
    spec: FumeSpec, stats: Mapping[str, WindowStats], reading: str
) -> tuple[float | None, dict[str, Any]]:
    """One window's emission concentration at the base airflow, and its detail.

    Normalised when the profile states a base airflow, the sensor gives its stove count and
    reports an airflow with valid readings this window; otherwise the measured mean,
    labelled as not normalised (it is never dropped, so a flagged airflow meter cannot
    hide a concentration breach).
    """
    c = _mean(stats.get(reading))
    if c is None:
        return None, {}
    if spec.base_airflow is None:
        return c, {}  # the profile does not normalise this quantity
    q = _mean(stats.get(spec.airflow)) if spec.airflow else None
    if spec.stoves is None or spec.airflow is None or q is None:
        if spec.stoves is None:
            why = "no stove count (params.stoves)"
        elif spec.airflow is None:
            why = "the sensor reports no airflow"
        else:
            why = "no valid airflow reading in this window"
        return c, {"c_measured": c, "normalised": False, "basis_note": _RAW_NOTE.format(why=why)}
    q *= spec.airflow_factor
    value = normalised_concentration(c, q, spec.stoves, spec.base_airflow)
    return value, {
        "c_measured": c,
        "normalised": True,
        "method": _NORMALISE_METHOD,
        "q_m3h": q,
        "stoves": spec.stoves,
        "base_airflow_m3h": spec.base_airflow,
    }
