"""The stateful shell around the pure rules: one :class:`SensorMonitor` per sensor.

The ingest hot path calls :meth:`SensorMonitor.observe` for every stored reading; it only
folds the value into per-quantity window accumulators (a few float updates, no
allocation). Everything else happens in :meth:`SensorMonitor.tick`, called once per commit
cycle: closed windows are judged against the sensor's limits, and offline/stuck/out-of-range
conditions are checked. The events it returns go into the same transaction as the readings.

Clocks: windows follow the device's timestamps (so an Leq covers the interval the device
measured), while offline detection uses the receive clock passed to ``tick`` (a device
with a wrong clock is still seen as alive or silent correctly).

Windows are aligned in the profile's local time zone and never straddle a day/night
boundary (:func:`sensors.periods.window_bounds`), so each belongs to one period; quantities
a standard judges over longer periods (Ld/Ln, 1-hour means, 5-sample means) are folded
from these windows by :mod:`sensors.period_events` (docs/standards.md).

The monitor owns the windows and the maintenance mode; collaborators own the rest: the
window accumulators are :mod:`sensors.window`, the exceedance lifecycle
:mod:`sensors.exceedances` (periods: :mod:`sensors.period_events`), the health events
:mod:`sensors.health_events`, reading back an event a previous run left open (for
:meth:`SensorMonitor.adopt`) :mod:`sensors.adoption`, and binding a sensor's config to
its profile (for :func:`build_monitors`) :mod:`sensors.profile_binding`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edge.events import Event, EventStatus, Severity
from edge.ids import new_id
from sensors.adoption import resumed_mode
from sensors.config import HealthConfig, StandardRef
from sensors.exceedances import ADVISORY_KIND, PROJECTED_KIND, ExceedanceTracker
from sensors.fume import FumeSpec
from sensors.health_events import HealthTracker
from sensors.modes import Mode, ModeState, change_mode
from sensors.periods import Calendar, Evaluation, window_bounds
from sensors.profile_binding import MonitoredQuantity, MonitoredSensor, bind_profile
from sensors.rules import EVIDENCE_FLAGS, OVER_RANGE_FLAG, Aggregate, Limit
from sensors.standards import Profile
from sensors.water_class import Grading
from sensors.water_class_events import WATER_CLASS_KIND, WaterClassTracker
from sensors.window import Metric, SealedWindow, WindowAccumulator

__all__ = ["MonitoredQuantity", "MonitoredSensor", "SensorMonitor", "build_monitors"]


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
        fume: Mapping[str, FumeSpec] | None = None,
        advisory: Mapping[str, str] | None = None,
        grading: Grading | None = None,
        evaluation: Mapping[str, Evaluation] | None = None,
        calendar: Calendar | None = None,
    ) -> None:
        self.sensor_id = sensor_id
        # windows aligned in the profile's local time, never across day/night (None: UTC)
        self._calendar = calendar
        monitored = {q: Metric(*m) for q, m in (metrics or {}).items()}
        self._health = health or HealthConfig()
        self._window_s = ref.window_s if ref is not None else 60.0
        # The collaborators own the exceedance and health state; the monitor, the windows.
        self._exceedances = ExceedanceTracker(
            sensor_id=sensor_id,
            site=site,
            location=location,
            ref=ref,
            window_s=self._window_s,
            limits=limits,
            metrics=monitored,
            fume=fume,
            advisory=advisory,
            evaluation=evaluation,
            calendar=calendar,
        )
        # GB 3838-style grading of each window into a class (sensors.water_class_events)
        self._water = (
            WaterClassTracker(
                sensor_id=sensor_id,
                grading=grading,
                metrics=monitored,
                ref=ref,
                site=site,
                location=location,
            )
            if grading is not None and ref is not None
            else None
        )
        self._health_events = HealthTracker(
            sensor_id=sensor_id,
            site=site,
            health=self._health,
            quantities=frozenset(quantities) if quantities is not None else None,
        )
        self._energy = frozenset(energy_readings)
        self._accs: dict[str, WindowAccumulator] = {}
        for name in {m.reading for m in monitored.values()} | {
            m.inlet for m in monitored.values() if m.inlet
        }:
            self._acc(name)
        self._window_start = -math.inf
        self._window_end = -math.inf
        self._last_end = -math.inf  # end of the last window sealed (device time)
        self._sealed: list[SealedWindow] = []
        self._seen = 0
        self._last_seen_rx: float | None = None
        self._mode = ModeState()
        self._mode_id = ""
        self._forced_flag: str | None = None

    # --- hot path -------------------------------------------------------------------

    def _acc(self, name: str) -> WindowAccumulator:
        acc = self._accs.get(name)
        if acc is None:
            h = self._health
            tol = h.stuck_tolerances.get(name, h.stuck_tolerance)
            acc = self._accs[name] = WindowAccumulator(energy_on=name in self._energy, tol=tol)
        return acc

    @property
    def forced_flag(self) -> str | None:
        """``"M"``/``"C"`` while in maintenance/calibration: store readings with this flag."""
        return self._forced_flag

    def observe(self, quantity: str, value: float, flag: str, ts: float) -> None:
        """Fold one stored reading into the current window (O(1), no I/O).

        ``value`` is calibrated, ``flag`` its HJ 212 data flag, ``ts`` the device time.
        ``N`` and ``T`` (over range, a lower bound of the truth) readings count as
        evidence; ``T`` and every other flag are also counted per flag.
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
        if flag in EVIDENCE_FLAGS:
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
            if flag == OVER_RANGE_FLAG:
                # counted too, so the event shows saturation; a pinned value is not "stuck"
                acc.flags[flag] = acc.flags.get(flag, 0) + 1
                acc.run_n = 0
                acc.run_ref = math.nan
            elif abs(value - acc.run_ref) <= acc.tol:
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
            if self._forced_flag is None:
                # the device's own flag (not a technician's mode): watched for how long
                self._health_events.self_flagged(quantity, flag, ts, acc.seq)

    def out_of_range(self, quantity: str, value: float, ts: float) -> None:
        """Record a value outside the instrument's physical range (an instrument fault)."""
        acc = self._acc(quantity)
        self._health_events.out_of_range(quantity, value, ts, acc.seq)

    def _seal(self, ts: float | None) -> None:
        """Close the current window; start the one containing ``ts`` (None: none yet)."""
        if self._window_start != -math.inf:
            stats = {name: acc.snapshot_and_reset() for name, acc in self._accs.items()}
            self._sealed.append(SealedWindow(self._window_start, self._window_end, stats))
            self._last_end = self._window_end
        if ts is None:
            self._window_start = self._window_end = -math.inf
        elif self._calendar is not None:
            self._window_start, self._window_end = window_bounds(ts, self._window_s, self._calendar)
        else:
            start = math.floor(ts / self._window_s) * self._window_s
            self._window_start = start
            self._window_end = start + self._window_s

    # --- commit cycle ---------------------------------------------------------------

    def tick(self, now: float) -> list[Event]:
        """Close finished windows and judge them; judge health. ``now`` is receive time."""
        events: list[Event] = []
        heard = self._seen != 0
        if heard or self._last_seen_rx is None:
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
                self._exceedances.judge(window, events)
                if self._water is not None:
                    self._water.judge(window, events)
        if self._window_start == -math.inf and self._last_end != -math.inf:
            # silent sensor: finish periods that have ended by the device's clock (estimated)
            self._exceedances.expire(self._last_end + silent, events)
        self._health_events.judge(
            now,
            last_seen=self._last_seen_rx,
            heard=heard,
            in_mode=self._mode.mode is not Mode.NORMAL,
            accs=self._accs,
            events=events,
        )
        return events

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
        if event.kind in ("exceedance", ADVISORY_KIND, PROJECTED_KIND):
            return self._exceedances.adopt(event)
        if event.kind == WATER_CLASS_KIND:
            return self._water is not None and self._water.adopt(event)
        if event.kind == "maintenance":
            return self._adopt_maintenance(event)
        return self._health_events.adopt(event, self._acc)

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

    # --- introspection --------------------------------------------------------------

    def open_events(self) -> dict[str, str]:
        """Open exceedance and health event ids by a readable key (for status views)."""
        water = self._water.open_events() if self._water is not None else {}
        return {**self._exceedances.open_events(), **water, **self._health_events.open_events()}

    @property
    def periods(self) -> dict[str, Any]:
        """Evaluation periods for status: counts (valid/invalid/exceeded) and the latest."""
        judge = self._exceedances.periods
        if judge is None:
            return {}
        return {"counts": judge.counts, "latest": judge.latest}

    @property
    def water_class(self) -> dict[str, Any] | None:
        """The last graded window (class, determining factor, every factor), for status."""
        return self._water.latest if self._water is not None else None


