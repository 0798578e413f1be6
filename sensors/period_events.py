"""Period exceedances of one sensor: base windows folded into the standard's periods.

:class:`PeriodJudge` is the exceedance tracker's collaborator for quantities a profile
evaluates over periods (:mod:`sensors.periods` has the math and the rules). For each
fixed period (day/night, clock hour, GB 18483 sample block) it keeps a
:class:`~sensors.periods.PeriodAcc` and, per limit:

- opens an ``exceedance`` as soon as the period's exceedance is certain (``certain_at``),
  updates it every ``update_every_s`` and closes it at the period's end with the final
  value; a period that ends above the limit without having been certain early opens and
  closes at its end;
- opens a ``projected_exceedance`` warning (never an exceedance) when the value so far,
  carried on, would break the limit; it closes when the projection falls back, when the
  exceedance becomes certain, or at the period's end with the outcome;
- never judges an invalid (incomplete) period: it is counted, and an open warning closes
  with ``valid: false``.

Rolling hours (DB11/1488 with ``rolling``) are a trailing hour re-evaluated at every base
window; :meth:`PeriodJudge.rolling` returns that hour as a window value for the usual
lifecycle (:func:`sensors.rules.step`).

Restart: every event carries the period's running sums (``period_state``); adopting it
restores them, so a period with an open event resumes where its last event left it. A
period first seen after it began (the run started mid-period) is marked ``resumed`` and
its coverage counts only what this run saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.events import Event, EventStatus, Severity
from edge.ids import new_id
from sensors.adoption import matching_limit
from sensors.periods import (
    Calendar,
    Evaluation,
    PeriodAcc,
    PeriodKind,
    Verdict,
    contribution,
    is_certain,
    local_iso,
    period_bounds,
    period_value,
    projected_breach,
    validity_record,
    verdict,
)
from sensors.rolling_hours import RollingHours
from sensors.rules import Level, Limit, WindowStats, WindowValue, classify
from sensors.window import Metric, SealedWindow

__all__ = ["FIXED_KINDS", "PROJECTED_KIND", "PeriodJudge"]

PROJECTED_KIND = "projected_exceedance"
"""Event kind of an early warning: the period's value so far, carried on, breaks a limit."""

FIXED_KINDS = frozenset({PeriodKind.DAY_NIGHT.value, PeriodKind.HOUR.value, "samples"})


@dataclass(slots=True)
class _Open:
    """The open events of one (quantity, severity) rule in the current period."""

    limit: Limit
    event_id: str | None = None
    warn_id: str | None = None
    certain_at: float | None = None
    last_emit: float = 0.0


