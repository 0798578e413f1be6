"""Pure exceedance decisions: window values, limit checks and the anomaly lifecycle.

Nothing here does I/O or reads a clock. Every decision is a function of a resolved
:class:`Limit` (from a standard profile plus the sensor's parameters and overrides), the
rule's previous :class:`RuleState` and one closed window's :class:`WindowValue`, so the
tests can enumerate every standard's table and property-test the lifecycle.

Lifecycle of one rule (one limit on one quantity of one sensor)::

    IDLE --breach--> PENDING --breach for min_duration--> ACTIVE (OPEN)
    ACTIVE --breach or deadband--> ACTIVE (UPDATE when the peak worsens or periodically)
    ACTIVE --clear--> CLEARING --clear for clear_duration--> IDLE (CLOSED)
    CLEARING --breach or deadband--> ACTIVE (same event, no new OPEN)

*Clear* means inside the limit by at least the hysteresis deadband, so a value oscillating
around the limit keeps one event open instead of opening dozens.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from edge.aggregate import level_from_energy
from edge.events import Severity

__all__ = [
    "EVIDENCE_FLAGS",
    "NORMAL_FLAG",
    "OVER_RANGE_FLAG",
    "Action",
    "Aggregate",
    "Level",
    "Limit",
    "Phase",
    "RuleState",
    "Timing",
    "WindowStats",
    "WindowValue",
    "classify",
    "exceedance_detail",
    "excess",
    "period_at",
    "step",
    "window_value",
    "worse",
]

NORMAL_FLAG = "N"
"""HJ 212-2017 Table 8 data flag for a normal reading."""

OVER_RANGE_FLAG = "T"
"""HJ 212-2017 Table 8 flag "above the measuring upper limit": a saturated instrument.

Its value is a lower bound of the true value, so it is evidence that an upper limit is
exceeded (the worst case must be able to raise an exceedance), never that a lower one is.
"""

EVIDENCE_FLAGS = frozenset({NORMAL_FLAG, OVER_RANGE_FLAG})
"""Flags whose readings are judged. Every other flag (F, M, S, D, C, B) is never judged."""


class Aggregate(enum.StrEnum):
    """How a window's readings become the one value compared with a limit."""

    LEQ = "leq"  # energy average of sound levels (dB), never the arithmetic mean
    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    LAST = "last"
    EFFICIENCY = "efficiency"  # removal efficiency % from inlet and outlet means


class Level(enum.IntEnum):
    """Where a value sits relative to a limit and its hysteresis deadband."""

    CLEAR = 0  # inside the limit by at least the deadband
    DEADBAND = 1  # inside the limit but within the deadband: keeps an open event open
    BREACH = 2  # beyond the limit


class Phase(enum.StrEnum):
    """Lifecycle phase of one rule."""

    IDLE = "idle"
    PENDING = "pending"
    ACTIVE = "active"
    CLEARING = "clearing"


class Action(enum.StrEnum):
    """What :func:`step` asks the shell to emit for a window."""

    NONE = "none"
    OPEN = "open"
    UPDATE = "update"
    CLOSE = "close"


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One resolved limit, in the unit of the sensor's readings.

    ``lower``/``upper`` are the bounds (both set for a two-sided range such as pH 6–9,
    only ``lower`` for dissolved oxygen). ``clear_lower``/``clear_upper`` are the
    hysteresis thresholds a value must get back inside before an event closes.
    """

    quantity: str
    unit: str
    lower: float | None
    upper: float | None
    clear_lower: float | None
    clear_upper: float | None
    severity: Severity
    profile: str
    standard: str
    clause: str
    confidence: str = "verified"
    period: str = "any"
    override_by: str | None = None
    override_why: str | None = None
    override_clause: str | None = None

    def describe(self) -> dict[str, Any]:
        """Return the JSON-able facts a regulator needs about this limit."""
        out: dict[str, Any] = {
            "quantity": self.quantity,
            "unit": self.unit,
            "limit_min": self.lower,
            "limit_max": self.upper,
            "profile": self.profile,
            "standard": self.standard,
            "clause": self.clause,
            "confidence": self.confidence,
            "period": self.period,
        }
        if self.override_by is not None:
            out["override"] = {
                "who": self.override_by,
                "why": self.override_why,
                "clause": self.override_clause,
            }
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Lifecycle timing for a rule, in seconds."""

    min_duration_s: float = 0.0
    clear_duration_s: float = 0.0
    update_every_s: float = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowStats:
    """Aggregates of one quantity's *normal* readings over one window, plus flag counts."""

    n: int = 0
    total: float = 0.0
    energy: float = 0.0
    vmax: float = -math.inf
    vmin: float = math.inf
    last: float = math.nan
    flags: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowValue:
    """The value a closed window yields for a quantity; ``value`` is None with no valid data."""

    start: float
    end: float
    value: float | None
    n: int = 0
    flags: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleState:
    """Everything a rule remembers between windows."""

    phase: Phase = Phase.IDLE
    breach_since: float = 0.0  # start of the first breaching window of the current run
    clear_since: float = 0.0  # start of the first clear window while CLEARING
    peak: float = math.nan
    last_value: float = math.nan
    last_emit: float = 0.0
    windows: int = 0
    flags: tuple[tuple[str, int], ...] = field(default=())


