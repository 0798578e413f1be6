"""The water class of each sealed window, and the event when it falls below the target.

:class:`WaterClassTracker` grades every sealed window of a graded sensor (GB 3838-2002)
with :func:`sensors.water_class.assess` and keeps the latest grading for status views.
A window worse than the sensor's target class opens a ``water_class_below_target`` event
naming the factor that determined the class, its value, that factor's class limits and the
clause. The lifecycle is :func:`sensors.rules.step` over class *ranks* (0 = class I): the
same minimum duration, clear duration and periodic update as exceedances, so a brief dip
and a lasting one behave as the per-factor exceedance events do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.events import Event
from edge.ids import new_id
from sensors.config import StandardRef
from sensors.health import EVENT_STATUS
from sensors.rules import (
    OVER_RANGE_FLAG,
    Action,
    Limit,
    Phase,
    RuleState,
    Timing,
    WindowValue,
    step,
    window_value,
)
from sensors.water_class import Assessment, Grading, assess
from sensors.window import Metric, SealedWindow

__all__ = ["WATER_CLASS_KIND", "WaterClassTracker"]

WATER_CLASS_KIND = "water_class_below_target"


class WaterClassTracker:
    """Per-window water class of one sensor and its below-target event."""

    def __init__(
        self,
        *,
        sensor_id: str,
        grading: Grading,
        metrics: Mapping[str, Metric],
        ref: StandardRef,
        site: str | None,
        location: str,
    ) -> None:
        self._sensor_id = sensor_id
        self._grading = grading
        self._metrics = {q: metrics[q] for q in grading.factors if q in metrics}
        # the exceedances' timing, so a factor's event and the class event move together
        self._timing = Timing(
            min_duration_s=ref.min_duration_s,
            clear_duration_s=ref.clear_duration_s,
            update_every_s=ref.update_every_s,
        )
        self._context: dict[str, Any] = {
            "sensor": sensor_id,
            "site": site,
            "location": location,
            "window_s": ref.window_s,
            "params": dict(ref.params),
        }
        target = grading.rank(grading.target)
        # A rule on the class rank: above the target's rank breaches, at or below clears.
        self._limit = Limit(
            quantity="water_class",
            unit="class rank",
            lower=None,
            upper=float(target),
            clear_lower=None,
            clear_upper=float(target),
            severity=grading.severity,
            profile=grading.profile,
            standard=grading.standard,
            clause=grading.clause,
        )
        self._state = RuleState()
        self._event_id = ""
        self._worst: Assessment | None = None  # the assessment behind the peak
        self.latest: dict[str, Any] | None = None
        """The last graded window (class, determining factors, every factor), for status."""

    def judge(self, window: SealedWindow, events: list[Event]) -> None:
        """Grade one sealed window; append an event when the lifecycle asks for one."""
        values: dict[str, float] = {}
        saturated: set[str] = set()
        for quantity, metric in self._metrics.items():
            stats = window.stats.get(metric.reading)
            if stats is None:
                continue
            value = window_value(metric.aggregate, stats)
            if value is not None:
                values[quantity] = value
                if any(flag == OVER_RANGE_FLAG for flag, _n in stats.flags):
                    saturated.add(quantity)
        found = assess(self._grading, values, saturated)
        rank = None if found is None else float(self._grading.rank(found.water_class))
        wv = WindowValue(start=window.start, end=window.end, value=rank)
        if found is not None:
            self.latest = self._report(found, window)
        prev = self._state
        self._state, action = step(self._limit, self._timing, prev, wv)
        if found is not None and rank is not None:
            # the assessment behind the peak: a new run starts it, a worse class replaces it
            new_run = prev.phase is Phase.IDLE and self._state.phase is not Phase.IDLE
            if new_run or rank > prev.peak:
                self._worst = found
        if action is Action.NONE:
            return
        if action is Action.OPEN:
            self._event_id = new_id()
        detail = dict(self._context)
        detail.update(self.latest or {})
        worst = self._worst
        detail.update(
            standard=self._grading.standard,
            profile=self._grading.profile,
            clause=self._grading.clause,
            target_class=self._grading.target,
            worst_class=self._grading.name(int(self._state.peak)),
            worst_determining=list(worst.determining) if worst else [],
            duration_s=max(
                0.0,
                (self._state.clear_since if action is Action.CLOSE else window.end)
                - self._state.breach_since,
            ),
            windows=self._state.windows,
        )
        events.append(
            Event(
                kind=WATER_CLASS_KIND,
                source=self._sensor_id,
                severity=self._grading.severity,
                status=EVENT_STATUS[action],
                started_at=self._state.breach_since,
                event_id=self._event_id,
                ended_at=self._state.clear_since if action is Action.CLOSE else None,
                detail=detail,
            )
        )

    def _report(self, found: Assessment, window: SealedWindow) -> dict[str, Any]:
        """The JSON-able grading of one window, with the determining factor's limits."""
        g = self._grading
        first = found.determining[0]
        table = g.factors[first]
        target_bound = next(b for b in table.classes if b.name == g.target)
        return {
            "water_class": found.water_class,
            "window_start": window.start,
            "window_end": window.end,
            "determining_factors": list(found.determining),
            "determining": {
                "factor": first,
                "value": found.values[first],
                "unit": table.unit,
                "class": found.factor_classes[first],
                "target_limit": target_bound.describe(),
                "class_limits": {b.name: b.describe() for b in table.classes},
                "clause": table.clause,
            },
            "factor_classes": dict(found.factor_classes),
            "factor_values": dict(found.values),
        }

    def adopt(self, event: Event) -> bool:
        """Resume a below-target event a previous run left open (same target class only)."""
        d = event.detail
        if d.get("target_class") != self._grading.target:
            return False
        if self._state.phase in (Phase.ACTIVE, Phase.CLEARING):
            return self._event_id == event.event_id
        names = (*self._grading.classes, self._grading.worst)
        worst, current = d.get("worst_class"), d.get("water_class")
        if worst not in names or current not in names:
            return False
        end = d.get("window_end")
        windows = d.get("windows")
        self._state = RuleState(
            phase=Phase.ACTIVE,
            breach_since=event.started_at,
            peak=float(self._grading.rank(str(worst))),
            last_value=float(self._grading.rank(str(current))),
            last_emit=float(end) if isinstance(end, int | float) else event.started_at,
            windows=windows if isinstance(windows, int) else 0,
        )
        self._event_id = event.event_id
        return True

    def open_events(self) -> dict[str, str]:
        """The open below-target event id, keyed ``water_class:below_target``."""
        if self._state.phase in (Phase.ACTIVE, Phase.CLEARING):
            return {"water_class:below_target": self._event_id}
        return {}
