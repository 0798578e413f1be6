"""Standard profiles as data: the YAML models of ``configs/standards/<name>.yaml``.

A *profile* states one standard's limits, each with the clause it comes from, as table
rows keyed by parameters (noise zone, water class, land use, soil pH band …). This module
validates and loads them; turning a profile into a sensor's limits is
:func:`sensors.standards.resolve_limits`.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from edge.config import StrictModel
from sensors.errors import ProfileError
from sensors.rules import Aggregate

__all__ = [
    "BoundKind",
    "Confidence",
    "EvaluationSpec",
    "GradingSpec",
    "LimitRow",
    "LimitValue",
    "NumericParameterSpec",
    "ParameterSpec",
    "PhBand",
    "Profile",
    "QuantitySpec",
    "load_profiles",
]

Confidence = Literal["verified", "secondary", "unverified"]
BoundKind = Literal["max", "min", "range"]
LimitValue = float | tuple[float, float]


class ParameterSpec(StrictModel):
    """A parameter a sensor must (or may) give to select limits from the profile."""

    description: str = Field(description="What the parameter means, in the standard's terms.")
    choices: tuple[str, ...] = Field(description="Allowed values.", min_length=1)
    default: str | None = Field(default=None, description="Value when the sensor gives none.")


class NumericParameterSpec(StrictModel):
    """A numeric parameter a sensor may give, e.g. GB 18483's base stove count (基准灶头数).

    It selects no table row (``when``/``by`` take only choice parameters); it feeds a
    computation such as normalising fume to the base airflow. Absent means not given.
    """

    description: str = Field(description="What the parameter means, in the standard's terms.")
    above: float = Field(default=0.0, description="Values must be strictly greater than this.")
    agrees_with: str | None = Field(
        default=None, description="Choice parameter the value must agree with (e.g. size)."
    )
    bands: dict[str, tuple[float, float | None]] = Field(
        default_factory=dict,
        description="Per choice of ``agrees_with``: [from, below) (None: no upper end).",
    )


class GradingSpec(StrictModel):
    """A profile whose choice parameter is a quality class, graded by the worst factor.

    GB 3838-2002: each window's water class is the worst class over the factors measured
    (single-factor assessment); a class worse than the sensor's own ``parameter`` value
    (its target) raises an event.
    """

    parameter: str = Field(
        description="Choice parameter whose choices are the classes, best first."
    )
    worst: str = Field(description="Name for worse than the last class, e.g. '劣V'.")
    clause: str = Field(min_length=1, description="Clause the class limits come from.")
    severity: Literal["warning", "alarm"] = Field(
        default="alarm", description="Severity of the below-target event."
    )


class QuantitySpec(StrictModel):
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
    airflow: str | None = Field(
        default=None,
        description="Airflow reading (m3/h) at ``input``; for efficiency, the outlet airflow.",
    )
    inlet_airflow: str | None = Field(
        default=None, description="For efficiency by mass: the inlet airflow reading."
    )
    base_airflow: float | None = Field(
        default=None,
        gt=0,
        description="m3/h per base stove: judge C*Q/(stoves*base_airflow) (needs ``airflow``).",
    )

    @model_validator(mode="after")
    def _inlet_only_for_efficiency(self) -> QuantitySpec:
        efficiency = self.aggregate is Aggregate.EFFICIENCY
        if efficiency != (self.inlet is not None):
            raise ValueError("'inlet' is required for, and only for, aggregate 'efficiency'")
        if (self.inlet_airflow is not None) != (efficiency and self.airflow is not None):
            raise ValueError("an efficiency takes both 'airflow' and 'inlet_airflow', or neither")
        if self.base_airflow is not None and (efficiency or self.airflow is None):
            raise ValueError("'base_airflow' needs 'airflow' and is not for an efficiency")
        return self


class EvaluationSpec(StrictModel):
    """Over what a quantity is judged (its evaluation period) and when that is valid data.

    ``window``: each base window (``StandardRef.window_s``) on its own; ``day_night``: the
    whole day or night period (Ld/Ln); ``hour``: clock hours, or trailing hours with
    ``rolling``; ``samples``: blocks of ``samples`` consecutive samples of ``sample_s``,
    mean with the ¼ rule. See docs/standards.md and :mod:`sensors.periods`.
    """

    period: Literal["window", "day_night", "hour", "samples"] = Field(
        description="Evaluation period kind."
    )
    clause: str = Field(min_length=1, description="Where the standard sets this period.")
    names: dict[str, str] = Field(
        default_factory=dict,
        description="The standard's name of the value per period (day/night/any), e.g. Ld.",
    )
    rolling: bool = Field(default=False, description="Hours only: trailing, not clock hours.")
    sample_s: float = Field(default=600.0, gt=0, description="Samples only: sample length (s).")
    samples: int = Field(default=5, ge=1, le=100, description="Samples only: samples a block.")
    discard_below: float = Field(
        default=0.25, ge=0, lt=1, description="Samples only: discard below this × the largest."
    )
    min_samples: int = Field(
        default=3, ge=1, description="Samples only: samples kept after discarding, at least."
    )
    min_coverage: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="Valid data: share of the period (samples: of each sample) with data.",
    )
    coverage_clause: str = Field(
        min_length=1, description="Basis of the validity rule (clause, or why a default)."
    )
    coverage_note: str = Field(default="", description="Reasoning behind the validity rule.")
    warn_after: float = Field(
        default=0.25, ge=0, le=1, description="Project (early warning) after this coverage."
    )
    early_warning: bool = Field(default=True, description="Raise projected-exceedance warnings.")

    @model_validator(mode="after")
    def _options_fit_the_kind(self) -> EvaluationSpec:
        if self.rolling and self.period != "hour":
            raise ValueError("'rolling' is for hourly evaluation only")
        if self.period == "samples" and self.min_samples > self.samples:
            raise ValueError("min_samples cannot exceed samples")
        return self


class LimitRow(StrictModel):
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
    advisory: str | None = Field(
        default=None,
        description="Not a limit but guidance (e.g. equipment selection): this label goes into "
        "the event, whose kind is 'advisory', never 'exceedance'. Severity must be warning.",
    )

    @model_validator(mode="after")
    def _one_way_to_give_a_value(self) -> LimitRow:
        if self.advisory is not None and self.severity != "warning":
            raise ValueError("an advisory row is a warning, never an alarm")
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


class PhBand(StrictModel):
    """A soil pH band of GB 15618-2018: ``above`` < pH ≤ ``up_to``."""

    name: str = Field(description="Band name used as a parameter value.")
    above: float | None = Field(default=None, description="Exclusive lower pH (None: no bound).")
    up_to: float | None = Field(default=None, description="Inclusive upper pH (None: no bound).")


class Profile(StrictModel):
    """One standard, as loaded from ``configs/standards/<name>.yaml``."""

    name: str = Field(description="Profile id, the file's stem, e.g. 'gb3096-2008'.")
    standard: str = Field(description="Standard number, e.g. 'GB 3096-2008'.")
    title: str = Field(description="Standard title.")
    source: str = Field(description="Where the numbers were checked.")
    periods: bool = Field(default=False, description="Limits differ by day/night.")
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict, description="Inputs.")
    numeric_parameters: dict[str, NumericParameterSpec] = Field(
        default_factory=dict, description="Optional numeric inputs (e.g. stoves)."
    )
    grading: GradingSpec | None = Field(
        default=None, description="Grade each window into the classes of a choice parameter."
    )
    ph_bands: tuple[PhBand, ...] = Field(default=(), description="Soil pH bands, if used.")
    quantities: dict[str, QuantitySpec] = Field(description="Limited quantities.")
    limits: tuple[LimitRow, ...] = Field(default=(), description="The standard's table rows.")
    evaluation: dict[str, EvaluationSpec] = Field(
        default_factory=dict,
        description="Evaluation period per quantity (absent: each base window on its own).",
    )

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
        if set(self.numeric_parameters) & known:
            raise ValueError("a parameter is either a choice or numeric, not both")
        for spec in self.numeric_parameters.values():
            if spec.agrees_with is None:
                continue
            choice = self.parameters.get(spec.agrees_with)
            if choice is None or not set(spec.bands) <= set(choice.choices):
                raise ValueError(f"bands must be choices of parameter {spec.agrees_with!r}")
        for quantity, ev in self.evaluation.items():
            if quantity not in self.quantities:
                raise ValueError(f"evaluation of undeclared quantity {quantity!r}")
            if ev.period == "day_night" and not self.periods:
                raise ValueError(f"{quantity}: day_night evaluation needs 'periods: true'")
        if self.grading is not None and self.grading.parameter not in self.parameters:
            raise ValueError(f"grading by unknown parameter {self.grading.parameter!r}")
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
