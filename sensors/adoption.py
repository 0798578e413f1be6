"""Reading back an event a previous run left open: the state that resumes it.

Pure functions over an :class:`~edge.events.Event` as the store returns it. Its detail
has been through JSON, so every field is checked rather than trusted: a missing or
mistyped field gives a safe default or ``None`` (not adoptable). Whether the event is
still this monitor's, and installing what these return, is ``SensorMonitor.adopt``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.events import Event
from sensors.modes import Mode, ModeState
from sensors.rules import Limit, Phase, RuleState

__all__ = [
    "FlatRun",
    "exceedance_key",
    "matching_limit",
    "pending_out_of_range",
    "resumed_mode",
    "resumed_rule",
    "resumed_run",
]

_MODES = frozenset(m.value for m in Mode if m is not Mode.NORMAL)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlatRun:
    """The flat-line run behind a ``sensor_stuck`` event, as the accumulator tracks it."""

    value: float
    start: float
    last: float
    readings: int


def exceedance_key(event: Event) -> tuple[str, str] | None:
    """The (quantity, severity) rule an exceedance event belongs to; None if unreadable."""
    quantity = event.detail.get("quantity")
    if not isinstance(quantity, str):
        return None
    return (quantity, event.severity.value)


def matching_limit(
    limits: Mapping[str, Sequence[Limit]], key: tuple[str, str], detail: Mapping[str, Any]
) -> Limit | None:
    """The configured limit an exceedance was judged against, if it still exists.

    A changed bound or unit is a different rule: its event must close and a new one
    open under the new limit, so the record never mixes two limits under one id.
    """
    same = [
        lim
        for period_limits in limits.values()
        for lim in period_limits
        if (lim.quantity, lim.severity.value) == key
        and lim.unit == detail.get("unit")
        and _same_bound(lim.lower, detail.get("limit_min"))
        and _same_bound(lim.upper, detail.get("limit_max"))
    ]
    # Day and night may share a bound; prefer the period the event was judged in.
    return next((lim for lim in same if lim.period == detail.get("period")), None) or (
        same[0] if same else None
    )


def resumed_rule(event: Event) -> RuleState:
    """The rule state that continues an open exceedance event."""
    d = event.detail
    window_value = _number(d.get("window_value"))
    windows = d.get("windows")
    # ACTIVE even if it was CLEARING when the process died: the clear duration then
    # restarts, which can only delay a close, never invent a recovery.
    return RuleState(
        phase=Phase.ACTIVE,
        breach_since=event.started_at,
        peak=_number(d.get("peak"), window_value),
        last_value=window_value,
        # OPEN/UPDATE set last_emit to the end of the window they report, so the next
        # periodic UPDATE stays update_every_s after the last one actually sent.
        last_emit=_number(d.get("window_end"), event.started_at),
        windows=windows if isinstance(windows, int) else 0,
        flags=_flag_counts(d.get("flags")),
    )


def resumed_run(event: Event, stuck_after_s: float) -> FlatRun | None:
    """The flat-line run of a stuck event; None when it records no value.

    The run is rebuilt so it stays stuck until a different or flagged reading ends it,
    as it would have without the restart.
    """
    value = _number(event.detail.get("value"))
    if math.isnan(value):
        return None
    run_n = event.detail.get("run_readings")
    return FlatRun(
        value=value,
        start=event.started_at,
        last=event.started_at + stuck_after_s,
        readings=max(2, run_n if isinstance(run_n, int) else 0),
    )


def pending_out_of_range(event: Event, seq: int) -> tuple[float, float, int, int]:
    """The pending fault (value, ts, seq, count) behind an out-of-range event.

    Pending at the accumulator's current reading count ``seq``: the next valid reading
    recovers it.
    """
    count = event.detail.get("count")
    return (
        _number(event.detail.get("value")),
        event.started_at,
        seq,
        count if isinstance(count, int) else 1,
    )


def resumed_mode(event: Event) -> ModeState | None:
    """The maintenance/calibration mode a ``maintenance`` event records; None if unknown."""
    d = event.detail
    raw = d.get("mode")
    if not isinstance(raw, str) or raw not in _MODES:
        return None
    return ModeState(
        mode=Mode(raw), who=str(d.get("who", "")), why=str(d.get("why", "")), since=event.started_at
    )


def _number(value: object, default: float = math.nan) -> float:
    """A number read back from an event's JSON detail (None, missing or text: default)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


def _same_bound(bound: float | None, recorded: object) -> bool:
    if bound is None:
        return recorded is None
    return not math.isnan(r := _number(recorded)) and math.isclose(bound, r, rel_tol=1e-9)


def _flag_counts(recorded: object) -> tuple[tuple[str, int], ...]:
    if not isinstance(recorded, Mapping):
        return ()
    return tuple(sorted((str(f), n) for f, n in recorded.items() if isinstance(n, int)))
