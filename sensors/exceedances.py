"""The exceedance lifecycle of one sensor: sealed windows judged against its limits.

:class:`ExceedanceTracker` keeps one :class:`~sensors.rules.RuleState` per (quantity,
severity) rule, runs each sealed window through :func:`sensors.rules.step` with the limits
of the window's time period, and turns the resulting actions into ``exceedance`` events
with stable ids. It is ``SensorMonitor``'s collaborator for everything about limits: the
monitor owns the windows and hands over each one once it is sealed.

Quantities a profile evaluates over a period (``evaluation:`` in the profile: day/night,
clock or rolling hours, sample blocks) are not judged per window: each window is folded
into the period by :class:`~sensors.period_events.PeriodJudge`, which opens an exceedance
once it is certain and closes it at the period's end; rolling hours come back as window
values for :func:`sensors.rules.step`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge.events import Event
from edge.ids import new_id
from sensors.adoption import exceedance_key, matching_limit, resumed_rule
from sensors.config import StandardRef
from sensors.fume import FumeSpec, efficiency_window, normalised_window
from sensors.health import EVENT_STATUS
from sensors.period_events import FIXED_KINDS, PROJECTED_KIND, PeriodJudge
from sensors.periods import Calendar, Evaluation, local_iso
from sensors.rules import (
    Action,
    Aggregate,
    Limit,
    Phase,
    RuleState,
    Timing,
    WindowStats,
    WindowValue,
    exceedance_detail,
    period_at,
    step,
    window_value,
)
from sensors.window import Metric, SealedWindow

__all__ = ["ADVISORY_KIND", "PROJECTED_KIND", "ExceedanceTracker"]

ADVISORY_KIND = "advisory"
"""Event kind of a breached guidance row (``advisory`` in the profile): never an exceedance."""

_EMPTY = WindowStats()


class ExceedanceTracker:
    """Rule states and open exceedance event ids of one sensor."""

    def __init__(
        self,
        *,
        sensor_id: str,
        site: str | None,
        location: str,
        ref: StandardRef | None,
        window_s: float,
        limits: Mapping[str, Sequence[Limit]] | None,
        metrics: Mapping[str, Metric],
        fume: Mapping[str, FumeSpec] | None = None,
        advisory: Mapping[str, str] | None = None,
        evaluation: Mapping[str, Evaluation] | None = None,
        calendar: Calendar | None = None,
    ) -> None:
        self._sensor_id = sensor_id
        self._calendar = calendar
        self._evaluations = dict(evaluation or {})
        # airflow-aware fume quantities (sensors.fume) and guidance-only quantities -> label
        self._fume = dict(fume or {})
        self._advisory = dict(advisory or {})
        self._extra: dict[tuple[str, str], dict[str, Any]] = {}
        self._limits = {p: tuple(ls) for p, ls in (limits or {}).items()}
        self._metrics = metrics
        self._timing = Timing(
            min_duration_s=ref.min_duration_s if ref else 0.0,
            clear_duration_s=ref.clear_duration_s if ref else 0.0,
            update_every_s=ref.update_every_s if ref else 600.0,
        )
        self._tz = ZoneInfo(ref.timezone) if ref is not None else None
        self._day_start = ref.seconds_of(ref.day_start) if ref else 0.0
        self._night_start = ref.seconds_of(ref.night_start) if ref else 0.0
        # Copied into every exceedance event, so the record says where and how it was judged.
        self._context: dict[str, Any] = {
            "sensor": sensor_id,
            "site": site,
            "location": location,
            "window_s": window_s,
        }
        if ref is not None:
            self._context["params"] = dict(ref.params)
            if ref.soil_ph is not None:
                self._context["soil_ph"] = ref.soil_ph
        self._rules: dict[tuple[str, str], RuleState] = {}
        self._rule_ids: dict[tuple[str, str], str] = {}
        self._rule_limits: dict[tuple[str, str], Limit] = {}
        # quantities judged over the standard's periods (sensors.period_events)
        self._periods = (
            PeriodJudge(
                sensor_id=sensor_id,
                calendar=calendar,
                evaluations=evaluation,
                limits=self._limits,
                metrics=metrics,
                context=self._context,
                update_every_s=self._timing.update_every_s,
            )
            if evaluation and calendar is not None
            else None
        )

    @property
    def periods(self) -> PeriodJudge | None:
        """The period judge (None when every quantity is judged per window)."""
        return self._periods

    def expire(self, ts: float, events: list[Event]) -> None:
        """Finish periods that ended by device time ``ts`` (the sensor fell silent)."""
        if self._periods is not None:
            self._periods.advance(ts, events)

    def _period(self, start: float) -> str:
        if self._tz is None or "any" in self._limits:
            return "any"
        local = datetime.fromtimestamp(start, self._tz)
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        return period_at(seconds, self._day_start, self._night_start)

    def judge(self, window: SealedWindow, events: list[Event]) -> None:
        """Judge one sealed window against its period's limits; append the events.

        Quantities a profile evaluates over periods are folded into their period (judged
        there); rolling hours come back as a window value for the usual lifecycle.
        """
        periods = self._periods
        if periods is not None:
            periods.advance(window.start, events)
        limits = self._limits.get(self._period(window.start), ())
        applicable: set[tuple[str, str]] = set()
        folded: dict[str, tuple[WindowValue, dict[str, Any]] | None] = {}
        for limit in limits:
            metric = self._metrics[limit.quantity]
            stats = window.stats.get(metric.reading, _EMPTY)
            inlet = window.stats.get(metric.inlet, _EMPTY) if metric.inlet else None
            key = (limit.quantity, limit.severity.value)
            spec = self._fume.get(limit.quantity)
            if spec is None:
                value = window_value(metric.aggregate, stats, inlet)
            elif metric.aggregate is Aggregate.EFFICIENCY and metric.inlet is not None:
                value, self._extra[key] = efficiency_window(
                    spec, window.stats, metric.reading, metric.inlet
                )
            else:
                value, self._extra[key] = normalised_window(spec, window.stats, metric.reading)
            ev = periods.evaluation(limit.quantity) if periods is not None else None
            if ev is not None and periods is not None:
                if limit.quantity not in folded:
                    if ev.rolling:
                        folded[limit.quantity] = periods.rolling(
                            limit.quantity, window, stats, value
                        )
                    else:
                        folded[limit.quantity] = None
                        periods.fold(
                            limit.quantity,
                            window,
                            stats,
                            value,
                            events=events,
                            extra=self._extra.get(key),
                        )
                rolled = folded[limit.quantity]
                if rolled is None:
                    continue  # judged over its period
                wv = rolled[0]
                self._extra[key] = {**self._extra.get(key, {}), **rolled[1]}
            else:
                wv = WindowValue(
                    start=window.start,
                    end=window.end,
                    value=value,
                    n=stats.n,
                    flags=stats.flags,
                )
            applicable.add(key)
            self._advance(key, limit, self._rules.get(key, RuleState()), wv, events)
        if periods is not None:
            periods.advance(window.end, events)  # a period ending with this window
        # A rule that only exists in one period (night-time Lmax) ends with its period.
        for key, state in list(self._rules.items()):
            if key not in applicable and state.phase in (Phase.ACTIVE, Phase.CLEARING):
                ended = replace(state, phase=Phase.IDLE, clear_since=window.start, last_emit=0.0)
                wv = WindowValue(start=window.start, end=window.end, value=None)
                self._emit(
                    key, self._rule_limits[key], ended, wv, action=Action.CLOSE, events=events
                )
                self._rules[key] = ended

    def _advance(
        self,
        key: tuple[str, str],
        limit: Limit,
        state: RuleState,
        wv: WindowValue,
        events: list[Event],
    ) -> None:
        new, action = step(limit, self._timing, state, wv)
        self._rules[key] = new
        self._rule_limits[key] = limit
        if action is not Action.NONE:
            self._emit(key, limit, new, wv, action=action, events=events)

    def _emit(
        self,
        key: tuple[str, str],
        limit: Limit,
        state: RuleState,
        wv: WindowValue,
        *,
        action: Action,
        events: list[Event],
    ) -> None:
        if action is Action.OPEN:
            self._rule_ids[key] = new_id()
        detail = exceedance_detail(limit, state, wv, self._context)
        if wv.value is None and action is Action.CLOSE:
            detail["closed_because"] = "limit not applicable in this period"
        elif key in self._extra:
            detail.update(self._extra[key])  # how the window's value was computed
        if self._calendar is not None and "evaluation" not in detail:
            # judged per window: the window is the standard's measurement period
            ev = self._evaluations.get(limit.quantity)
            detail.update(
                evaluation="window",
                standard_quantity=ev.name(limit.period, limit.quantity) if ev else limit.quantity,
                period_clause=ev.clause if ev else None,
                period_start_local=local_iso(wv.start, self._calendar),
                period_end_local=local_iso(wv.end, self._calendar),
                valid=True if wv.value is not None else None,
            )
        # a local override on the quantity is a real limit, not the guidance row
        advisory = self._advisory.get(limit.quantity) if limit.override_by is None else None
        if advisory is not None:
            detail["advisory"] = advisory
            # 超标倍数 is a figure for limits; guidance is only fallen short of
            detail.pop("peak_excess_ratio", None)
            detail["shortfall"] = detail.pop("peak_excess", None)
        events.append(
            Event(
                kind="exceedance" if advisory is None else ADVISORY_KIND,
                source=self._sensor_id,
                severity=limit.severity,
                status=EVENT_STATUS[action],
                started_at=state.breach_since,
                event_id=self._rule_ids[key],
                ended_at=state.clear_since if action is Action.CLOSE else None,
                detail=detail,
            )
        )

    def adopt(self, event: Event) -> bool:
        """Resume an open ``exceedance`` event of this sensor (see ``SensorMonitor.adopt``).

        Returns False when no configured limit matches it any more.
        """
        if event.kind == PROJECTED_KIND or event.detail.get("evaluation") in FIXED_KINDS:
            return self._periods is not None and self._periods.adopt(event)
        key = exceedance_key(event)
        if key is None:
            return False
        limit = matching_limit(self._limits, key, event.detail)
        if limit is None:
            return False
        current = self._rules.get(key)
        if current is not None and current.phase in (Phase.ACTIVE, Phase.CLEARING):
            return self._rule_ids[key] == event.event_id  # a duplicate is closed, not merged
        self._rules[key] = resumed_rule(event)
        self._rule_ids[key] = event.event_id
        self._rule_limits[key] = limit
        return True

    def open_events(self) -> dict[str, str]:
        """Open exceedance event ids by ``exceedance:<quantity>:<severity>``."""
        out = {
            f"exceedance:{key[0]}:{key[1]}": self._rule_ids[key]
            for key, state in self._rules.items()
            if state.phase in (Phase.ACTIVE, Phase.CLEARING)
        }
        if self._periods is not None:
            out.update(self._periods.open_events())
        return out
