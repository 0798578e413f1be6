"""Period events per profile, through a real monitor over whole periods: day/night Ld/Ln
and the night Lmax (GB 3096), 1-hour means (DB11/1488), 5-sample means with the ¼ rule
(GB 18483), per-window judgement that never straddles 06:00/22:00 (GB 12348), validity,
certainty timing, early warnings and restarts.

One reading a minute, in Asia/Shanghai time. The pure period math: test_periods.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sensor_shapes import Q, Sensor

from edge.events import EventStatus, Severity
from sensors.config import HealthConfig, PeriodOverride, StandardRef
from sensors.errors import ProfileError
from sensors.monitor import build_monitors
from sensors.period_events import PROJECTED_KIND
from sensors.periods import (
    Calendar,
)

SH = ZoneInfo("Asia/Shanghai")
CAL = Calendar(SH)


def at(hhmm: str, day: int = 1) -> float:
    """Epoch seconds of 2024-05-<day> hh:mm in Shanghai."""
    h, m = hhmm.split(":")
    base = datetime(2024, 5, 1, int(h), int(m), tzinfo=SH)
    return (base + timedelta(days=day - 1)).timestamp()


def sensor(profile: str, params: dict[str, str], reading: str, unit: str, **ref_kw) -> Sensor:
    ref = StandardRef(profile=profile, params=params, **ref_kw)
    return Sensor("s1", [Q(reading, unit)], ref, HealthConfig(expected_interval_s=60))


def run(mon, reading: str, start: float, end: float, value, *, seal: bool = True):
    """One reading a minute from start to end (value(ts) or None: a gap); (tick ts, event)."""
    out = []
    ts = start
    while ts < end:
        v = value(ts)
        if v is not None:
            mon.observe(reading, v, "N", ts)
        out += [(ts, e) for e in mon.tick(ts) if e.kind != "sensor_offline"]
        ts += 60
    if seal:  # a reading in the next minute seals the last window
        mon.observe(reading, value(end - 60) or 0.0, "N", end)
        out += [(end, e) for e in mon.tick(end) if e.kind != "sensor_offline"]
    return out


def of(events, kind="exceedance", quantity=None, *, updates=False):
    """Events of a kind (and quantity); periodic UPDATEs left out unless asked for."""
    return [
        (ts, e)
        for ts, e in events
        if e.kind == kind
        and (quantity is None or e.detail["quantity"] == quantity)
        and (updates or e.status is not EventStatus.UPDATE)
    ]


# --- GB 3096: Ld, Ln and the night Lmax ----------------------------------------------------


def gb3096(**kw):
    return sensor("gb3096-2008", {"zone": "2"}, "LA", "dB(A)", **kw)


def test_ln_opens_when_certain_and_closes_at_06_00(profiles):
    mon = build_monitors([gb3096()], profiles)["s1"]
    # a whole night at 52 dB(A) (limit 50), then a quiet-enough day at 52 (limit 60)
    events = run(mon, "LA", at("22:00"), at("10:00", 2), lambda ts: 52.0)
    ex = of(events, quantity="LAeq")
    assert [e.status for _, e in ex] == [EventStatus.OPEN, EventStatus.CLOSED]
    (t_open, opened), (t_close, closed) = ex
    # energy is above the limit's over the full night from 63 % on, but the period is
    # only known to be valid at 75 % coverage: 6 h into the night, 04:00
    assert t_open == at("04:00", 2)
    assert opened.detail["certain_at"] == at("04:00", 2)
    assert opened.detail["opened_because"] == "certain"
    assert opened.detail["standard_quantity"] == "Ln"
    assert opened.detail["period_start_local"] == "2024-05-01T22:00:00+08:00"
    assert opened.detail["period_end_local"] == "2024-05-02T06:00:00+08:00"
    assert opened.detail["validity"]["verdict"] == "valid"
    assert "§3" in opened.detail["period_clause"]
    assert opened.started_at == at("22:00")
    assert t_close == at("06:00", 2)
    assert closed.event_id == opened.event_id
    assert closed.ended_at == at("06:00", 2)
    assert closed.detail["valid"] is True
    assert closed.detail["period_value"] == pytest.approx(52.0)
    assert closed.detail["period_state"]["covered"] == 8 * 3600  # nothing after 06:00
    assert mon.periods["counts"]["LAeq"] == {"valid": 1, "invalid": 0, "exceeded": 1}


def test_ld_certainty_timing_and_projected_warning(profiles):
    mon = build_monitors([gb3096()], profiles)["s1"]
    events = run(mon, "LA", at("06:00"), at("22:00"), lambda ts: 62.0)
    ex = of(events, quantity="LAeq", updates=True)
    warn = of(events, PROJECTED_KIND, "LAeq")
    # warned once a quarter of the day had data (10:00), opened at 12 h (18:00), not before
    assert [(t, e.status) for t, e in warn] == [
        (at("10:00"), EventStatus.OPEN),
        (at("18:00"), EventStatus.CLOSED),
    ]
    assert warn[0][1].severity is Severity.WARNING
    assert warn[1][1].detail["projection"] == "certain"
    assert [(t, e.status) for t, e in ex] == [
        (at("18:00"), EventStatus.OPEN),
        *[(at("18:00") + k * 600, EventStatus.UPDATE) for k in range(1, 24)],
        (at("22:00"), EventStatus.CLOSED),
    ]
    assert ex[0][1].detail["standard_quantity"] == "Ld"
    assert ex[0][1].detail["limit_max"] == 60


def test_night_lmax_over_the_night_period(profiles):
    mon = build_monitors([gb3096()], profiles)["s1"]
    spike = at("03:00", 2)
    events = run(mon, "LA", at("22:00"), at("06:00", 2), lambda ts: 66.0 if ts == spike else 40.0)
    lmax = of(events, quantity="LAmax")
    assert [(t, e.status) for t, e in lmax] == [
        (at("04:00", 2), EventStatus.OPEN),  # the night became valid at 75 %
        (at("06:00", 2), EventStatus.CLOSED),
    ]
    d = lmax[0][1].detail
    assert d["limit_max"] == 65
    assert d["period_value"] == 66.0
    assert "§5.4" in d["clause"]
    assert not of(events, quantity="LAeq")  # one loud minute is no Ln exceedance


def test_day_night_boundary_judges_each_side_by_its_own_limit(profiles):
    mon = build_monitors([gb3096()], profiles)["s1"]
    # 58 dB(A): under the day limit (60), over the night limit (50)
    events = run(mon, "LA", at("21:00"), at("23:00"), lambda ts: 58.0)
    assert not of(events)  # the day has 1 h of data: invalid, and night is not over
    latest = mon.periods["latest"]["LAeq"]
    assert latest["standard_quantity"] == "Ld"
    assert latest["valid"] is False
    assert latest["resumed"] is True  # the run began mid-day
    assert latest["coverage"] == pytest.approx(1 / 16)
    assert mon.periods["counts"]["LAeq"]["invalid"] == 1


def test_incomplete_night_is_never_an_exceedance(profiles):
    mon = build_monitors([gb3096()], profiles)["s1"]
    # 70 dB(A) for 5 of 8 night hours: loud but 62 % coverage < 75 %
    events = run(
        mon, "LA", at("22:00"), at("06:00", 2), lambda ts: 70.0 if ts < at("03:00", 2) else None
    )
    assert not of(events)
    warn = of(events, PROJECTED_KIND, "LAeq")
    assert [e.status for _, e in warn] == [EventStatus.OPEN, EventStatus.CLOSED]
    assert warn[-1][1].detail["projection"] == "invalid"
    assert warn[-1][1].detail["valid"] is False
    assert warn[-1][1].detail["validity"]["verdict"] == "invalid"
    assert mon.periods["counts"]["LAeq"]["invalid"] == 1


def test_hourly_leq_where_configured(profiles):
    ev = {"LAeq": PeriodOverride(period="hour", clause="GB 3096-2008 附录C (traffic, 1 h)")}
    mon = build_monitors([gb3096(evaluation=ev)], profiles)["s1"]
    events = run(mon, "LA", at("10:00"), at("11:00"), lambda ts: 63.0)
    ex = of(events, quantity="LAeq")
    assert [e.status for _, e in ex] == [EventStatus.OPEN, EventStatus.CLOSED]
    # 63 dB: energy above 60 dB's over the hour after 30 min; valid at 45 min
    assert ex[0][0] == at("10:45")
    assert ex[0][1].detail["evaluation"] == "hour"
    assert ex[0][1].detail["period_override_clause"].startswith("GB 3096-2008")


# --- DB11/1488: 1-hour means ---------------------------------------------------------------


def db11(**kw):
    return sensor("db11-1488-2018", {"size": "medium"}, "fume", "mg/m3", **kw)


def test_db11_clock_hour_opens_at_the_first_certain_minute(profiles):
    mon = build_monitors([db11()], profiles)["s1"]
    events = run(mon, "fume", at("10:00"), at("11:00"), lambda ts: 1.2)
    ex = of(events, quantity="fume")
    # 1.2 mg/m3 × 51 min = 61.2 > 1.0 × 60 min; at 50 min it is exactly 60: not yet
    assert [(t, e.status) for t, e in ex] == [
        (at("10:51"), EventStatus.OPEN),
        (at("11:00"), EventStatus.CLOSED),
    ]
    assert ex[0][1].detail["standard_quantity"] == "1-h mean"
    assert ex[1][1].detail["period_value"] == pytest.approx(1.2)
    assert ex[1][1].detail["coverage"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("minutes", "opened"),
    [(44, False), (45, True), (60, True)],
)
def test_db11_hour_needs_45_minutes_of_data(profiles, minutes, opened):
    mon = build_monitors([db11()], profiles)["s1"]
    end = at("10:00") + minutes * 60
    events = run(mon, "fume", at("10:00"), at("11:00"), lambda ts: 3.0 if ts < end else None)
    ex = of(events, quantity="fume")
    assert bool(ex) is opened
    verdict_ = mon.periods["latest"]["fume"]
    assert verdict_["valid"] is opened


def test_db11_rolling_hours(profiles):
    ev = {"fume": PeriodOverride(rolling=True, clause="DB11/1488-2018 表1 any 1-hour mean")}
    mon = build_monitors([db11(evaluation=ev)], profiles)["s1"]
    # 30 min at 2.0 then 30 min at 0.2: the trailing hours 10:15-11:15 … stay above 1.0
    events = run(mon, "fume", at("10:00"), at("12:00"), lambda ts: 2.0 if ts < at("10:30") else 0.2)
    ex = of(events, quantity="fume")
    assert ex[0][1].status is EventStatus.OPEN
    assert ex[0][0] == at("10:45")  # the first trailing hour with 45 min of data
    assert ex[0][1].detail["evaluation"] == "rolling_hour"
    assert ex[0][1].detail["valid"] is True
    assert ex[-1][1].status is EventStatus.CLOSED


def test_db11_exceedance_resumes_after_restart(profiles):
    mon = build_monitors([db11()], profiles)["s1"]
    events = run(mon, "fume", at("10:00"), at("10:55"), lambda ts: 1.2, seal=False)
    opened = of(events, quantity="fume")[-1][1]
    assert opened.status is EventStatus.OPEN
    fresh = build_monitors([db11()], profiles)["s1"]
    assert fresh.adopt(opened)
    assert fresh.open_events()["exceedance:fume:alarm"] == opened.event_id
    events = run(fresh, "fume", at("10:55"), at("11:00"), lambda ts: 1.2)
    closed = of(events, quantity="fume")
    assert [e.status for _, e in closed] == [EventStatus.CLOSED]
    assert closed[0][1].event_id == opened.event_id
    # the restored sums (51 min at the OPEN) plus the 5 minutes seen after the restart
    assert closed[0][1].detail["period_state"]["covered"] == 56 * 60
    assert closed[0][1].detail["valid"] is True


def test_a_run_started_mid_hour_is_marked_resumed_and_invalid(profiles):
    mon = build_monitors([db11()], profiles)["s1"]
    events = run(mon, "fume", at("10:30"), at("11:00"), lambda ts: 5.0)
    assert not of(events)
    assert mon.periods["latest"]["fume"]["resumed"] is True
    assert mon.periods["latest"]["fume"]["valid"] is False


# --- GB 18483: 5 samples with the ¼ rule ---------------------------------------------------


def gb18483(**kw):
    return sensor("gb18483-2001", {"size": "small"}, "fume", "mg/m3", **kw)


def samples(values):
    return lambda ts: values[int((ts - at("10:00")) // 600)]


def test_gb18483_five_sample_mean_with_the_quarter_rule(profiles):
    mon = build_monitors([gb18483()], profiles)["s1"]
    events = run(mon, "fume", at("10:00"), at("10:50"), samples([2.0, 2.4, 0.4, 2.2, 2.6]))
    ex = of(events, quantity="fume")
    # a block is only certain when its last sample is in (a later, larger sample could
    # discard the others and leave fewer than 3)
    assert [(t, e.status) for t, e in ex] == [
        (at("10:50"), EventStatus.OPEN),
        (at("10:50"), EventStatus.CLOSED),
    ]
    d = ex[-1][1].detail
    assert d["period_value"] == pytest.approx(2.3)
    assert d["samples_discarded"] == [pytest.approx(0.4)]
    assert len(d["samples_kept"]) == 4
    assert d["standard_quantity"] == "5-sample mean"
    assert "§6.5" in d["period_clause"]
    warn = of(events, PROJECTED_KIND)
    # projected once 3 samples survive: the 4th counts once 75 % of its 10 min is in
    assert [(t, e.detail["projection"]) for t, e in warn] == [
        (at("10:38"), "projected"),
        (at("10:50"), "exceeded"),
    ]


@pytest.mark.parametrize(
    ("values", "exceeded", "valid"),
    [
        ([3.0, 0.5, 0.6, 0.7, 0.5], False, False),  # one sample kept: resample
        ([1.0] * 5, False, True),
        ([2.5, 2.5, 2.5, 0.1, 0.1], True, True),  # two discarded, three kept
    ],
)
def test_gb18483_blocks(profiles, values, exceeded, valid):
    mon = build_monitors([gb18483()], profiles)["s1"]
    events = run(mon, "fume", at("10:00"), at("10:50"), samples(values))
    assert bool(of(events, quantity="fume")) is exceeded
    assert mon.periods["latest"]["fume"]["valid"] is valid


def test_gb18483_efficiency_stays_per_window(profiles):
    s = Sensor(
        "s1",
        [Q("fume", "mg/m3"), Q("fume_inlet", "mg/m3")],
        StandardRef(profile="gb18483-2001", params={"size": "small"}),
        HealthConfig(expected_interval_s=60),
    )
    mon = build_monitors([s], profiles)["s1"]
    mon.observe("fume", 1.0, "N", at("10:00"))
    mon.observe("fume_inlet", 2.0, "N", at("10:00"))
    mon.observe("fume", 1.0, "N", at("10:01"))
    events = mon.tick(at("10:01"))
    eff = [e for e in events if e.detail.get("quantity") == "removal_efficiency"]
    assert [e.status for e in eff] == [EventStatus.OPEN]  # 50 % < 60 %, one minute in


# --- GB 12348: per measurement window, never across 22:00 ----------------------------------


def test_gb12348_window_is_judged_by_the_period_it_lies_in(profiles):
    s = sensor("gb12348-2008", {"zone": "2"}, "LA", "dB(A)", window_s=2700)
    mon = build_monitors([s], profiles)["s1"]
    # 57 dB(A): within the day limit (60), over the night limit (50)
    events = run(mon, "LA", at("21:00"), at("23:30"), lambda ts: 57.0)
    ex = of(events, quantity="LAeq")
    assert ex[0][1].status is EventStatus.OPEN
    d = ex[0][1].detail
    assert d["window_start"] == at("22:00")  # not 21:45
    assert d["period"] == "night"
    assert (d["evaluation"], d["standard_quantity"], d["valid"]) == ("window", "Leq", True)
    assert d["period_start_local"] == "2024-05-01T22:00:00+08:00"
    assert d["period_end_local"] == "2024-05-01T22:45:00+08:00"
    assert "表1" in d["period_clause"]


# --- configuration -------------------------------------------------------------------------


def test_override_errors(profiles):
    bad = {"LAeq": PeriodOverride(rolling=True, clause="x")}  # rolling Ld makes no sense
    with pytest.raises(ProfileError, match="rolling"):
        build_monitors([gb3096(evaluation=bad)], profiles)
    unknown = {"nope": PeriodOverride(period="hour", clause="x")}
    with pytest.raises(ProfileError, match="unknown quantity 'nope'"):
        build_monitors([gb3096(evaluation=unknown)], profiles)
    fume = {"fume": PeriodOverride(period="day_night", clause="x")}
    with pytest.raises(ProfileError, match="no day/night"):
        build_monitors([db11(evaluation=fume)], profiles)


def test_profile_coverage_overridable_with_a_clause(profiles):
    ev = {"fume": PeriodOverride(min_coverage=0.5, clause="local order 2024-7")}
    mon = build_monitors([db11(evaluation=ev)], profiles)["s1"]
    end = at("10:31")
    events = run(mon, "fume", at("10:00"), at("11:00"), lambda ts: 3.0 if ts < end else None)
    ex = of(events, quantity="fume")
    assert ex
    assert ex[0][1].detail["validity"]["clause"] == "local order 2024-7"
    assert math.isclose(ex[0][1].detail["validity"]["min_coverage"], 0.5)


def test_ln_and_its_warning_resume_through_json_after_restart(profiles):
    """Events as the store gives them back (detail through JSON) resume the night."""
    mon = build_monitors([gb3096()], profiles)["s1"]
    events = run(mon, "LA", at("22:00"), at("04:30", 2), lambda ts: 52.0, seal=False)
    last = of(events, quantity="LAeq", updates=True)[-1][1]
    assert last.status is EventStatus.UPDATE  # the store keeps the latest detail
    opened = replace(
        last, status=EventStatus.OPEN, detail=json.loads(json.dumps(dict(last.detail)))
    )
    stored = opened
    fresh = build_monitors([gb3096()], profiles)["s1"]
    assert fresh.adopt(stored)
    events = run(fresh, "LA", at("04:30", 2), at("06:00", 2), lambda ts: 52.0)
    closed = of(events, quantity="LAeq")
    assert [(e.status, e.event_id) for _, e in closed] == [(EventStatus.CLOSED, opened.event_id)]
    d = closed[0][1].detail
    assert d["standard_quantity"] == "Ln"
    assert d["resumed"] is False  # the sums came back with the event
    # restored at the last update (04:20) + 04:30-06:00 seen after the restart
    assert d["period_state"]["covered"] == (6 * 60 + 20 + 90) * 60
    assert mon.periods["counts"] == {}  # the first run never finished the night


def test_a_projected_warning_resumes_and_closes_after_restart(profiles):
    mon = build_monitors([db11()], profiles)["s1"]
    # 1.5 mg/m3 for 20 min: projected over 1.0 after 15 min, not yet certain
    events = run(mon, "fume", at("10:00"), at("10:20"), lambda ts: 1.5, seal=False)
    (warn,) = [e for _, e in of(events, PROJECTED_KIND)]
    stored = replace(warn, detail=json.loads(json.dumps(dict(warn.detail))))
    fresh = build_monitors([db11()], profiles)["s1"]
    assert fresh.adopt(stored)
    assert fresh.open_events() == {f"{PROJECTED_KIND}:fume:alarm": warn.event_id}
    events = run(fresh, "fume", at("10:20"), at("11:00"), lambda ts: 0.1)
    closed = of(events, PROJECTED_KIND)
    assert [(e.status, e.event_id) for _, e in closed] == [(EventStatus.CLOSED, warn.event_id)]
    assert closed[0][1].detail["projection"] == "back"
    assert not of(events)


def test_a_silent_sensor_still_finishes_its_period(profiles):
    mon = build_monitors([db11()], profiles)["s1"]
    events = run(mon, "fume", at("10:00"), at("10:20"), lambda ts: 1.5, seal=False)
    assert [e.status for _, e in of(events, PROJECTED_KIND)] == [EventStatus.OPEN]
    assert not [e for e in mon.tick(at("10:50")) if e.kind == PROJECTED_KIND]  # not over yet
    # an hour later (receive clock) the hour has ended: invalid, the warning closes
    closed = [e for e in mon.tick(at("11:20")) if e.kind == PROJECTED_KIND]
    assert [(e.status, e.detail["projection"]) for e in closed] == [(EventStatus.CLOSED, "invalid")]
    assert mon.periods["counts"]["fume"]["invalid"] == 1


def test_a_late_window_is_never_folded_into_the_wrong_period(profiles):
    mon = build_monitors([db11()], profiles)["s1"]
    run(mon, "fume", at("10:00"), at("11:05"), lambda ts: 0.5, seal=False)
    mon.tick(at("11:30"))  # silent: the 11:xx window is sealed
    mon.observe("fume", 9.0, "N", at("10:30"))  # replayed late, from the judged hour
    mon.tick(at("11:30"))
    mon.observe("fume", 0.5, "N", at("11:31"))
    mon.tick(at("11:31"))
    assert mon.periods["counts"]["fume"]["late_windows"] == 1
    assert mon.periods["latest"]["fume"]["value"] == pytest.approx(0.5)
