"""The stateful shell around the pure rules: one :class:`SensorMonitor` per sensor.

The ingest hot path calls :meth:`SensorMonitor.observe` for every stored reading; it only
folds the value into per-quantity window accumulators (a few float updates, no
allocation). Everything else happens in :meth:`SensorMonitor.tick`, called once per commit
cycle: closed windows are turned into window values and run through
:func:`sensors.rules.step`, and offline/stuck/out-of-range conditions through
:func:`sensors.health.health_step`. The events it returns go into the same transaction as
the readings.

Clocks: windows follow the device's timestamps (so an Leq covers the interval the device
measured), while offline detection uses the receive clock passed to ``tick`` (a device
with a wrong clock is still seen as alive or silent correctly).

The window accumulators live in :mod:`sensors.window`; reading back an event a previous
run left open (for :meth:`SensorMonitor.adopt`) in :mod:`sensors.adoption`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from edge.events import Event, EventStatus, Severity
from edge.ids import new_id
from sensors.adoption import (
    exceedance_key,
    matching_limit,
    pending_out_of_range,
    resumed_mode,
    resumed_rule,
    resumed_run,
)
from sensors.health import HealthState, health_step, is_offline, is_stuck
from sensors.maintenance import Mode, ModeState, change_mode
from sensors.rules import (
    NORMAL_FLAG,
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
from sensors.standards import (
    HealthConfig,
    Profile,
    ProfileError,
    StandardRef,
    resolve_limits,
)
from sensors.window import Accumulator, Metric, SealedWindow

__all__ = ["MonitoredQuantity", "MonitoredSensor", "SensorMonitor", "build_monitors"]

_STATUS = {
    Action.OPEN: EventStatus.OPEN,
    Action.UPDATE: EventStatus.UPDATE,
    Action.CLOSE: EventStatus.CLOSED,
}


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


_EMPTY = WindowStats()


class SensorMonitor:
    """Windows, exceedance lifecycle and health of one sensor.

    Build it with :func:`build_monitors`. Call :meth:`observe` for each stored reading,
    :meth:`out_of_range` for each dead-lettered out-of-range value, :meth:`tick` every
    commit cycle, and :meth:`set_mode` when a technician starts or ends maintenance.
    """

    def __init__(
        self,
        *,
        sensor_id: str,
        site: str | None = None,
        location: str = "",
        ref: StandardRef | None = None,
        limits: Mapping[str, Sequence[Limit]] | None = None,
        metrics: Mapping[str, tuple[Aggregate, str, str | None]] | None = None,
        health: HealthConfig | None = None,
        energy_readings: Iterable[str] = (),
        quantities: Iterable[str] | None = None,
    ) -> None:
        self.sensor_id = sensor_id
        # The configured reading names, when known: an event about a quantity that left the
        # config cannot be resumed (nothing would ever close it). None accepts any name.
        self._quantities = frozenset(quantities) if quantities is not None else None
        self._ref = ref
        self._limits = {p: tuple(ls) for p, ls in (limits or {}).items()}
        self._metrics = {q: Metric(*m) for q, m in (metrics or {}).items()}
        self._health = health or HealthConfig()
        self._window_s = ref.window_s if ref is not None else 60.0
        self._timing = Timing(
            min_duration_s=ref.min_duration_s if ref else 0.0,
            clear_duration_s=ref.clear_duration_s if ref else 0.0,
            update_every_s=ref.update_every_s if ref else 600.0,
        )
        self._tz = ZoneInfo(ref.timezone) if ref is not None else None
        self._day_start = ref.seconds_of(ref.day_start) if ref else 0.0
        self._night_start = ref.seconds_of(ref.night_start) if ref else 0.0
        self._context: dict[str, Any] = {
            "sensor": sensor_id,
            "site": site,
            "location": location,
            "window_s": self._window_s,
        }
        if ref is not None:
            self._context["params"] = dict(ref.params)
            if ref.soil_ph is not None:
                self._context["soil_ph"] = ref.soil_ph
        self._energy = frozenset(energy_readings)
        self._accs: dict[str, Accumulator] = {}
        for name in {m.reading for m in self._metrics.values()} | {
            m.inlet for m in self._metrics.values() if m.inlet
        }:
            self._acc(name)
        self._window_start = -math.inf
        self._window_end = -math.inf
        self._sealed: list[SealedWindow] = []
        self._seen = 0
        self._last_seen_rx: float | None = None
        self._rules: dict[tuple[str, str], RuleState] = {}
        self._rule_ids: dict[tuple[str, str], str] = {}
        self._rule_limits: dict[tuple[str, str], Limit] = {}
        self._offline = HealthState()
        self._offline_id = ""
        self._stuck: dict[str, HealthState] = {}
        self._stuck_ids: dict[str, str] = {}
        self._oor: dict[str, tuple[float, float, int, int]] = {}  # q -> value, ts, seq, count
        self._oor_state: dict[str, HealthState] = {}
        self._oor_ids: dict[str, str] = {}
        self._mode = ModeState()
        self._mode_id = ""
        self._forced_flag: str | None = None
        # An adopted offline event stays open until a reading arrives, even while the
        # restarted offline clock has not yet run out (see :meth:`adopt`).
        self._offline_held = False

    # --- hot path -------------------------------------------------------------------

    def _acc(self, name: str) -> Accumulator:
        acc = self._accs.get(name)
        if acc is None:
            h = self._health
            tol = h.stuck_tolerances.get(name, h.stuck_tolerance)
            acc = self._accs[name] = Accumulator(energy_on=name in self._energy, tol=tol)
        return acc

    @property
    def forced_flag(self) -> str | None:
        """``"M"``/``"C"`` while in maintenance/calibration: store readings with this flag."""
        return self._forced_flag

    def observe(self, quantity: str, value: float, flag: str, ts: float) -> None:
        """Fold one stored reading into the current window (O(1), no I/O).

        ``value`` is calibrated, ``flag`` its HJ 212 data flag, ``ts`` the device time.
        Only ``N`` readings count as evidence; others are counted per flag.
        """
        acc = self._accs.get(quantity)
        if acc is None:
            acc = self._acc(quantity)
        if self._forced_flag is not None:
            flag = self._forced_flag
        if ts >= self._window_end:
            self._seal(ts)
        self._seen += 1
        acc.seq += 1
        if flag == NORMAL_FLAG:
            acc.n += 1
            acc.total += value
            if acc.energy_on:
                acc.energy += 10.0 ** (value * 0.1)
            # plain comparisons, not max()/min(): no call overhead on the hot path
            if value > acc.vmax:  # noqa: PLR1730
                acc.vmax = value
            if value < acc.vmin:  # noqa: PLR1730
                acc.vmin = value
            acc.last = value
            if abs(value - acc.run_ref) <= acc.tol:
                acc.run_n += 1
                acc.run_last = ts
            else:
                acc.run_ref = value
                acc.run_start = ts
                acc.run_last = ts
                acc.run_n = 1
        else:
            acc.flags[flag] = acc.flags.get(flag, 0) + 1
            # a flat line during maintenance is expected, so flagged data restarts the run
            acc.run_n = 0
            acc.run_ref = math.nan

    def out_of_range(self, quantity: str, value: float, ts: float) -> None:
        """Record a value outside the instrument's physical range (an instrument fault)."""
        acc = self._acc(quantity)
        prev = self._oor.get(quantity)
        count = 1 if prev is None else prev[3] + 1
        self._oor[quantity] = (value, ts, acc.seq, count)

    def _seal(self, ts: float | None) -> None:
        """Close the current window; start the one containing ``ts`` (None: none yet)."""
        if self._window_start != -math.inf:
            stats = {name: acc.snapshot_and_reset() for name, acc in self._accs.items()}
            self._sealed.append(SealedWindow(self._window_start, self._window_end, stats))
        if ts is None:
            self._window_start = self._window_end = -math.inf
        else:
            start = math.floor(ts / self._window_s) * self._window_s
            self._window_start = start
            self._window_end = start + self._window_s

    # --- commit cycle ---------------------------------------------------------------

    def tick(self, now: float) -> list[Event]:
        """Close finished windows and judge them; judge health. ``now`` is receive time."""
        events: list[Event] = []
        if self._seen:
            self._offline_held = False
        if self._seen or self._last_seen_rx is None:
            # the first tick starts the offline clock for a sensor never heard from
            self._last_seen_rx = now
            self._seen = 0
        silent = now - self._last_seen_rx
        if (
            self._window_start != -math.inf
            and silent > self._window_s + self._health.expected_interval_s
        ):
            self._seal(None)  # no next reading will arrive to close this window
        if self._sealed:
            sealed, self._sealed = self._sealed, []
            for window in sealed:
                self._judge(window, events)
        self._judge_health(now, events)
        return events

    def _period(self, start: float) -> str:
        if self._tz is None or "any" in self._limits:
            return "any"
        local = datetime.fromtimestamp(start, self._tz)
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        return period_at(seconds, self._day_start, self._night_start)

    def _judge(self, window: SealedWindow, events: list[Event]) -> None:
        limits = self._limits.get(self._period(window.start), ())
        applicable: set[tuple[str, str]] = set()
        for limit in limits:
            metric = self._metrics[limit.quantity]
            stats = window.stats.get(metric.reading, _EMPTY)
            inlet = window.stats.get(metric.inlet, _EMPTY) if metric.inlet else None
            wv = WindowValue(
                start=window.start,
                end=window.end,
                value=window_value(metric.aggregate, stats, inlet),
                n=stats.n,
                flags=stats.flags,
            )
            key = (limit.quantity, limit.severity.value)
            applicable.add(key)
            self._advance(key, limit, self._rules.get(key, RuleState()), wv, events)
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
        events.append(
            Event(
                kind="exceedance",
                source=self.sensor_id,
                severity=limit.severity,
                status=_STATUS[action],
                started_at=state.breach_since,
                event_id=self._rule_ids[key],
                ended_at=state.clear_since if action is Action.CLOSE else None,
                detail=detail,
            )
        )

    def _health_event(
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
            source=self.sensor_id,
            severity=severity,
            status=_STATUS[action],
            started_at=started_at,
            event_id=event_id,
            ended_at=at if action is Action.CLOSE else None,
            detail={"sensor": self.sensor_id, "site": self._context["site"], **detail},
        )

    def _judge_health(self, now: float, events: list[Event]) -> None:
        h = self._health
        in_mode = self._mode.mode is not Mode.NORMAL
        last = self._last_seen_rx if self._last_seen_rx is not None else now
        offline = self._offline_held or is_offline(
            last, now, h.expected_interval_s, h.offline_multiple
        )
        # maintenance explains silence: do not open a new outage during it
        self._offline, action = health_step(
            self._offline, offline and (self._offline.open or not in_mode), last
        )
        if action is Action.OPEN:
            self._offline_id = new_id()
        if action is not Action.NONE:
            detail = {
                "last_seen": last,
                "silent_s": now - last,
                "expected_interval_s": h.expected_interval_s,
                "offline_multiple": h.offline_multiple,
            }
            events.append(
                self._health_event(
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
            for name, acc in self._accs.items():
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
                        self._health_event(
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
            recovered = self._accs[name].seq > seq
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
        return self._health_event(
            "sensor_out_of_range",
            Severity.WARNING,
            action,
            event_id=self._oor_ids[name],
            started_at=state.since,
            at=now,
            detail=detail,
        )

    # --- maintenance ----------------------------------------------------------------

    @property
    def mode(self) -> ModeState:
        """The current maintenance/calibration mode."""
        return self._mode

    def set_mode(self, mode: Mode | str, who: str, why: str, ts: float) -> Event:
        """Enter or leave maintenance/calibration; return the ``maintenance`` event.

        Raises ValueError for an unknown mode, missing who/why, or normal → normal.
        """
        new_mode = Mode(mode)
        old = self._mode
        state, status = change_mode(old, new_mode, who, why, ts)
        if status is EventStatus.OPEN:
            self._mode_id = new_id()
        self._mode = state
        self._forced_flag = new_mode.flag
        return Event(
            kind="maintenance",
            source=self.sensor_id,
            severity=Severity.INFO,
            status=status,
            started_at=old.since if status is EventStatus.CLOSED else state.since,
            event_id=self._mode_id,
            ended_at=ts if status is EventStatus.CLOSED else None,
            detail={"sensor": self.sensor_id, "mode": new_mode.value, "who": who, "why": why},
        )

    # --- restart -------------------------------------------------------------------

    def adopt(self, event: Event) -> bool:
        """Resume an event a previous run left open; return False when it is not ours.

        Called at start-up, before the first reading, for each open event in the store, so
        a condition that lasts across a restart keeps its ``event_id``: the next evaluation
        updates or closes that event instead of opening a second one. Restores state only
        (no I/O, nothing emitted). Returns False for another source, a kind this monitor
        does not produce, or an event the current config can no longer judge (its limit,
        quantity or stuck check is gone); the caller closes those.
        """
        if event.source != self.sensor_id:
            return False
        adopt = {
            "exceedance": self._adopt_exceedance,
            "sensor_offline": self._adopt_offline,
            "sensor_stuck": self._adopt_stuck,
            "sensor_out_of_range": self._adopt_out_of_range,
            "maintenance": self._adopt_maintenance,
        }.get(event.kind)
        return adopt is not None and adopt(event)

    def _adopt_exceedance(self, event: Event) -> bool:
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

    def _adopt_offline(self, event: Event) -> bool:
        if self._offline.open:
            return self._offline_id == event.event_id
        self._offline = HealthState(open=True, since=event.started_at)
        self._offline_id = event.event_id
        # The offline clock restarts at the first tick, which alone would read as a
        # recovery: hold the event open until the sensor is actually heard from.
        self._offline_held = True
        return True

    def _adopt_stuck(self, event: Event) -> bool:
        h = self._health
        name = event.detail.get("quantity")
        run = None if h.stuck_after_s is None else resumed_run(event, h.stuck_after_s)
        if run is None or not self._knows(name) or name in h.stuck_exempt:
            return False
        assert isinstance(name, str)  # checked by _knows
        state = self._stuck.get(name)
        if state is not None and state.open:
            return self._stuck_ids[name] == event.event_id
        acc = self._acc(name)
        acc.run_ref = run.value
        acc.run_start = run.start
        acc.run_last = run.last
        acc.run_n = run.readings
        self._stuck[name] = HealthState(open=True, since=event.started_at)
        self._stuck_ids[name] = event.event_id
        return True

    def _adopt_out_of_range(self, event: Event) -> bool:
        name = event.detail.get("quantity")
        if not self._knows(name):
            return False
        assert isinstance(name, str)  # checked by _knows
        state = self._oor_state.get(name)
        if state is not None and state.open:
            return self._oor_ids[name] == event.event_id
        self._oor[name] = pending_out_of_range(event, self._acc(name).seq)
        self._oor_state[name] = HealthState(open=True, since=event.started_at)
        self._oor_ids[name] = event.event_id
        return True

    def _adopt_maintenance(self, event: Event) -> bool:
        state = resumed_mode(event)
        if state is None:
            return False
        if self._mode.mode is not Mode.NORMAL:
            return self._mode_id == event.event_id
        self._mode = state
        self._mode_id = event.event_id
        self._forced_flag = state.mode.flag
        return True

    def _knows(self, name: object) -> bool:
        return isinstance(name, str) and (self._quantities is None or name in self._quantities)

    # --- introspection --------------------------------------------------------------

    def open_events(self) -> dict[str, str]:
        """Open exceedance and health event ids by a readable key (for status views)."""
        out: dict[str, str] = {}
        for key, state in self._rules.items():
            if state.phase in (Phase.ACTIVE, Phase.CLEARING):
                out[f"exceedance:{key[0]}:{key[1]}"] = self._rule_ids[key]
        if self._offline.open:
            out["sensor_offline"] = self._offline_id
        for name, st in self._stuck.items():
            if st.open:
                out[f"sensor_stuck:{name}"] = self._stuck_ids[name]
        for name, st in self._oor_state.items():
            if st.open:
                out[f"sensor_out_of_range:{name}"] = self._oor_ids[name]
        return out


def build_monitors(
    sensors: Iterable[MonitoredSensor],
    profiles: Mapping[str, Profile],
    *,
    site: str | None = None,
) -> dict[str, SensorMonitor]:
    """Build one monitor per sensor from its config and the loaded profiles.

    A sensor is judged on the profile quantities it reports (readings named as the
    profile's inputs, or mapped with ``standard.quantity_map``). Raises
    :class:`~sensors.standards.ProfileError` when a sensor names an unknown profile, gives
    invalid parameters, has units that do not convert, or reports none of the profile's
    readings.
    """
    monitors: dict[str, SensorMonitor] = {}
    for sensor in sensors:
        ref: StandardRef | None = getattr(sensor, "standard", None)
        health: HealthConfig = getattr(sensor, "health", None) or HealthConfig()
        units_by_reading = {q.name: q.unit for q in sensor.quantities}
        energy = {q.name for q in sensor.quantities if q.unit.lower().startswith("db")}
        limits: dict[str, tuple[Limit, ...]] = {}
        metrics: dict[str, tuple[Aggregate, str, str | None]] = {}
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
                limits = resolve_limits(profile, ref, units)
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
        monitors[sensor.id] = SensorMonitor(
            sensor_id=sensor.id,
            site=site,
            location=str(getattr(sensor, "location", "")),
            ref=ref,
            limits=limits,
            metrics=metrics,
            health=health,
            energy_readings=energy,
            quantities=units_by_reading,
        )
    return monitors
