"""Binding a sensor's config to its standard profile: what its monitor judges it on.

:func:`bind_profile` maps the profile's quantities onto the readings the sensor actually
reports (by name, or through ``standard.quantity_map``), resolves the limits in the
readings' units, and keeps only the limits the sensor can be judged on. The result is
plain data for :class:`~sensors.monitor.SensorMonitor`; ``sensors.monitor.build_monitors``
builds the monitors from it (this module does not import the monitor, so it stays free
of import cycles).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol
from zoneinfo import ZoneInfo

from sensors.config import StandardRef
from sensors.errors import ProfileError
from sensors.fume import FumeSpec, airflow_factor
from sensors.periods import Calendar, Evaluation, PeriodKind
from sensors.rules import Aggregate, Limit
from sensors.standards import Profile, QuantitySpec, numeric_param, resolve_limits
from sensors.water_class import Grading, grading_for

__all__ = [
    "MonitoredQuantity",
    "MonitoredSensor",
    "ProfileBinding",
    "bind_profile",
    "calendar_for",
    "evaluations",
]


class MonitoredQuantity(Protocol):
    """What the monitor needs of a configured quantity (``edge.config.QuantityConfig``)."""

    @property
    def name(self) -> str:
        """Reading name."""
        ...

    @property
    def unit(self) -> str:
        """Unit of the (calibrated) readings."""
        ...


class MonitoredSensor(Protocol):
    """What the monitor needs of a sensor's config (``edge.config.SensorConfig``).

    ``standard: StandardRef | None`` and ``health: HealthConfig`` are read with defaults,
    so the builder works before those fields exist on the config model.
    """

    @property
    def id(self) -> str:
        """Sensor id."""
        ...

    @property
    def quantities(self) -> Sequence[MonitoredQuantity]:
        """Configured quantities."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileBinding:
    """One sensor's standard, in the shape ``SensorMonitor`` takes it."""

    ref: StandardRef | None
    limits: dict[str, tuple[Limit, ...]]  # period -> limits the sensor can be judged on
    metrics: dict[str, tuple[Aggregate, str, str | None]]  # quantity -> agg, reading, inlet
    energy_readings: frozenset[str]  # readings in dB, averaged as energy (Leq)
    readings: frozenset[str]  # every configured reading name
    fume: dict[str, FumeSpec] = field(default_factory=dict)  # airflow-aware quantities
    advisory: dict[str, str] = field(default_factory=dict)  # guidance quantity -> label
    grading: Grading | None = None  # per-window quality class (GB 3838), if the profile has one
    evaluation: dict[str, Evaluation] = field(default_factory=dict)  # quantity -> period
    calendar: Calendar | None = None  # local window/period alignment (None: UTC epoch)


def evaluations(profile: Profile, ref: StandardRef) -> dict[str, Evaluation]:
    """Each quantity's evaluation period: the profile's spec with the sensor's overrides."""
    out: dict[str, Evaluation] = {}
    for quantity in ref.evaluation:
        if quantity not in profile.quantities:
            raise ProfileError(f"{profile.name}: evaluation of unknown quantity {quantity!r}")
    for quantity in profile.quantities:
        spec = profile.evaluation.get(quantity)
        ov = ref.evaluation.get(quantity)
        if spec is None and ov is None:
            continue
        base = (
            Evaluation(
                kind=PeriodKind(spec.period),
                clause=spec.clause,
                names=tuple(sorted(spec.names.items())),
                rolling=spec.rolling,
                sample_s=spec.sample_s,
                samples=spec.samples,
                discard_below=spec.discard_below,
                min_samples=spec.min_samples,
                min_coverage=spec.min_coverage,
                coverage_clause=spec.coverage_clause,
                coverage_note=spec.coverage_note,
                warn_after=spec.warn_after,
                early_warning=spec.early_warning,
            )
            if spec is not None
            else Evaluation(clause="", coverage_clause="")
        )
        if ov is not None:
            base = replace(
                base,
                kind=base.kind if ov.period is None else PeriodKind(ov.period),
                rolling=base.rolling if ov.rolling is None else ov.rolling,
                sample_s=base.sample_s if ov.sample_s is None else ov.sample_s,
                samples=base.samples if ov.samples is None else ov.samples,
                min_coverage=base.min_coverage if ov.min_coverage is None else ov.min_coverage,
                early_warning=base.early_warning if ov.early_warning is None else ov.early_warning,
                override_clause=ov.clause,
            )
            if ov.min_coverage is not None:
                base = replace(base, coverage_clause=ov.clause)
            if base.kind is PeriodKind.DAY_NIGHT and not profile.periods:
                raise ProfileError(f"{profile.name}: {quantity} has no day/night periods")
            if base.rolling and base.kind is not PeriodKind.HOUR:
                raise ProfileError(f"{profile.name}: {quantity}: 'rolling' is for hours only")
            if base.kind is PeriodKind.SAMPLES and base.min_samples > base.samples:
                raise ProfileError(f"{profile.name}: {quantity}: fewer samples than min_samples")
        out[quantity] = base
    return out