# --- window values ---------------------------------------------------------------------


def window_value(
    aggregate: Aggregate, stats: WindowStats, inlet: WindowStats | None = None
) -> float | None:
    """Return the window's value under ``aggregate``, or None when it has no valid readings.

    For :attr:`Aggregate.EFFICIENCY`, ``stats`` is the outlet and ``inlet`` the inlet
    concentration; the result is the removal efficiency in percent.
    """
    if stats.n == 0:
        return None
    if aggregate is Aggregate.LEQ:
        # The mean energy lies between the min and max energies; clamp so float rounding
        # can never put Leq outside the readings' range.
        return min(max(level_from_energy(stats.energy, stats.n), stats.vmin), stats.vmax)
    if aggregate is Aggregate.MEAN:
        return min(max(stats.total / stats.n, stats.vmin), stats.vmax)
    if aggregate is Aggregate.MAX:
        return stats.vmax
    if aggregate is Aggregate.MIN:
        return stats.vmin
    if aggregate is Aggregate.LAST:
        return stats.last
    if inlet is None or inlet.n == 0:
        return None
    inlet_mean = inlet.total / inlet.n
    if inlet_mean <= 0.0:
        return None  # nothing to remove: efficiency is undefined, not 0 %
    return 100.0 * (inlet_mean - stats.total / stats.n) / inlet_mean


def period_at(seconds_of_day: float, day_start_s: float, night_start_s: float) -> str:
    """Return ``"day"`` or ``"night"`` for a local time of day (GB 3096-2008 §3).

    Day is ``[day_start, night_start)``; local governments may move both boundaries.
    """
    if day_start_s <= night_start_s:
        return "day" if day_start_s <= seconds_of_day < night_start_s else "night"
    # A day period that wraps midnight is unusual but configurable, so handle it.
    return "night" if night_start_s <= seconds_of_day < day_start_s else "day"


# --- limit checks ----------------------------------------------------------------------


def classify(limit: Limit, value: float) -> Level:
    """Classify ``value`` against a limit: beyond it, in the deadband, or clear."""
    if (limit.upper is not None and value > limit.upper) or (
        limit.lower is not None and value < limit.lower
    ):
        return Level.BREACH
    if (limit.clear_upper is not None and value > limit.clear_upper) or (
        limit.clear_lower is not None and value < limit.clear_lower
    ):
        return Level.DEADBAND
    return Level.CLEAR


def excess(limit: Limit, value: float) -> float:
    """Return how far ``value`` is beyond the limit, in the limit's unit (0 when within)."""
    over = 0.0
    if limit.upper is not None:
        over = max(over, value - limit.upper)
    if limit.lower is not None:
        over = max(over, limit.lower - value)
    return over


def worse(limit: Limit, a: float, b: float) -> float:
    """Return whichever of two values is further beyond the limit (the event's peak)."""
    if math.isnan(a):
        return b
    if limit.upper is not None and limit.lower is None:
        return max(a, b)
    if limit.lower is not None and limit.upper is None:
        return min(a, b)
    return a if excess(limit, a) >= excess(limit, b) else b


# --- lifecycle -------------------------------------------------------------------------


