"""SensorMonitor.adopt: an event left open by a previous run keeps its id after a restart.

Each test runs a first monitor until it opens an event, passes the event through JSON as
the store would, then "restarts": a new monitor from the same config adopts it.
"""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.events import Event, EventStatus, Severity
from sensors.config import HealthConfig, StandardRef
from sensors.modes import Mode
from sensors.monitor import build_monitors

from .test_monitor import DAY_T0, Q, Sensor, feed, kinds, noise_sensor


def stored(event: Event) -> Event:
    """The event as ``Store.open_events`` gives it back: detail through JSON, still open."""
    detail = json.loads(json.dumps(dict(event.detail), default=str))
    return replace(event, status=EventStatus.OPEN, detail=detail)


def restarted(profiles, sensor=None):
    """A fresh monitor from the same config, as the gateway builds it at start."""
    return build_monitors([sensor or noise_sensor()], profiles)["noise-1"]


def open_exceedance(profiles, sensor=None):
    """Run a monitor through three loud minutes (Leq 65 > 60 by day); return the OPEN."""
    mon = restarted(profiles, sensor)
    events = feed(mon, "LA", [65.0 + (i % 2) * 0.1 for i in range(181)], DAY_T0)
    (opened,) = [e for e in events if e.kind == "exceedance"]
    assert opened.status is EventStatus.OPEN
    return stored(opened)


def quiet(n):
    return [50.0 + (i % 3) for i in range(n)]


def exceedances(events):
    return [e for e in events if e.kind == "exceedance"]


def test_adopted_exceedance_that_persists_updates_the_same_event(profiles):
    opened = open_exceedance(profiles)
    mon = restarted(profiles)
    assert mon.adopt(opened)
    assert mon.open_events() == {"exceedance:LAeq:alarm": opened.event_id}
    # Still loud after the restart: no new OPEN, and the periodic UPDATE comes
    # update_every_s (600 s) after the last event sent, not after the restart.
    t1 = DAY_T0 + 300
    events = exceedances(feed(mon, "LA", [65.0 + (i % 2) * 0.1 for i in range(600)], t1))
    assert [(e.status, e.event_id) for e in events] == [(EventStatus.UPDATE, opened.event_id)]
    assert events[0].detail["window_end"] == opened.detail["window_end"] + 600
    assert events[0].started_at == opened.started_at
    # Worse than the recorded peak: an UPDATE at once.
    events = exceedances(feed(mon, "LA", [75.0] * 61, DAY_T0 + 900))
    assert [(e.status, e.event_id) for e in events] == [(EventStatus.UPDATE, opened.event_id)]


def test_adopted_exceedance_that_clears_closes_the_same_event(profiles):
    opened = open_exceedance(profiles)
    mon = restarted(profiles)
    assert mon.adopt(opened)
    events = exceedances(feed(mon, "LA", quiet(121), DAY_T0 + 600))
    assert [(e.status, e.event_id) for e in events] == [(EventStatus.CLOSED, opened.event_id)]
    closed = events[0]
    assert (closed.started_at, closed.ended_at) == (DAY_T0, DAY_T0 + 600)
    assert closed.detail["duration_s"] == 600
    assert closed.detail["peak"] == opened.detail["peak"]
    assert mon.open_events() == {}


def test_adopted_exceedance_keeps_hysteresis_and_clear_duration(profiles):
    sensor = noise_sensor(clear_duration_s=120)
    opened = open_exceedance(profiles, sensor)
    mon = restarted(profiles, sensor)
    assert mon.adopt(opened)
    # 58.5 dB is inside the limit but within the 5 % deadband: the event stays open.
    assert exceedances(feed(mon, "LA", [58.5] * 180, DAY_T0 + 600)) == []
    # Clear for one window only, then loud again: still the same event, no OPEN.
    events = exceedances(feed(mon, "LA", quiet(60) + [70.0] * 61, DAY_T0 + 780))
    assert [(e.status, e.event_id) for e in events] == [(EventStatus.UPDATE, opened.event_id)]
    events = exceedances(feed(mon, "LA", quiet(181), DAY_T0 + 960))
    assert [(e.status, e.event_id) for e in events] == [(EventStatus.CLOSED, opened.event_id)]


def offline_event(profiles):
    mon = restarted(profiles)
    feed(mon, "LA", [50.0, 51.0], DAY_T0)
    (opened,) = mon.tick(DAY_T0 + 6.5)
    assert (opened.kind, opened.status) == ("sensor_offline", EventStatus.OPEN)
    return stored(opened)


