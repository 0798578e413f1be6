"""GB 3838-2002 water class: per-factor class at every 表1 boundary, worst single factor,
and the ``water_class_below_target`` event through the real monitor path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_shapes import Q, Sensor

from edge.events import EventStatus, Severity
from sensors.config import HealthConfig, StandardRef
from sensors.monitor import build_monitors
from sensors.water_class import Grading, assess, factor_class, grading_for
from sensors.water_class_events import WATER_CLASS_KIND

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 60) + 4 * 3600  # minute aligned, 10:00 Beijing
ALL = ("pH", "DO", "CODMn", "COD", "BOD5", "NH3-N", "TP", "TN")


def grading(profiles, water_body: str = "river", target: str = "III", units=None) -> Grading:
    ref = StandardRef(profile="gb3838-2002", params={"class": target, "water_body": water_body})
    g = grading_for(profiles["gb3838-2002"], ref, units or {}, ALL)
    assert g is not None
    return g


# (factor, value, class): at each limit, and just past it on the worse side.
RIVER = [
    ("DO", 20.0, "I"),
    ("DO", 7.5, "I"),
    ("DO", 7.49, "II"),
    ("DO", 6.0, "II"),
    ("DO", 5.99, "III"),
    ("DO", 5.0, "III"),
    ("DO", 4.99, "IV"),
    ("DO", 3.0, "IV"),
    ("DO", 2.99, "V"),
    ("DO", 2.0, "V"),
    ("DO", 1.99, "劣V"),
    ("pH", 6.0, "I"),
    ("pH", 7.2, "I"),
    ("pH", 9.0, "I"),
    ("pH", 5.99, "劣V"),
    ("pH", 9.01, "劣V"),
    ("CODMn", 0.0, "I"),
    ("CODMn", 2.0, "I"),
    ("CODMn", 2.01, "II"),
    ("CODMn", 4.0, "II"),
    ("CODMn", 4.01, "III"),
    ("CODMn", 6.0, "III"),
    ("CODMn", 6.01, "IV"),
    ("CODMn", 10.0, "IV"),
    ("CODMn", 10.01, "V"),
    ("CODMn", 15.0, "V"),
    ("CODMn", 15.01, "劣V"),
    ("COD", 15.0, "I"),  # I and II share 15: the better class
    ("COD", 15.01, "III"),
    ("COD", 20.0, "III"),
    ("COD", 20.01, "IV"),
    ("COD", 30.0, "IV"),
    ("COD", 30.01, "V"),
    ("COD", 40.0, "V"),
    ("COD", 40.01, "劣V"),
    ("BOD5", 3.0, "I"),
    ("BOD5", 3.01, "III"),
    ("BOD5", 4.0, "III"),
    ("BOD5", 4.01, "IV"),
    ("BOD5", 6.0, "IV"),
    ("BOD5", 6.01, "V"),
    ("BOD5", 10.0, "V"),
    ("BOD5", 10.01, "劣V"),
    ("NH3-N", 0.15, "I"),
    ("NH3-N", 0.151, "II"),
    ("NH3-N", 0.5, "II"),
    ("NH3-N", 0.501, "III"),
    ("NH3-N", 1.0, "III"),
    ("NH3-N", 1.001, "IV"),
    ("NH3-N", 1.5, "IV"),
    ("NH3-N", 1.501, "V"),
    ("NH3-N", 2.0, "V"),
    ("NH3-N", 2.001, "劣V"),
    ("TP", 0.02, "I"),
    ("TP", 0.021, "II"),
    ("TP", 0.1, "II"),
    ("TP", 0.101, "III"),
    ("TP", 0.2, "III"),
    ("TP", 0.201, "IV"),
    ("TP", 0.3, "IV"),
    ("TP", 0.301, "V"),
    ("TP", 0.4, "V"),
    ("TP", 0.401, "劣V"),
]

LAKE = [
    ("TP", 0.01, "I"),
    ("TP", 0.011, "II"),
    ("TP", 0.025, "II"),
    ("TP", 0.026, "III"),
    ("TP", 0.05, "III"),
    ("TP", 0.051, "IV"),
    ("TP", 0.1, "IV"),
    ("TP", 0.101, "V"),
    ("TP", 0.2, "V"),
    ("TP", 0.201, "劣V"),
    ("TN", 0.2, "I"),
    ("TN", 0.201, "II"),
    ("TN", 0.5, "II"),
    ("TN", 0.501, "III"),
    ("TN", 1.0, "III"),
    ("TN", 1.001, "IV"),
    ("TN", 1.5, "IV"),
    ("TN", 1.501, "V"),
    ("TN", 2.0, "V"),
    ("TN", 2.001, "劣V"),
]


@pytest.mark.parametrize(("factor", "value", "cls"), RIVER)
def test_river_factor_class_at_each_boundary(profiles, factor, value, cls):
    g = grading(profiles)
    assert factor_class(g.factors[factor], value, g.worst) == cls


@pytest.mark.parametrize(("factor", "value", "cls"), LAKE)
def test_lake_tp_and_tn_class_at_each_boundary(profiles, factor, value, cls):
    g = grading(profiles, water_body="lake")
    assert factor_class(g.factors[factor], value, g.worst) == cls


def test_tn_is_graded_for_lakes_only(profiles):
    assert "TN" not in grading(profiles).factors  # 表1: TN applies to lakes/reservoirs
    assert "TN" in grading(profiles, water_body="lake").factors


def test_grading_uses_the_sensor_unit(profiles):
    g = grading(profiles, units={"NH3-N": "ug/L"})
    assert factor_class(g.factors["NH3-N"], 500.0, g.worst) == "II"  # 0.5 mg/L
    assert factor_class(g.factors["NH3-N"], 501.0, g.worst) == "III"


def test_worst_factor_determines_the_class(profiles):
    g = grading(profiles)
    found = assess(g, {"pH": 7.5, "DO": 6.5, "NH3-N": 1.2, "TP": 0.25})
    assert found is not None
    assert found.water_class == "IV"
    assert found.determining == ("NH3-N", "TP")  # both IV, in profile order
    assert found.factor_classes == {"pH": "I", "DO": "II", "NH3-N": "IV", "TP": "IV"}
    assert assess(g, {}) is None


def test_over_range_do_proves_nothing_but_over_range_nh3n_does(profiles):
    g = grading(profiles)
    # A saturated DO probe's value is a lower bound: the true DO may be higher (better).
    found = assess(g, {"DO": 1.0, "pH": 7.0}, saturated={"DO"})
    assert found is not None
    assert found.water_class == "I"
    assert "DO" not in found.factor_classes
    # A saturated NH3-N value is a lower bound of something worse: it proves the class.
    found = assess(g, {"NH3-N": 2.5}, saturated={"NH3-N"})
    assert found is not None
    assert found.water_class == "劣V"


_VALUES = st.floats(min_value=0.0, max_value=50.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(ALL), _VALUES, min_size=1))
def test_property_class_is_the_worst_factor(profiles, values):
    g = grading(profiles, water_body="lake")
    found = assess(g, values)
    assert found is not None
    ranks = {q: g.rank(c) for q, c in found.factor_classes.items()}
    assert g.rank(found.water_class) == max(ranks.values())
    assert set(found.determining) == {q for q, r in ranks.items() if r == max(ranks.values())}


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(("CODMn", "COD", "BOD5", "NH3-N", "TP", "TN", "DO")),
    _VALUES,
    _VALUES,
)
def test_property_monotonic_in_concentration(profiles, factor, a, b):
    g = grading(profiles, water_body="lake")
    lo, hi = min(a, b), max(a, b)
    r_lo = g.rank(factor_class(g.factors[factor], lo, g.worst))
    r_hi = g.rank(factor_class(g.factors[factor], hi, g.worst))
    if factor == "DO":
        assert r_hi <= r_lo  # more oxygen is never a worse class
    else:
        assert r_hi >= r_lo  # more pollutant is never a better class


# --- end to end through the monitor ------------------------------------------------------


def water_sensor(target: str = "III", **ref_kw) -> Sensor:
    ref = StandardRef(
        profile="gb3838-2002",
        params={"class": target, "water_body": "river"},
        quantity_map={"NH3N": "NH3-N"},
        window_s=60,
        **ref_kw,
    )
    return Sensor(
        "water-01",
        [Q("pH", "pH"), Q("DO", "mg/L"), Q("NH3N", "mg/L")],
        ref,
        HealthConfig(expected_interval_s=1),
        "river outfall",
    )


def minute(mon, start, *, ph, do, nh3n):
    for i in range(60):
        mon.observe("pH", ph, "N", start + i)
        mon.observe("DO", do, "N", start + i)
        mon.observe("NH3N", nh3n, "N", start + i)


def run(mon, minutes):
    """Feed one minute per (pH, DO, NH3-N); return the class events and per-window classes."""
    events, classes = [], []
    for k, (ph, do, nh3n) in enumerate(minutes):
        minute(mon, T0 + 60 * k, ph=ph, do=do, nh3n=nh3n)
        events += [e for e in mon.tick(T0 + 60 * k + 60) if e.kind == WATER_CLASS_KIND]
        if k:
            classes.append(mon.water_class["water_class"])
    return events, classes


def test_below_target_event_a_regulator_reads(profiles):
    mon = build_monitors([water_sensor()], profiles, site="Acme")["water-01"]
    minutes = [
        (7.2, 6.5, 0.4),  # II
        (7.2, 4.0, 1.2),  # IV: DO and NH3-N
        (7.2, 4.0, 1.8),  # V: NH3-N worsens
        (7.2, 6.5, 0.4),  # back to II
        (7.2, 6.5, 0.4),  # only seals the previous minute
    ]
    events, classes = run(mon, minutes)
    assert classes == ["II", "IV", "V", "II"]
    assert [e.status for e in events] == [EventStatus.OPEN, EventStatus.UPDATE, EventStatus.CLOSED]
    assert len({e.event_id for e in events}) == 1
    opened, updated, closed = events
    assert opened.severity is Severity.ALARM
    assert opened.started_at == T0 + 60
    d = opened.detail
    assert d["sensor"] == "water-01"
    assert d["site"] == "Acme"
    assert d["standard"] == "GB 3838-2002"
    assert "表1" in d["clause"]
    assert (d["target_class"], d["water_class"]) == ("III", "IV")
    assert d["determining_factors"] == ["DO", "NH3-N"]
    det = d["determining"]
    assert det["factor"] == "DO"
    assert det["value"] == pytest.approx(4.0)
    assert det["class"] == "IV"
    assert det["unit"] == "mg/L"
    assert det["target_limit"] == {"limit_min": 5.0, "limit_max": None}
    assert det["class_limits"]["IV"] == {"limit_min": 3.0, "limit_max": None}
    assert "溶解氧" in det["clause"]
    assert d["factor_classes"] == {"pH": "I", "DO": "IV", "NH3-N": "IV"}
    u = updated.detail
    assert (u["water_class"], u["worst_class"]) == ("V", "V")
    assert u["determining"]["factor"] == "NH3-N"
    assert u["determining"]["target_limit"] == {"limit_min": None, "limit_max": 1.0}
    c = closed.detail
    assert (c["water_class"], c["worst_class"]) == ("II", "V")
    assert closed.ended_at == T0 + 180
    assert c["duration_s"] == 120
    # The per-factor exceedances are still raised alongside (their own limits, own events).
    assert mon.open_events() == {}


def test_at_target_class_raises_no_event(profiles):
    mon = build_monitors([water_sensor("IV")], profiles)["water-01"]
    events, classes = run(mon, [(7.2, 4.0, 1.2), (7.2, 3.0, 1.5), (7.2, 3.0, 1.5)])
    assert classes == ["IV", "IV"]
    assert events == []


def test_open_class_event_survives_a_restart(profiles):
    mon = build_monitors([water_sensor()], profiles)["water-01"]
    events, _ = run(mon, [(7.2, 4.0, 1.2), (7.2, 4.0, 1.2)])
    assert [e.status for e in events] == [EventStatus.OPEN]
    fresh = build_monitors([water_sensor()], profiles)["water-01"]
    assert fresh.adopt(events[0])
    assert fresh.open_events() == {"water_class:below_target": events[0].event_id}
    more, _ = run(fresh, [(7.2, 6.5, 0.4), (7.2, 6.5, 0.4)])
    assert [(e.status, e.event_id) for e in more] == [(EventStatus.CLOSED, events[0].event_id)]
    # A different target is a different rule: the old event is not adopted.
    other = build_monitors([water_sensor("V")], profiles)["water-01"]
    assert not other.adopt(events[0])


def test_event_waits_min_duration_and_reports_the_worst_window(profiles):
    mon = build_monitors([water_sensor(min_duration_s=120)], profiles)["water-01"]
    minutes = [(7.2, 6.5, 1.8), (7.2, 4.0, 1.2), (7.2, 4.0, 1.2)]  # V (NH3-N), IV, (seal)
    events, classes = run(mon, minutes)
    assert classes == ["V", "IV"]
    assert [e.status for e in events] == [EventStatus.OPEN]  # opened once 120 s lasted
    d = events[0].detail
    assert events[0].started_at == T0
    assert (d["water_class"], d["worst_class"]) == ("IV", "V")
    assert d["worst_determining"] == ["NH3-N"]
    assert d["determining_factors"] == ["DO", "NH3-N"]


def test_flagged_readings_are_not_graded(profiles):
    mon = build_monitors([water_sensor()], profiles)["water-01"]
    for i in range(120):
        for name, v in (("pH", 7.2), ("DO", 1.0), ("NH3N", 3.0)):
            mon.observe(name, v, "M" if i < 60 else "N", T0 + i)
    assert [e for e in mon.tick(T0 + 120) if e.kind == WATER_CLASS_KIND] == []
    assert mon.water_class is None  # the maintenance minute graded nothing