def _merge_flags(
    a: tuple[tuple[str, int], ...], b: tuple[tuple[str, int], ...]
) -> tuple[tuple[str, int], ...]:
    if not b:
        return a
    counts = dict(a)
    for flag, count in b:
        counts[flag] = counts.get(flag, 0) + count
    return tuple(sorted(counts.items()))


def _saturated_low(limit: Limit, window: WindowValue) -> bool:
    """A window with ``T`` readings whose value is at or below a lower limit's edge."""
    if limit.lower is None or window.value is None:
        return False
    edge = limit.clear_lower if limit.clear_lower is not None else limit.lower
    return window.value < edge and any(flag == OVER_RANGE_FLAG for flag, _n in window.flags)


def step(
    limit: Limit, timing: Timing, state: RuleState, window: WindowValue
) -> tuple[RuleState, Action]:
    """Advance one rule by one closed window and say what to emit.

    A window without valid readings (all flagged, or none) changes nothing but the flag
    counts: flagged data never opens, extends or closes an exceedance. Over-range (``T``)
    readings are a lower bound: they prove an upper limit broken, never a lower one.
    """
    active = state.phase in (Phase.ACTIVE, Phase.CLEARING)
    flags = _merge_flags(state.flags, window.flags) if active else state.flags
    if window.value is None or _saturated_low(limit, window):
        return (replace(state, flags=flags) if flags is not state.flags else state), Action.NONE
    value = window.value
    level = classify(limit, value)

    if state.phase in (Phase.IDLE, Phase.PENDING):
        if level is not Level.BREACH:
            if state.phase is Phase.IDLE:
                return state, Action.NONE
            return RuleState(), Action.NONE
        since = window.start if state.phase is Phase.IDLE else state.breach_since
        peak = worse(limit, state.peak, value) if state.phase is Phase.PENDING else value
        if window.end - since >= timing.min_duration_s:
            return (
                RuleState(
                    phase=Phase.ACTIVE,
                    breach_since=since,
                    peak=peak,
                    last_value=value,
                    last_emit=window.end,
                    windows=1,
                    flags=window.flags,
                ),
                Action.OPEN,
            )
        return RuleState(phase=Phase.PENDING, breach_since=since, peak=peak), Action.NONE

    # ACTIVE or CLEARING
    if level is Level.CLEAR:
        clear_since = window.start if state.phase is Phase.ACTIVE else state.clear_since
        closing = replace(
            state,
            phase=Phase.CLEARING,
            clear_since=clear_since,
            last_value=value,
            windows=state.windows + 1,
            flags=flags,
        )
        if window.end - clear_since >= timing.clear_duration_s:
            # Back to IDLE, keeping peak and times so the CLOSED event can report them.
            return replace(closing, phase=Phase.IDLE), Action.CLOSE
        return closing, Action.NONE

    peak = worse(limit, state.peak, value)
    due = window.end - state.last_emit >= timing.update_every_s
    emit = level is Level.BREACH and (peak != state.peak or due)
    new = replace(
        state,
        phase=Phase.ACTIVE,
        peak=peak,
        last_value=value,
        last_emit=window.end if emit else state.last_emit,
        windows=state.windows + 1,
        flags=flags,
    )
    return new, (Action.UPDATE if emit else Action.NONE)


def exceedance_detail(
    limit: Limit,
    state: RuleState,
    window: WindowValue,
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the JSON-able detail of an exceedance event after ``step``.

    Records which limit was broken (standard, clause, override), by how much (window value,
    peak, excess and ratio over the limit), for how long, and the readings' data flags.
    """
    bound = limit.upper if limit.upper is not None else limit.lower
    peak_excess = excess(limit, state.peak)
    closing = state.phase in (Phase.CLEARING, Phase.IDLE)
    end = state.clear_since if closing else window.end
    out: dict[str, Any] = dict(context)
    out.update(limit.describe())
    out.update(
        {
            "window_value": window.value,
            "window_start": window.start,
            "window_end": window.end,
            "peak": state.peak,
            "peak_excess": peak_excess,
            # 超标倍数 as regulators report it: (C - limit) / limit
            "peak_excess_ratio": (peak_excess / abs(bound)) if bound else None,
            "duration_s": max(0.0, end - state.breach_since),
            "windows": state.windows,
            "flags": dict(state.flags),
        }
    )
    return out
