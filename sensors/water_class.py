"""GB 3838-2002 water class of one window: each factor's class, then the worst factor's.

Every measured factor gets the best class whose 表1 limit it meets: ``≤`` for the upper
bounds (COD, NH3-N, TP …), ``≥`` for dissolved oxygen (a lower bound: more is better), and
pH must lie in 6–9 for every class. A factor meeting no class is 劣V. The water's class is
the worst single factor's (单因子评价), and that factor is reported as determining it.

The class table is not restated here: :func:`grading_for` resolves the profile's own rows
once per class (so units, river/lake rows and the clause come from the same YAML the
exceedances use). Local overrides are ignored: the classes are the standard's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from edge.events import Severity
from sensors.config import StandardRef
from sensors.errors import ProfileError
from sensors.standards import Profile, resolve_limits

__all__ = [
    "Assessment",
    "ClassBound",
    "FactorTable",
    "Grading",
    "assess",
    "factor_class",
    "grading_for",
]


@dataclass(frozen=True, slots=True)
class ClassBound:
    """One class's limit for one factor (``lower`` ≤ value ≤ ``upper``; None: unbounded)."""

    name: str
    lower: float | None
    upper: float | None

    def meets(self, value: float) -> bool:
        """Whether ``value`` meets this class (the limits themselves included)."""
        return (self.lower is None or value >= self.lower) and (
            self.upper is None or value <= self.upper
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able bounds, named like an exceedance's ``limit_min``/``limit_max``."""
        return {"limit_min": self.lower, "limit_max": self.upper}


@dataclass(frozen=True, slots=True, kw_only=True)
class FactorTable:
    """One factor's limits per class, best class first, in the sensor's unit."""

    quantity: str
    unit: str
    clause: str
    classes: tuple[ClassBound, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Grading:
    """What grading one sensor's windows needs: classes, its target, the factor tables."""

    classes: tuple[str, ...]  # best first, e.g. I … V
    worst: str  # worse than every class, e.g. 劣V
    target: str
    standard: str
    profile: str
    clause: str
    severity: Severity
    factors: Mapping[str, FactorTable]

    def rank(self, name: str) -> int:
        """0 for the best class, ``len(classes)`` for the worst name (劣V)."""
        return len(self.classes) if name == self.worst else self.classes.index(name)

    def name(self, rank: int) -> str:
        """The class name at ``rank`` (inverse of :meth:`rank`)."""
        return self.worst if rank >= len(self.classes) else self.classes[rank]


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """One window's grading: the water class, the factor(s) determining it, every factor."""

    water_class: str
    determining: tuple[str, ...]  # factors at the water class, in profile order
    factor_classes: Mapping[str, str]
    values: Mapping[str, float]


def factor_class(table: FactorTable, value: float, worst: str) -> str:
    """The best class whose limit ``value`` meets, or ``worst`` when it meets none."""
    for bound in table.classes:
        if bound.meets(value):
            return bound.name
    return worst


def _saturated_unproven(table: FactorTable, value: float) -> bool:
    """An over-range (``T``) value is a lower bound of the truth: it can prove a factor bad
    only where more is worse. Where more can be better (DO, pH inside its range) it proves
    nothing."""
    if not any(b.lower is not None for b in table.classes):
        return False
    return not any(b.upper is not None and value > b.upper for b in table.classes)


def assess(
    grading: Grading, values: Mapping[str, float], saturated: Collection[str] = ()
) -> Assessment | None:
    """Grade one window's factor values; None when no graded factor has a value.

    ``saturated`` names factors whose window held over-range readings; those are graded
    only where the value proves a class (see :func:`_saturated_unproven`).
    """
    classes: dict[str, str] = {}
    used: dict[str, float] = {}
    for quantity, table in grading.factors.items():
        value = values.get(quantity)
        if value is None or (quantity in saturated and _saturated_unproven(table, value)):
            continue
        classes[quantity] = factor_class(table, value, grading.worst)
        used[quantity] = value
    if not classes:
        return None
    worst_rank = max(grading.rank(c) for c in classes.values())
    return Assessment(
        water_class=grading.name(worst_rank),
        determining=tuple(q for q, c in classes.items() if grading.rank(c) == worst_rank),
        factor_classes=classes,
        values=used,
    )


def grading_for(
    profile: Profile,
    ref: StandardRef,
    units: Mapping[str, str],
    reported: Collection[str],
) -> Grading | None:
    """The grading of a sensor on a graded profile (None for other profiles).

    ``units`` maps profile quantities to the sensor's units; only ``reported`` quantities
    are graded. The target is the sensor's own class parameter (e.g. ``class: III``).
    Raises :class:`~sensors.errors.ProfileError` as :func:`resolve_limits` does.
    """
    spec = profile.grading
    if spec is None:
        return None
    classes = profile.parameters[spec.parameter].choices
    target = ref.params.get(spec.parameter) or profile.parameters[spec.parameter].default
    if target is None:
        raise ProfileError(f"{profile.name}: parameter {spec.parameter!r} is required")
    bounds: dict[str, list[ClassBound]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for name in classes:
        params = {**ref.params, spec.parameter: name}
        one = ref.model_copy(update={"params": params, "overrides": ()})
        for limit in next(iter(resolve_limits(profile, one, units).values()), ()):
            if limit.quantity not in reported:
                continue
            bounds.setdefault(limit.quantity, []).append(ClassBound(name, limit.lower, limit.upper))
            if name == target or limit.quantity not in meta:
                meta[limit.quantity] = (limit.unit, limit.clause)
    factors = {
        q: FactorTable(quantity=q, unit=meta[q][0], clause=meta[q][1], classes=tuple(bs))
        for q in profile.quantities  # profile order, so "determining" lists read naturally
        if len(bs := bounds.get(q, [])) == len(classes)  # limited in every class
    }
    return Grading(
        classes=tuple(classes),
        worst=spec.worst,
        target=target,
        standard=profile.standard,
        profile=profile.name,
        clause=spec.clause,
        severity=Severity(spec.severity),
        factors=factors,
    )