def test_adopted_offline_stays_open_while_silent_and_closes_on_a_reading(profiles):
    opened = offline_event(profiles)
    mon = restarted(profiles)
    assert mon.adopt(opened)
    # The offline clock restarts at the first tick; that is not a recovery.
    t1 = DAY_T0 + 3600
    assert mon.tick(t1) == []
    assert mon.tick(t1 + 3) == []  # within 5 × 1 s of the restart: still held open
    assert mon.tick(t1 + 600) == []  # silent long after: no second OPEN
    assert mon.open_events() == {"sensor_offline": opened.event_id}
    mon.observe("LA", 50.0, "N", t1 + 601)
    (closed,) = mon.tick(t1 + 601)
    assert (closed.kind, closed.status, closed.event_id) == (
        "sensor_offline",
        EventStatus.CLOSED,
        opened.event_id,
    )
    assert (closed.started_at, closed.ended_at) == (opened.started_at, t1 + 601)
    # From then on the usual clock: a new silence is a new outage.
    events = mon.tick(t1 + 700)
    assert kinds(events) == [("sensor_offline", EventStatus.OPEN)]
    assert events[0].event_id != opened.event_id


def test_adopted_offline_closes_when_the_sensor_reports_right_after_start(profiles):
    opened = offline_event(profiles)
    mon = restarted(profiles)
    assert mon.adopt(opened)
    mon.observe("LA", 50.0, "N", DAY_T0 + 100)
    assert kinds(mon.tick(DAY_T0 + 100)) == [("sensor_offline", EventStatus.CLOSED)]


def stuck_event(profiles):
    mon = restarted(profiles)
    events = feed(mon, "LA", [55.5] * 200, DAY_T0)
    (opened,) = [e for e in events if e.kind == "sensor_stuck"]
    return stored(opened)


def test_adopted_stuck_stays_open_on_the_same_value_and_closes_on_a_change(profiles):
    opened = stuck_event(profiles)
    mon = restarted(profiles)
    assert mon.adopt(opened)
    assert mon.tick(DAY_T0 + 1000) == []  # silent after the restart: still stuck
    assert not [e for e in feed(mon, "LA", [55.5] * 30, DAY_T0 + 1000) if e.kind == "sensor_stuck"]
    events = [e for e in feed(mon, "LA", [55.0, 56.0], DAY_T0 + 1030) if e.kind == "sensor_stuck"]
    assert [(e.status, e.event_id) for e in events] == [(EventStatus.CLOSED, opened.event_id)]
    assert events[0].started_at == opened.started_at


def test_adopted_out_of_range_closes_on_the_next_valid_reading(profiles):
    mon = restarted(profiles)
    feed(mon, "LA", [50.0], DAY_T0)
    mon.out_of_range("LA", 250.0, DAY_T0 + 1)
    (opened,) = mon.tick(DAY_T0 + 1)
    mon = restarted(profiles)
    assert mon.adopt(stored(opened))
    assert mon.tick(DAY_T0 + 2) == []
    mon.out_of_range("LA", 255.0, DAY_T0 + 3)  # still faulty: counted, no new OPEN
    assert mon.tick(DAY_T0 + 3) == []
    mon.observe("LA", 50.0, "N", DAY_T0 + 4)
    (closed,) = mon.tick(DAY_T0 + 4)
    assert (closed.status, closed.event_id) == (EventStatus.CLOSED, opened.event_id)
    assert (closed.detail["value"], closed.detail["count"]) == (255.0, 2)


def test_adopted_maintenance_restores_the_mode_and_its_event(profiles):
    opened = restarted(profiles).set_mode("maintenance", "tech.wang", "windscreen", DAY_T0)
    mon = restarted(profiles)
    assert mon.adopt(stored(opened))
    assert (mon.mode.mode, mon.mode.who, mon.mode.since) == (Mode.MAINTENANCE, "tech.wang", DAY_T0)
    assert mon.forced_flag == "M"
    events = feed(mon, "LA", [95.0] * 300, DAY_T0 + 60)  # loud and flat: flagged, no alarm
    assert not [e for e in events if e.kind in ("exceedance", "sensor_stuck")]
    switched = mon.set_mode("calibration", "tech.wang", "94 dB", DAY_T0 + 400)
    assert (switched.status, switched.event_id) == (EventStatus.UPDATE, opened.event_id)
    closed = mon.set_mode("normal", "tech.wang", "done", DAY_T0 + 500)
    assert (closed.status, closed.event_id) == (EventStatus.CLOSED, opened.event_id)
    assert (closed.started_at, closed.ended_at) == (DAY_T0, DAY_T0 + 500)


