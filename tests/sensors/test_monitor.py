"""SensorMonitor: windows, exceedance events, health and maintenance with a controlled clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_shapes import Q, Sensor

from edge.events import EventStatus, Severity
from sensors.config import HealthConfig, LimitOverride, StandardRef
from sensors.errors import ProfileError
from sensors.monitor import SensorMonitor, build_monitors

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 60)  # minute aligned; 2023-11-15 06:00 Beijing
DAY_T0 = T0 + 4 * 3600  # 10:00 local: day period


def noise_sensor(profile="gb12348-2008", **ref_kw):
    """A boundary noise meter judged per 1-min window (GB 12348 steady noise, zone 2: 60/50).

    GB 3096 judges Ld/Ln over whole periods instead: see test_periods.py.
    """
    ref = StandardRef(profile=profile, params={"zone": "2"}, window_s=60, **ref_kw)
    health = HealthConfig(expected_interval_s=1, offline_multiple=5, stuck_after_s=120)
    return Sensor("noise-1", [Q("LA", "dB(A)")], ref, health)


def feed(mon, q, values, t0, dt=1.0, flag="N", now_lag=0.0):
    """Feed one reading per dt seconds, ticking after each; return all events."""
    events = []
    for i, v in enumerate(values):
        ts = t0 + i * dt
        mon.observe(q, v, flag, ts)
        events += mon.tick(ts + now_lag)
    return events


def kinds(events):
    return [(e.kind, e.status) for e in events]


def test_noise_exceedance_one_event_with_full_detail(profiles):
    mon = build_monitors([noise_sensor()], profiles, site="Acme")["noise-1"]
    # 3 quiet minutes, 3 loud minutes (Leq 65 > 60 by day), 3 quiet minutes
    values = [50.0 + (i % 3) if not 180 <= i < 360 else 65.0 for i in range(540)]
    events = [e for e in feed(mon, "LA", values, DAY_T0) if e.kind == "exceedance"]
    assert [e.status for e in events] == [EventStatus.OPEN, EventStatus.CLOSED]
    opened, closed = events
    assert opened.event_id == closed.event_id
    assert opened.severity is Severity.ALARM
    assert opened.started_at == DAY_T0 + 180
    assert closed.ended_at == DAY_T0 + 360
    d = closed.detail
    assert d["standard"] == "GB 12348-2008"
    assert "表1" in d["clause"]
    assert d["limit_max"] == 60
    assert d["peak"] == pytest.approx(65.0)
    assert d["duration_s"] == 180
    assert d["site"] == "Acme"
    assert d["period"] == "day"
    assert d["flags"] == {}


def test_leq_window_uses_energy_average(profiles):
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    # 59 s at 40 dB and 1 s at 80 dB: arithmetic mean 40.7, Leq 62.3 > 60 → exceedance
    values = [40.0] * 59 + [80.0]
    feed(mon, "LA", values, DAY_T0)
    mon.observe("LA", 40.0, "N", DAY_T0 + 60)  # next window closes the first
    events = [e for e in mon.tick(DAY_T0 + 60) if e.kind == "exceedance"]
    assert len(events) == 1
    assert events[0].detail["window_value"] == pytest.approx(62.3, abs=0.1)


def test_night_lmax_rule(profiles):
    # GB 12348 frequent night noise: Lmax <= 50 + 10 per window (GB 3096's night Lmax is
    # judged over the night period: test_periods.py)
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    night = T0 - 3600  # 05:00 local
    # Leq stays below 50 but one 61 dB spike exceeds 50 + 10 at night
    values = [30.0] * 59 + [61.0]
    feed(mon, "LA", values, night)
    mon.observe("LA", 30.0, "N", night + 60)
    events = mon.tick(night + 60)
    assert [(e.detail["quantity"], e.status) for e in events] == [("LAmax", EventStatus.OPEN)]
    assert events[0].detail["limit_max"] == 60
    assert "10" in events[0].detail["clause"]


def test_flagged_readings_never_raise_but_are_counted(profiles):
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    events = feed(mon, "LA", [90.0] * 300, DAY_T0, flag="D")
    assert not [e for e in events if e.kind == "exceedance"]
    # open, then flagged data during the event are counted on the event
    events = feed(mon, "LA", [90.0] * 60 + [95.0] * 60, DAY_T0 + 300)
    events += feed(mon, "LA", [50.0 + (i % 2) for i in range(120)], DAY_T0 + 420, flag="C")
    events += feed(mon, "LA", [50.0 + (i % 2) for i in range(120)], DAY_T0 + 540)
    ex = [e for e in events if e.kind == "exceedance"]
    assert [e.status for e in ex] == [EventStatus.OPEN, EventStatus.UPDATE, EventStatus.CLOSED]
    assert ex[-1].detail["flags"] == {"C": 120}


@settings(max_examples=40, deadline=None)
# T (over range) is evidence: see test_over_range.py
@given(st.lists(st.tuples(st.floats(0, 130), st.sampled_from("FMSDCB")), max_size=200))
def test_any_flagged_stream_never_raises(profiles, readings):
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    events = []
    for i, (v, flag) in enumerate(readings):
        mon.observe("LA", v, flag, DAY_T0 + i * 5)
        events += mon.tick(DAY_T0 + i * 5)
    events += mon.tick(DAY_T0 + 10_000)
    assert not [e for e in events if e.kind == "exceedance"]


def test_min_duration_and_hysteresis_in_monitor(profiles):
    mon = build_monitors([noise_sensor(min_duration_s=180)], profiles)["noise-1"]
    # minute Leq oscillates 61 / 59 around the 60 limit: never 3 breaching minutes in a row
    values = [61.0 if (i // 60) % 2 == 0 else 59.0 for i in range(600)]
    assert not [e for e in feed(mon, "LA", values, DAY_T0) if e.kind == "exceedance"]
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    # with the default 5 % deadband (clear below 57) the same oscillation is one event
    events = [e for e in feed(mon, "LA", values, DAY_T0) if e.kind == "exceedance"]
    assert [e.status for e in events].count(EventStatus.OPEN) == 1
    assert EventStatus.CLOSED not in [e.status for e in events]


def test_offline_and_recovery_on_receive_clock(profiles):
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    events = feed(mon, "LA", [50.0, 51.0], DAY_T0)
    assert mon.tick(DAY_T0 + 5) == []  # 4 s silence < 5 × 1 s
    events = mon.tick(DAY_T0 + 6.5)
    assert kinds(events) == [("sensor_offline", EventStatus.OPEN)]
    assert events[0].started_at == DAY_T0 + 1
    assert mon.tick(DAY_T0 + 100) == []  # no repeat while it lasts
    mon.observe("LA", 52.0, "N", DAY_T0 + 200)
    back = mon.tick(DAY_T0 + 200)
    assert ("sensor_offline", EventStatus.CLOSED) in kinds(back)
    closed = next(e for e in back if e.kind == "sensor_offline")
    assert closed.event_id == events[0].event_id
    assert closed.ended_at == DAY_T0 + 200


def test_never_heard_sensor_goes_offline(profiles):
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    assert mon.tick(DAY_T0) == []
    assert kinds(mon.tick(DAY_T0 + 6)) == [("sensor_offline", EventStatus.OPEN)]


def test_stuck_and_recovery(profiles):
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    events = feed(mon, "LA", [55.5] * 200, DAY_T0)
    stuck = [e for e in events if e.kind == "sensor_stuck"]
    assert [e.status for e in stuck] == [EventStatus.OPEN]
    assert stuck[0].started_at == DAY_T0
    assert stuck[0].detail["quantity"] == "LA"
    events = feed(mon, "LA", [55.0, 56.0], DAY_T0 + 200)
    rec = [e for e in events if e.kind == "sensor_stuck"]
    assert [e.status for e in rec] == [EventStatus.CLOSED]
    assert rec[0].event_id == stuck[0].event_id


def test_near_identical_values_within_tolerance_are_stuck(profiles):
    s = noise_sensor()
    s = Sensor(
        s.id,
        s.quantities,
        s.standard,
        HealthConfig(expected_interval_s=1, stuck_after_s=60, stuck_tolerance=0.15),
    )
    mon = build_monitors([s], profiles)["noise-1"]
    events = feed(mon, "LA", [55.0 + 0.1 * (i % 2) for i in range(100)], DAY_T0)
    assert [e.kind for e in events if e.kind == "sensor_stuck"] == ["sensor_stuck"]


def test_out_of_range_and_recovery(profiles):
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    feed(mon, "LA", [50.0], DAY_T0)
    mon.out_of_range("LA", 250.0, DAY_T0 + 1)
    mon.out_of_range("LA", 260.0, DAY_T0 + 2)
    events = mon.tick(DAY_T0 + 2)
    assert kinds(events) == [("sensor_out_of_range", EventStatus.OPEN)]
    assert events[0].detail["count"] == 2
    assert mon.tick(DAY_T0 + 2.5) == []
    mon.observe("LA", 50.0, "N", DAY_T0 + 3)
    events = mon.tick(DAY_T0 + 3)
    assert kinds(events) == [("sensor_out_of_range", EventStatus.CLOSED)]


def test_maintenance_mode_flags_readings_and_suppresses_alarms(profiles):
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    opened = mon.set_mode("maintenance", "tech.wang", "replace windscreen", DAY_T0)
    assert (opened.kind, opened.status, opened.severity) == (
        "maintenance",
        EventStatus.OPEN,
        Severity.INFO,
    )
    assert opened.detail["who"] == "tech.wang"
    assert mon.forced_flag == "M"
    events = feed(mon, "LA", [95.0] * 300, DAY_T0)  # loud and flat: would alarm twice
    assert not [e for e in events if e.kind in ("exceedance", "sensor_stuck")]
    switched = mon.set_mode("calibration", "tech.wang", "94 dB calibrator", DAY_T0 + 300)
    assert (switched.status, switched.event_id) == (EventStatus.UPDATE, opened.event_id)
    assert mon.forced_flag == "C"
    closed = mon.set_mode("normal", "tech.wang", "done", DAY_T0 + 400)
    assert (closed.status, closed.event_id) == (EventStatus.CLOSED, opened.event_id)
    assert (closed.started_at, closed.ended_at) == (DAY_T0, DAY_T0 + 400)
    assert mon.forced_flag is None
    with pytest.raises(ValueError, match="not in maintenance"):
        mon.set_mode("normal", "a", "b", DAY_T0 + 500)
    with pytest.raises(ValueError, match="required"):
        mon.set_mode("maintenance", "", "b", DAY_T0 + 500)


def test_maintenance_suppresses_new_offline(profiles):
    mon = build_monitors([noise_sensor()], profiles)["noise-1"]
    feed(mon, "LA", [50.0, 51.0], DAY_T0)
    mon.set_mode("maintenance", "a", "sensor unplugged for service", DAY_T0 + 2)
    assert mon.tick(DAY_T0 + 100) == []


def test_fume_sensor_with_local_override_and_efficiency(profiles):
    ref = StandardRef(
        profile="gb18483-2001",
        params={"size": "small"},
        window_s=60,
        quantity_map={"fume_out": "fume", "fume_in": "fume_inlet"},
        overrides=(
            LimitOverride(
                quantity="fume", max=1.0, clause="DB11/1488-2018 表1", who="tech.li", why="Beijing"
            ),
        ),
    )
    s = Sensor(
        "fume-1",
        [Q("fume_out", "mg/m3"), Q("fume_in", "mg/m3")],
        ref,
        HealthConfig(expected_interval_s=1),
    )
    mon = build_monitors([s], profiles)["fume-1"]
    events = []
    # two hours: the fume is judged per 5-sample block (GB 18483 §6.3), the efficiency
    # per window
    for i in range(0, 7200, 10):
        mon.observe("fume_out", 1.5, "N", DAY_T0 + i)
        mon.observe("fume_in", 3.0, "N", DAY_T0 + i)
        events += mon.tick(DAY_T0 + i)
    by_q: dict[str, list] = {}
    for e in events:
        if e.kind == "exceedance":
            by_q.setdefault(e.detail["quantity"], []).append(e)
    fume = by_q["fume"]
    # 10:00-10:50 (joined at 10:13: 3 whole samples, enough by §6.5) and 10:50-11:40
    assert [e.status for e in fume] == [EventStatus.OPEN, EventStatus.CLOSED] * 2
    assert fume[0].detail["limit_max"] == 1.0
    assert fume[0].detail["override"]["who"] == "tech.li"
    assert fume[0].detail["standard_quantity"] == "5-sample mean"
    assert [e.detail["resumed"] for e in fume[::2]] == [True, False]
    assert len(fume[1].detail["samples_kept"]) == 3
    eff = by_q["removal_efficiency"][0]
    assert eff.status is EventStatus.OPEN
    assert eff.started_at == DAY_T0  # one minute in: per window
    assert eff.severity is Severity.WARNING  # 50 % < 60 %
    assert eff.detail["window_value"] == pytest.approx(50.0)


def test_fume_sensor_without_inlet_skips_efficiency(profiles):
    ref = StandardRef(profile="gb18483-2001", params={"size": "large"})
    mon = build_monitors([Sensor("f", [Q("fume", "mg/m3")], ref)], profiles)["f"]
    events = []
    for i in range(0, 7200, 10):
        mon.observe("fume", 2.5, "N", DAY_T0 + i)
        events += mon.tick(DAY_T0 + i)
    assert {e.detail["quantity"] for e in events if e.kind == "exceedance"} == {"fume"}


def test_water_do_lower_bound_and_soil_bands_end_to_end(profiles):
    water = Sensor(
        "w",
        [Q("DO", "mg/L"), Q("pH", "pH")],
        StandardRef(profile="gb3838-2002", params={"class": "III"}),
    )
    soil = Sensor(
        "s",
        [Q("Cd", "mg/kg")],
        StandardRef(profile="gb15618-2018", params={"land_use": "paddy"}, soil_ph=7.0),
    )
    mons = build_monitors([water, soil], profiles)
    for i in range(61):
        mons["w"].observe("DO", 4.0, "N", DAY_T0 + i)
        mons["w"].observe("pH", 7.0 + (i % 2) * 0.1, "N", DAY_T0 + i)
        mons["s"].observe("Cd", 3.5, "N", DAY_T0 + i)
    w = [e for e in mons["w"].tick(DAY_T0 + 61) if e.kind == "exceedance"]
    assert [(e.detail["quantity"], e.detail["limit_min"]) for e in w] == [("DO", 5.0)]
    s = sorted(
        (e.severity.value, e.detail["limit_max"])
        for e in mons["s"].tick(DAY_T0 + 61)
        if e.kind == "exceedance"
    )
    assert s == [("alarm", 3.0), ("warning", 0.6)]  # above control (alarm) and screening


def test_particulate_in_ng_per_m3(profiles):
    ref = StandardRef(
        profile="particulate-voc",
        overrides=(LimitOverride(quantity="PM2.5", max=75, clause="permit", who="a", why="b"),),
    )
    mon = build_monitors([Sensor("p", [Q("PM2.5", "ng/m3")], ref)], profiles)["p"]
    for i in range(61):
        mon.observe("PM2.5", 80_000.0 + i, "N", DAY_T0 + i)  # 80 µg/m³
    ev = [e for e in mon.tick(DAY_T0 + 61) if e.kind == "exceedance"]
    assert ev[0].detail["limit_max"] == pytest.approx(75_000)


def test_builder_errors(profiles):
    with pytest.raises(ProfileError, match="unknown standard profile"):
        build_monitors([Sensor("x", [Q("LA", "dB(A)")], StandardRef(profile="nope"))], profiles)
    with pytest.raises(ProfileError, match="quantity_map"):
        build_monitors(
            [
                Sensor(
                    "x",
                    [Q("noise", "dB(A)")],
                    StandardRef(profile="gb3096-2008", params={"zone": "1"}),
                )
            ],
            profiles,
        )
    with pytest.raises(ProfileError, match="units"):
        build_monitors(
            [
                Sensor(
                    "x",
                    [Q("LA", "mg/m3")],
                    StandardRef(profile="gb3096-2008", params={"zone": "1"}),
                )
            ],
            profiles,
        )


def test_health_only_monitor_without_standard(profiles):
    mon = build_monitors([Sensor("x", [Q("t", "C")])], profiles)["x"]
    mon.observe("t", 20.0, "N", DAY_T0)
    assert mon.tick(DAY_T0) == []
    assert kinds(mon.tick(DAY_T0 + 181)) == [("sensor_offline", EventStatus.OPEN)]
    assert mon.open_events().keys() == {"sensor_offline"}


def test_plain_monitor_construction():
    mon = SensorMonitor(sensor_id="bare")
    mon.observe("x", 1.0, "N", 0.0)
    assert mon.tick(0.0) == []
