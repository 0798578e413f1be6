"""The health events of one sensor: offline, stuck (flat-line), out of range, self-flagged.

A reading the device flags itself (HJ 212 ``M`` maintenance, ``C`` calibration, ``D``
fault, …) is stored with its flag but never judged, so a site could declare maintenance
forever; a quantity that reports only such flags for longer than
``health.self_flag_limit_s`` raises a ``sensor_self_flagged`` alarm until a valid reading
(or a technician's maintenance mode) ends the run.

:class:`HealthTracker` holds which health conditions have an open event, judges them
once per commit cycle with the pure decisions of :mod:`sensors.health`, and emits one
event per outage (OPEN on the rising edge, CLOSED on recovery). It is ``SensorMonitor``'s
collaborator for sensor health: the monitor owns the window accumulators and passes them
in, since the stuck check and out-of-range recovery read their flat-line runs and
reading counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.events import Event, Severity
from edge.ids import new_id
from sensors.adoption import pending_out_of_range, resumed_run
from sensors.config import HealthConfig
from sensors.health import EVENT_STATUS, HealthState, health_step, is_offline, is_stuck
from sensors.rules import Action
from sensors.window import WindowAccumulator

__all__ = ["HealthTracker"]


@dataclass(slots=True, kw_only=True)
class _FlagRun:
    """Consecutive self-flagged readings of one quantity."""

    since: float
    last_ts: float
    last_seq: int
    readings: int = 0
    flags: dict[str, int] = field(default_factory=dict)


class HealthTracker:
    """Health-condition states and open health event ids of one sensor."""

    def __init__(
        self,
        *,
        sensor_id: str,
        site: str | None,
        health: HealthConfig,
        quantities: frozenset[str] | None,
    ) -> None:
        self._sensor_id = sensor_id
        self._site = site
        self._health = health
        # The configured reading names, when known: an event about a quantity that left the
        # config cannot be resumed (nothing would ever close it). None accepts any name.
        self._quantities = quantities
        self._offline = HealthState()
        self._offline_id = ""
        # An adopted offline event stays open until a reading arrives, even while the
        # restarted offline clock has not yet run out (see :meth:`adopt`).
        self._offline_held = False
        self._stuck: dict[str, HealthState] = {}
        self._stuck_ids: dict[str, str] = {}
        self._oor: dict[str, tuple[float, float, int, int]] = {}  # q -> value, ts, seq, count
        self._oor_state: dict[str, HealthState] = {}
        self._oor_ids: dict[str, str] = {}
        self._self_flags = frozenset(health.self_flags)
        self._flag_runs: dict[str, _FlagRun] = {}
        self._flag_state: dict[str, HealthState] = {}
        self._flag_ids: dict[str, str] = {}

    def self_flagged(self, quantity: str, flag: str, ts: float, seq: int) -> None:
        """Record a reading the device flagged itself; ``seq`` is its accumulator's count.

        Readings continue a run only when no other reading of the quantity came between
        them (their ``seq`` is consecutive): one valid reading ends the run.
        """
        if flag not in self._self_flags:
            return
        run = self._flag_runs.get(quantity)
        if run is None or run.last_seq != seq - 1:
            run = self._flag_runs[quantity] = _FlagRun(since=ts, last_ts=ts, last_seq=seq)
        run.last_ts = max(run.last_ts, ts)
        run.last_seq = seq
        run.readings += 1
        run.flags[flag] = run.flags.get(flag, 0) + 1

    def _judge_self_flags(
        self, now: float, accs: Mapping[str, WindowAccumulator], events: list[Event]
    ) -> None:
        limit = self._health.self_flag_limit_s
        for name in list(self._flag_runs.keys() | self._flag_state.keys()):
            run = self._flag_runs.get(name)
            acc = accs.get(name)
            ongoing = run is not None and acc is not None and run.last_seq == acc.seq
            if run is not None and not ongoing:
                del self._flag_runs[name]
            condition = (
                ongoing
                and limit is not None
                and run is not None
                and run.last_ts - run.since >= limit
            )
            state = self._flag_state.get(name, HealthState())
            new, action = health_step(state, condition, run.since if run and condition else now)
            self._flag_state[name] = new
            if action is Action.OPEN:
                self._flag_ids[name] = new_id()
            if action is Action.NONE:
                continue
            detail: dict[str, Any] = {
                "quantity": name,
                "self_flag_limit_s": limit,
                "flags": {} if run is None else dict(run.flags),
                "readings": 0 if run is None else run.readings,
                "last_flagged_at": None if run is None else run.last_ts,
            }
            events.append(
                self._event(
                    "sensor_self_flagged",
                    Severity.ALARM,
                    action,
                    event_id=self._flag_ids[name],
                    started_at=new.since,
                    at=now,
                    detail=detail,
                )
            )
            if action is Action.CLOSE:
                del self._flag_state[name]

    def out_of_range(self, quantity: str, value: float, ts: float, seq: int) -> None:
        """Record an out-of-range value; ``seq`` is its accumulator's reading count now."""
        prev = self._oor.get(quantity)
        count = 1 if prev is None else prev[3] + 1
        self._oor[quantity] = (value, ts, seq, count)

    def _event(
        self,
        kind: str,
        severity: Severity,
        action: Action,
        *,
        event_id: str,
        started_at: float,
        at: float,
        detail: dict[str, Any],
    ) -> Event:
        return Event(
            kind=kind,
            source=self._sensor_id,
            severity=severity,
            status=EVENT_STATUS[action],
            started_at=started_at,
            event_id=event_id,
            ended_at=at if action is Action.CLOSE else None,
            detail={"sensor": self._sensor_id, "site": self._site, **detail},
        )

    def judge(
        self,
        now: float,
        *,
        last_seen: float,
        heard: bool,
        in_mode: bool,
        accs: Mapping[str, WindowAccumulator],
        events: list[Event],
    ) -> None:
        """Judge offline, stuck and out-of-range at receive time ``now``; append the events.

        ``last_seen`` is when a reading last arrived, ``heard`` whether any arrived since
        the previous tick, ``in_mode`` whether maintenance/calibration is on, and ``accs``
        the monitor's window accumulators by reading name.
        """
        h = self._health
        if heard:
            self._offline_held = False
        offline = self._offline_held or is_offline(
            last_seen, now, h.expected_interval_s, h.offline_multiple
        )
        # maintenance explains silence: do not open a new outage during it
        self._offline, action = health_step(
            self._offline, offline and (self._offline.open or not in_mode), last_seen
        )
        if action is Action.OPEN:
            self._offline_id = new_id()
        if action is not Action.NONE:
            detail = {
                "last_seen": last_seen,
                "silent_s": now - last_seen,
                "expected_interval_s": h.expected_interval_s,
                "offline_multiple": h.offline_multiple,
            }
            events.append(
                self._event(
                    "sensor_offline",
                    Severity.ALARM,
                    action,
                    event_id=self._offline_id,
                    started_at=self._offline.since,
                    at=now,
                    detail=detail,
                )
            )
        if h.stuck_after_s is not None:
            for name, acc in accs.items():
                if name in h.stuck_exempt:
                    continue
                state = self._stuck.get(name, HealthState())
                stuck = is_stuck(acc.run_start, acc.run_last, acc.run_n, h.stuck_after_s)
                new, action = health_step(state, stuck, acc.run_start if stuck else now)
                self._stuck[name] = new
                if action is Action.OPEN:
                    self._stuck_ids[name] = new_id()
                if action is not Action.NONE:
                    stuck_detail: dict[str, Any] = {
                        "quantity": name,
                        "value": acc.run_ref if stuck else acc.last,
                        "tolerance": acc.tol,
                        "stuck_after_s": h.stuck_after_s,
                        "run_readings": acc.run_n,
                    }
                    events.append(
                        self._event(
                            "sensor_stuck",
                            Severity.ALARM,
                            action,
                            event_id=self._stuck_ids[name],
                            started_at=new.since,
                            at=now,
                            detail=stuck_detail,
                        )
                    )
        for name, (value, ts, seq, count) in list(self._oor.items()):
            state = self._oor_state.get(name, HealthState())
            recovered = accs[name].seq > seq
            if not state.open:
                # open even if already recovered, so a transient fault is on record
                state, _ = health_step(state, True, ts)
                self._oor_ids[name] = new_id()
                events.append(
                    self._oor_event(name, Action.OPEN, state, now=now, value=value, count=count)
                )
            if recovered:
                state, _ = health_step(state, False, now)
                events.append(
                    self._oor_event(name, Action.CLOSE, state, now=now, value=value, count=count)
                )
                del self._oor[name]
            self._oor_state[name] = state
        self._judge_self_flags(now, accs, events)

    def _oor_event(
        self,
        name: str,
        action: Action,
        state: HealthState,
        *,
        now: float,
        value: float,
        count: int,
    ) -> Event:
        detail: dict[str, Any] = {"quantity": name, "value": value, "count": count}
        return self._event(
            "sensor_out_of_range",
            Severity.WARNING,
            action,
            event_id=self._oor_ids[name],
            started_at=state.since,
            at=now,
            detail=detail,
        )

    # --- restart -------------------------------------------------------------------

    def adopt(self, event: Event, get_acc: Callable[[str], WindowAccumulator]) -> bool:
        """Resume an open health event of this sensor (see ``SensorMonitor.adopt``).

        ``get_acc`` gets (creating if needed) the accumulator of a reading name; it is only
        called once the event is known to be adoptable. Returns False for a kind that is
        not a health event, or one the current config can no longer judge.
        """
        if event.kind == "sensor_offline":
            return self._adopt_offline(event)
        if event.kind == "sensor_stuck":
            return self._adopt_stuck(event, get_acc)
        if event.kind == "sensor_out_of_range":
            return self._adopt_out_of_range(event, get_acc)
        if event.kind == "sensor_self_flagged":
            return self._adopt_self_flagged(event, get_acc)
        return False

    def _adopt_self_flagged(
        self, event: Event, get_acc: Callable[[str], WindowAccumulator]
    ) -> bool:
        name = event.detail.get("quantity")
        if not self._knows(name) or self._health.self_flag_limit_s is None:
            return False
        assert isinstance(name, str)  # checked by _knows
        state = self._flag_state.get(name)
        if state is not None and state.open:
            return self._flag_ids[name] == event.event_id
        # The run continues if the next reading is flagged again, closes at a valid one.
        flags = event.detail.get("flags")
        self._flag_runs[name] = _FlagRun(
            since=event.started_at,
            last_ts=float(event.detail.get("last_flagged_at") or event.started_at),
            last_seq=get_acc(name).seq,
            readings=int(event.detail.get("readings") or 0),
            flags=dict(flags) if isinstance(flags, dict) else {},
        )
        self._flag_state[name] = HealthState(open=True, since=event.started_at)
        self._flag_ids[name] = event.event_id
        return True

    def _adopt_offline(self, event: Event) -> bool:
        if self._offline.open:
            return self._offline_id == event.event_id
        self._offline = HealthState(open=True, since=event.started_at)
        self._offline_id = event.event_id
        # The offline clock restarts at the first tick, which alone would read as a
        # recovery: hold the event open until the sensor is actually heard from.
        self._offline_held = True
        return True

    def _adopt_stuck(self, event: Event, get_acc: Callable[[str], WindowAccumulator]) -> bool:
        h = self._health
        name = event.detail.get("quantity")
        run = None if h.stuck_after_s is None else resumed_run(event, h.stuck_after_s)
        if run is None or not self._knows(name) or name in h.stuck_exempt:
            return False
        assert isinstance(name, str)  # checked by _knows
        state = self._stuck.get(name)
        if state is not None and state.open:
            return self._stuck_ids[name] == event.event_id
        acc = get_acc(name)
        acc.run_ref = run.value
        acc.run_start = run.start
        acc.run_last = run.last
        acc.run_n = run.readings
        self._stuck[name] = HealthState(open=True, since=event.started_at)
        self._stuck_ids[name] = event.event_id
        return True

    def _adopt_out_of_range(
        self, event: Event, get_acc: Callable[[str], WindowAccumulator]
    ) -> bool:
        name = event.detail.get("quantity")
        if not self._knows(name):
            return False
        assert isinstance(name, str)  # checked by _knows
        state = self._oor_state.get(name)
        if state is not None and state.open:
            return self._oor_ids[name] == event.event_id
        self._oor[name] = pending_out_of_range(event, get_acc(name).seq)
        self._oor_state[name] = HealthState(open=True, since=event.started_at)
        self._oor_ids[name] = event.event_id
        return True

    def _knows(self, name: object) -> bool:
        return isinstance(name, str) and (self._quantities is None or name in self._quantities)

    def open_events(self) -> dict[str, str]:
        """Open health event ids: ``sensor_offline``, ``sensor_stuck:<q>``, ``…_range:<q>``."""
        out: dict[str, str] = {}
        if self._offline.open:
            out["sensor_offline"] = self._offline_id
        for name, st in self._stuck.items():
            if st.open:
                out[f"sensor_stuck:{name}"] = self._stuck_ids[name]
        for name, st in self._oor_state.items():
            if st.open:
                out[f"sensor_out_of_range:{name}"] = self._oor_ids[name]
        for name, st in self._flag_state.items():
            if st.open:
                out[f"sensor_self_flagged:{name}"] = self._flag_ids[name]
        return out