def calendar_for(profile: Profile, ref: StandardRef) -> Calendar:
    """The profile's local day/night calendar for this sensor (zone and boundaries)."""
    try:
        tz = ZoneInfo(ref.timezone)
    except (ValueError, OSError) as exc:
        raise ProfileError(f"unknown time zone {ref.timezone!r}") from exc
    if ref.day_start == ref.night_start:
        raise ProfileError("day_start and night_start must differ")
    return Calendar(
        tz,
        ref.seconds_of(ref.day_start),
        ref.seconds_of(ref.night_start),
        day_night=profile.periods,
    )


def _fume_spec(
    profile: Profile,
    spec: QuantitySpec,
    params: Mapping[str, str],
    to_reading: Mapping[str, str],
    units: Mapping[str, str],
) -> FumeSpec:
    """Bind a quantity's airflow readings (those the sensor reports) and the stove count."""

    def reading(name: str | None) -> str | None:
        mapped = to_reading.get(name, name) if name else None
        return mapped if mapped in units else None

    air, inlet_air = reading(spec.airflow), reading(spec.inlet_airflow)
    stoves = params.get("stoves") if "stoves" in profile.numeric_parameters else None
    return FumeSpec(
        airflow=air,
        airflow_factor=airflow_factor(units[air]) if air else 1.0,
        inlet_airflow=inlet_air,
        inlet_airflow_factor=airflow_factor(units[inlet_air]) if inlet_air else 1.0,
        base_airflow=spec.base_airflow,
        stoves=numeric_param(profile, "stoves", stoves) if stoves is not None else None,
    )


def bind_profile(sensor: MonitoredSensor, profiles: Mapping[str, Profile]) -> ProfileBinding:
    """Bind ``sensor`` to the profile its ``standard`` names (no standard: no limits).

    A sensor is judged on the profile quantities it reports (readings named as the
    profile's inputs, or mapped with ``standard.quantity_map``). Raises
    :class:`~sensors.errors.ProfileError` when the sensor names an unknown profile, gives
    invalid parameters, has units that do not convert, or reports none of the profile's
    readings.
    """
    ref: StandardRef | None = getattr(sensor, "standard", None)
    units_by_reading = {q.name: q.unit for q in sensor.quantities}
    energy = {q.name for q in sensor.quantities if q.unit.lower().startswith("db")}
    limits: dict[str, tuple[Limit, ...]] = {}
    metrics: dict[str, tuple[Aggregate, str, str | None]] = {}
    fume: dict[str, FumeSpec] = {}
    grading: Grading | None = None
    advisory: dict[str, str] = {}
    evaluation: dict[str, Evaluation] = {}
    calendar: Calendar | None = None
    if ref is not None:
        profile = profiles.get(ref.profile)
        if profile is None:
            raise ProfileError(f"sensor {sensor.id}: unknown standard profile {ref.profile!r}")
        to_reading = {inp: name for name, inp in ref.quantity_map.items()}
        units: dict[str, str] = {}
        for qname, spec in profile.quantities.items():
            reading = to_reading.get(spec.input or qname, spec.input or qname)
            inlet = to_reading.get(spec.inlet, spec.inlet) if spec.inlet else None
            metrics[qname] = (spec.aggregate, reading, inlet)
            if reading in units_by_reading and spec.aggregate is not Aggregate.EFFICIENCY:
                units[qname] = units_by_reading[reading]
        try:
            evaluation = evaluations(profile, ref)
            calendar = calendar_for(profile, ref)
            limits = resolve_limits(profile, ref, units)
            reported = {q for q, m in metrics.items() if m[1] in units_by_reading}
            grading = grading_for(profile, ref, units, reported & set(units))
            for qname, spec in profile.quantities.items():
                if spec.aggregate is Aggregate.EFFICIENCY or spec.base_airflow is not None:
                    fume[qname] = _fume_spec(
                        profile, spec, ref.params, to_reading, units_by_reading
                    )
        except ProfileError as exc:
            raise ProfileError(f"sensor {sensor.id}: {exc}") from exc
        # A sensor is judged on the profile quantities it actually reports (a DO/pH
        # probe is not faulted for lacking BOD5); removal efficiency needs the inlet.
        limits = {
            period: tuple(
                lim
                for lim in ls
                if metrics[lim.quantity][1] in units_by_reading
                and ((inlet := metrics[lim.quantity][2]) is None or inlet in units_by_reading)
            )
            for period, ls in limits.items()
        }
        if not any(limits.values()) and any(
            lim for ls in resolve_limits(profile, ref).values() for lim in ls
        ):
            wanted = sorted({m[1] for m in metrics.values()})
            raise ProfileError(
                f"sensor {sensor.id}: reports none of {ref.profile}'s readings {wanted}; "
                "map them with standard.quantity_map"
            )
        energy |= {m[1] for m in metrics.values() if m[0] is Aggregate.LEQ}
        advisory = {row.quantity: row.advisory for row in profile.limits if row.advisory}
    return ProfileBinding(
        ref=ref,
        limits=limits,
        metrics=metrics,
        energy_readings=frozenset(energy),
        readings=frozenset(units_by_reading),
        fume=fume,
        advisory=advisory,
        grading=grading,
        evaluation=evaluation,
        calendar=calendar,
    )
