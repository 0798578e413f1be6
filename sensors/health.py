"""Pure sensor-health decisions: offline, stuck (flat-line) and out of physical range.

Each health condition is a boolean judged at tick time; :func:`health_step` turns the
condition's history into OPEN on the rising edge and CLOSED (recovery) on the falling
edge, so the shell emits one event per outage, not one per tick.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.events import EventStatus
from sensors.rules import Action

__all__ = [
    "EVENT_STATUS",
    "HealthState",
    "health_step",
    "is_offline",
    "is_stuck",
    "same_value",
]

# The status an event is emitted with for each action of :func:`health_step` (and of
# :func:`sensors.rules.step`: exceedance events share the lifecycle, so the map too).
EVENT_STATUS = {
    Action.OPEN: EventStatus.OPEN,
    Action.UPDATE: EventStatus.UPDATE,
    Action.CLOSE: EventStatus.CLOSED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthState:
    """Whether a health condition currently has an open event, and since when."""

    open: bool = False
    since: float = 0.0


def health_step(state: HealthState, condition: bool, at: float) -> tuple[HealthState, Action]:
    """Open on the condition's rising edge, close (recover) on its falling edge."""
    if condition and not state.open:
        return HealthState(open=True, since=at), Action.OPEN
    if not condition and state.open:
        return HealthState(open=False, since=state.since), Action.CLOSE
    return state, Action.NONE


def is_offline(last_seen: float, now: float, expected_interval_s: float, multiple: float) -> bool:
    """Return True when no reading arrived for ``multiple`` expected intervals."""
    return now - last_seen > expected_interval_s * multiple


def same_value(reference: float, value: float, tolerance: float) -> bool:
    """Return True when ``value`` counts as unchanged from ``reference`` (flat-line check)."""
    return abs(value - reference) <= tolerance


def is_stuck(run_start: float, last_ts: float, run_readings: int, stuck_after_s: float) -> bool:
    """Return True when one value has persisted implausibly long.

    A run needs at least two readings: a single reading followed by silence is an
    offline sensor, not a stuck one.
    """
    return run_readings >= 2 and last_ts - run_start >= stuck_after_s