def test_adopt_refuses_what_it_cannot_continue(profiles):
    exceedance = open_exceedance(profiles)
    offline = offline_event(profiles)
    stuck = stuck_event(profiles)
    mon = restarted(profiles)
    assert not mon.adopt(replace(exceedance, source="noise-2"))
    assert not mon.adopt(replace(exceedance, kind="violation"))
    assert not mon.adopt(replace(offline, kind="camera_offline"))
    assert not mon.adopt(replace(exceedance, severity=Severity.WARNING))  # no such rule
    assert not mon.adopt(replace(exceedance, detail={**exceedance.detail, "quantity": "LAmax2"}))
    assert not mon.adopt(replace(stuck, detail={**stuck.detail, "quantity": "fume"}))
    normal = Event(
        kind="maintenance",
        source="noise-1",
        severity=Severity.INFO,
        status=EventStatus.OPEN,
        started_at=DAY_T0,
        detail={"mode": "normal"},
    )
    assert not mon.adopt(normal)
    assert not mon.adopt(replace(normal, detail={"mode": ["maintenance"]}))
    assert mon.open_events() == {}
    # A duplicate of an event already adopted is refused (closed), the same one is not.
    assert mon.adopt(offline)
    assert mon.adopt(offline)
    assert not mon.adopt(replace(offline, event_id="another"))
    assert mon.open_events() == {"sensor_offline": offline.event_id}


def test_adopt_refuses_an_exceedance_whose_limit_left_the_config(profiles):
    opened = open_exceedance(profiles)  # zone 2: 60 dB(A) by day
    zone1 = StandardRef(profile="gb3096-2008", params={"zone": "1"}, window_s=60)
    stricter = Sensor("noise-1", [Q("LA", "dB(A)")], zone1, noise_sensor().health)
    assert not restarted(profiles, stricter).adopt(opened)  # 55 dB(A): a different rule
    unjudged = Sensor("noise-1", [Q("LA", "dB(A)")], None, noise_sensor().health)
    assert not restarted(profiles, unjudged).adopt(opened)
    assert restarted(profiles, unjudged).adopt(offline_event(profiles))  # health still runs


def test_adopt_refuses_stuck_when_the_check_is_off_or_exempt(profiles):
    opened = stuck_event(profiles)
    base = noise_sensor()
    for health in (
        HealthConfig(expected_interval_s=1, stuck_after_s=None),
        HealthConfig(expected_interval_s=1, stuck_after_s=120, stuck_exempt=("LA",)),
    ):
        sensor = Sensor(base.id, base.quantities, base.standard, health)
        assert not restarted(profiles, sensor).adopt(opened)


loud_or_quiet = st.one_of(st.none(), st.floats(min_value=40.0, max_value=80.0))


@settings(max_examples=60, deadline=None)
@given(st.lists(loud_or_quiet, max_size=40), st.sampled_from([0.0, 120.0]))
def test_after_adoption_never_a_new_open_before_the_adopted_event_closes(
    profiles, windows, clear_duration_s
):
    """Any window sequence: the adopted event closes at most once, and nothing opens
    for its rule until it has."""
    sensor = noise_sensor(clear_duration_s=clear_duration_s)
    opened = open_exceedance(profiles, sensor)
    mon = restarted(profiles, sensor)
    assert mon.adopt(opened)
    events = []
    t1 = DAY_T0 + 600
    for i, value in enumerate(windows):  # one reading per window; None: flagged data
        ts = t1 + i * 60
        mon.observe("LA", 60.0 if value is None else value, "N" if value is not None else "D", ts)
        events += mon.tick(ts)
    events += mon.tick(t1 + len(windows) * 60 + 1000)  # silence seals the last window
    ours = [e for e in exceedances(events) if e.detail["quantity"] == "LAeq"]
    closes = [i for i, e in enumerate(ours) if e.status is EventStatus.CLOSED]
    until = closes[0] if closes else len(ours)
    assert all(e.event_id == opened.event_id for e in ours[: until + 1])
    assert EventStatus.OPEN not in [e.status for e in ours[:until]]
    assert [e.event_id for e in ours].count(opened.event_id) == until + (1 if closes else 0)
    if closes:
        assert ours[until].started_at == opened.started_at