class PeriodJudge:
    """Period accumulators, verdicts and events of one sensor's period quantities."""

    def __init__(
        self,
        *,
        sensor_id: str,
        calendar: Calendar,
        evaluations: Mapping[str, Evaluation],
        limits: Mapping[str, Sequence[Limit]],
        metrics: Mapping[str, Metric],
        context: Mapping[str, Any],
        update_every_s: float,
    ) -> None:
        self._sensor_id = sensor_id
        self._cal = calendar
        self._evs = dict(evaluations)
        self._limits = limits
        self._metrics = metrics
        self._context = dict(context)
        self._update_every_s = update_every_s
        self._accs: dict[str, PeriodAcc] = {}
        self._seen: set[str] = set()  # quantities with a period in this run (for resumed)
        self._open: dict[tuple[str, str], _Open] = {}
        self._rolling = RollingHours(calendar)
        self._how: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.latest: dict[str, dict[str, Any]] = {}

    def evaluation(self, quantity: str) -> Evaluation | None:
        """How ``quantity`` is evaluated, when it is a period quantity."""
        ev = self._evs.get(quantity)
        return None if ev is None or ev.kind is PeriodKind.WINDOW else ev

    def _count(self, quantity: str, what: str) -> None:
        c = self.counts.setdefault(quantity, {"valid": 0, "invalid": 0, "exceeded": 0})
        c[what] = c.get(what, 0) + 1

    # --- fixed periods ------------------------------------------------------------

    def advance(self, ts: float, events: list[Event]) -> None:
        """Finish every period that ended at or before ``ts`` (device time)."""
        for quantity, acc in list(self._accs.items()):
            if acc.end <= ts:
                del self._accs[quantity]
                self._finish(quantity, acc, events)

    def fold(
        self,
        quantity: str,
        window: SealedWindow,
        stats: WindowStats,
        value: float | None,
        *,
        events: list[Event],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Fold one base window into the quantity's period and judge what is known.

        ``extra`` is how the window's value was computed (fume normalisation); the last
        window's goes into the period's events.
        """
        ev = self._evs[quantity]
        if extra:
            self._how[quantity] = dict(extra)
        acc = self._accs.get(quantity)
        if acc is None:
            start, end, label = period_bounds(window.start, ev, self._cal)
            acc = PeriodAcc(start=start, end=end, label=label)
            # the first period of a run that began after it: earlier data were not seen
            acc.resumed = quantity not in self._seen and window.start > start
            self._seen.add(quantity)
            self._accs[quantity] = acc
        elif window.start < acc.start:
            # a window from before the current period (readings replayed late): that period
            # has been judged already, so it is counted, never folded into the wrong one
            self._count(quantity, "late_windows")
            return
        aggregate = self._metrics[quantity].aggregate
        acc.fold(window.start, window.end, contribution(aggregate, stats, value), stats, ev)
        for limit in self._limits.get(acc.label, ()):
            if limit.quantity == quantity:
                self._judge(limit, acc, ev, window.end, events)

    def _judge(
        self, limit: Limit, acc: PeriodAcc, ev: Evaluation, now: float, events: list[Event]
    ) -> None:
        key = (limit.quantity, limit.severity.value)
        rule = self._open.setdefault(key, _Open(limit))
        aggregate = self._metrics[limit.quantity].aggregate
        if rule.event_id is None and is_certain(aggregate, acc, ev, limit):
            rule.event_id, rule.certain_at, rule.last_emit = new_id(), now, now
            self._emit(
                rule, acc, ev, EventStatus.OPEN, now=now, events=events, opened_because="certain"
            )
            if rule.warn_id is not None:
                self._emit(
                    rule, acc, ev, EventStatus.CLOSED, now=now, events=events, warn="certain"
                )
        elif rule.event_id is not None:
            # (no update at the period's end: the CLOSED event follows at once)
            if now - rule.last_emit >= self._update_every_s and now < acc.end:
                rule.last_emit = now
                self._emit(rule, acc, ev, EventStatus.UPDATE, now=now, events=events)
        elif ev.early_warning:
            projected = projected_breach(aggregate, acc, ev, limit)
            if projected and rule.warn_id is None:
                rule.warn_id = new_id()
                self._emit(
                    rule, acc, ev, EventStatus.OPEN, now=now, events=events, warn="projected"
                )
            elif not projected and rule.warn_id is not None:
                value = period_value(aggregate, acc, ev)
                if value is not None and classify(limit, value) is Level.CLEAR:
                    self._emit(
                        rule, acc, ev, EventStatus.CLOSED, now=now, events=events, warn="back"
                    )

    def _finish(self, quantity: str, acc: PeriodAcc, events: list[Event]) -> None:
        ev = self._evs[quantity]
        aggregate = self._metrics[quantity].aggregate
        v = verdict(aggregate, acc, ev)
        self._count(quantity, "valid" if v.valid else "invalid")
        exceeded = False
        for key, rule in list(self._open.items()):
            if key[0] != quantity:
                continue
            limit = rule.limit
            breach = v.valid and v.value is not None and classify(limit, v.value) is Level.BREACH
            exceeded |= breach
            if breach and rule.event_id is None:
                rule.event_id = new_id()
                self._emit(
                    rule,
                    acc,
                    ev,
                    EventStatus.OPEN,
                    now=acc.end,
                    events=events,
                    opened_because="period end",
                )
            if rule.warn_id is not None:
                outcome = "exceeded" if breach else ("invalid" if not v.valid else "within")
                self._emit(
                    rule, acc, ev, EventStatus.CLOSED, now=acc.end, events=events, warn=outcome, v=v
                )
            if rule.event_id is not None:
                self._emit(rule, acc, ev, EventStatus.CLOSED, now=acc.end, events=events, v=v)
            del self._open[key]
        if exceeded:
            self._count(quantity, "exceeded")
        self.latest[quantity] = {
            "standard_quantity": ev.name(acc.label, quantity),
            "period_start_local": local_iso(acc.start, self._cal),
            "period_end_local": local_iso(acc.end, self._cal),
            "value": v.value,
            "valid": v.valid,
            "coverage": v.coverage,
            "reason": v.reason,
            "resumed": acc.resumed,
            "exceeded": exceeded,
            "limits": [  # what the period was judged against, for status views
                {"severity": str(lim.severity), "limit_max": lim.upper, "limit_min": lim.lower}
                for lim in self._limits.get(acc.label, ())
                if lim.quantity == quantity
            ],
        }

    def _emit(
        self,
        rule: _Open,
        acc: PeriodAcc,
        ev: Evaluation,
        status: EventStatus,
        *,
        now: float,
        events: list[Event],
        warn: str | None = None,
        opened_because: str | None = None,
        v: Verdict | None = None,
    ) -> None:
        limit = rule.limit
        aggregate = self._metrics[limit.quantity].aggregate
        v = v or verdict(aggregate, acc, ev)
        d: dict[str, Any] = dict(self._context)
        d.update(self._how.get(limit.quantity, {}))
        d.update(limit.describe())
        final = status is EventStatus.CLOSED and now >= acc.end
        # certainty includes the coverage rule: the period is already known to be valid
        certain = warn is None and rule.certain_at is not None
        d.update(
            {
                "evaluation": "rolling_hour" if ev.rolling else ev.kind.value,
                "standard_quantity": ev.name(acc.label, limit.quantity),
                "period_clause": ev.clause,
                "period_start": acc.start,
                "period_end": acc.end,
                "period_start_local": local_iso(acc.start, self._cal),
                "period_end_local": local_iso(acc.end, self._cal),
                "period_value": v.value,
                "period_final": final,
                "window_value": v.value,
                "window_start": acc.start,
                "window_end": now,
                "peak": v.value,
                "rule_severity": limit.severity.value,
                "valid": v.valid if final else (True if certain else None),
                "validity": validity_record(ev, v, final or certain),
                "coverage": v.coverage,
                "resumed": acc.resumed,
                "flags": dict(acc.flags),
                "period_state": acc.state(),
                "duration_s": max(0.0, min(now, acc.end) - acc.start),
            }
        )
        if ev.override_clause is not None:
            d["period_override_clause"] = ev.override_clause
        if v.kept or v.discarded:
            d.update(samples_kept=list(v.kept), samples_discarded=list(v.discarded))
        if rule.certain_at is not None:
            d["certain_at"] = rule.certain_at
            d["certain_at_local"] = local_iso(rule.certain_at, self._cal)
        if opened_because is not None:
            d["opened_because"] = opened_because
        if warn is None:
            event_id = rule.event_id
            kind, severity, started = "exceedance", limit.severity, acc.start
        else:
            event_id = rule.warn_id
            kind, severity, started = PROJECTED_KIND, Severity.WARNING, acc.start
            d["projection"] = warn
            if status is EventStatus.CLOSED:
                rule.warn_id = None
        assert event_id is not None
        events.append(
            Event(
                kind=kind,
                source=self._sensor_id,
                severity=severity,
                status=status,
                started_at=started,
                event_id=event_id,
                ended_at=now if status is EventStatus.CLOSED else None,
                detail=d,
            )
        )

    # --- rolling hours ------------------------------------------------------------

    def rolling(
        self, quantity: str, window: SealedWindow, stats: WindowStats, value: float | None
    ) -> tuple[WindowValue, dict[str, Any]]:
        """The trailing hour ending with ``window`` as a window value (None when invalid)."""
        ev = self._evs[quantity]
        per_s = contribution(self._metrics[quantity].aggregate, stats, value)
        wv, extra = self._rolling.evaluate(quantity, ev, window, stats, per_s)
        self._count(quantity, "valid" if extra["valid"] else "invalid")
        return wv, extra

    # --- restart and introspection -------------------------------------------------

    def adopt(self, event: Event) -> bool:
        """Resume an open period event (exceedance or warning); False if not resumable."""
        quantity = event.detail.get("quantity")
        if not isinstance(quantity, str) or self.evaluation(quantity) is None:
            return False
        acc = PeriodAcc.from_state(event.detail.get("period_state"))
        severity = event.detail.get("rule_severity", event.severity.value)
        limit = matching_limit(self._limits, (quantity, str(severity)), event.detail)
        if acc is None or limit is None:
            return False
        current = self._accs.get(quantity)
        if current is not None and current.start != acc.start:
            return False
        if current is None or acc.covered > current.covered:
            self._accs[quantity] = acc
        self._seen.add(quantity)
        rule = self._open.setdefault((quantity, limit.severity.value), _Open(limit))
        if event.kind == PROJECTED_KIND:
            if rule.warn_id is not None:
                return rule.warn_id == event.event_id
            rule.warn_id = event.event_id
        else:
            if rule.event_id is not None:
                return rule.event_id == event.event_id
            rule.event_id = event.event_id
            certain = event.detail.get("certain_at")
            rule.certain_at = float(certain) if isinstance(certain, int | float) else None
            end = event.detail.get("window_end")
            rule.last_emit = float(end) if isinstance(end, int | float) else event.started_at
        return True

    def open_events(self) -> dict[str, str]:
        """Open period event ids by a readable key."""
        out: dict[str, str] = {}
        for (q, sev), rule in self._open.items():
            if rule.event_id is not None:
                out[f"exceedance:{q}:{sev}"] = rule.event_id
            if rule.warn_id is not None:
                out[f"{PROJECTED_KIND}:{q}:{sev}"] = rule.warn_id
        return out