def build_monitors(
    sensors: Iterable[MonitoredSensor],
    profiles: Mapping[str, Profile],
    *,
    site: str | None = None,
) -> dict[str, SensorMonitor]:
    """Build one monitor per sensor from its config and the loaded profiles.

    A sensor is judged on the profile quantities it reports (readings named as the
    profile's inputs, or mapped with ``standard.quantity_map``). Raises
    :class:`~sensors.errors.ProfileError` when a sensor names an unknown profile, gives
    invalid parameters, has units that do not convert, or reports none of the profile's
    readings.
    """
    monitors: dict[str, SensorMonitor] = {}
    for sensor in sensors:
        bound = bind_profile(sensor, profiles)
        # read with a default, like ``standard`` (see MonitoredSensor)
        health: HealthConfig = getattr(sensor, "health", None) or HealthConfig()
        monitors[sensor.id] = SensorMonitor(
            sensor_id=sensor.id,
            site=site,
            location=str(getattr(sensor, "location", "")),
            ref=bound.ref,
            limits=bound.limits,
            metrics=bound.metrics,
            health=health,
            energy_readings=bound.energy_readings,
            quantities=bound.readings,
            fume=bound.fume,
            advisory=bound.advisory,
            grading=bound.grading,
            evaluation=bound.evaluation,
            calendar=bound.calendar,
        )
    return monitors
