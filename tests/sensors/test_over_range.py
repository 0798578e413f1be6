"""T (above the measuring range) readings are above-limit evidence; other flags never judged."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_shapes import Q, Sensor

from edge.events import EventStatus, Severity
from sensors.config import HealthConfig, StandardRef
from sensors.monitor import build_monitors
from sensors.rules import (
    EVIDENCE_FLAGS,
    Action,
    Limit,
    RuleState,
    Timing,
    WindowValue,
    step,
)

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 60)
DAY_T0 = T0 + 4 * 3600  # 10:00 Beijing


def noise(profiles, profile="gb12348-2008"):
    """A noise meter judged per 1-min window (GB 12348); GB 3096 judges whole periods."""
    ref = StandardRef(profile=profile, params={"zone": "2"}, window_s=60)
    health = HealthConfig(expected_interval_s=1, offline_multiple=5, stuck_after_s=120)
    return build_monitors([Sensor("n", [Q("LA", "dB(A)")], ref, health)], profiles)["n"]


def water(profiles):
    ref = StandardRef(profile="gb3838-2002", params={"class": "III"}, window_s=60)
    return build_monitors([Sensor("w", [Q("DO", "mg/L")], ref)], profiles)["w"]


def exceedances(events):
    return [e for e in events if e.kind == "exceedance"]


def test_saturated_noise_meter_raises_an_exceedance_with_t_counted(profiles):
    mon = noise(profiles)
    events = []
    for i in range(61):
        mon.observe("LA", 130.0, "T", DAY_T0 + i)  # pinned at the top of the range
        events += mon.tick(DAY_T0 + i)
    ex = exceedances(events)
    assert [e.status for e in ex] == [EventStatus.OPEN]
    assert ex[0].severity is Severity.ALARM
    assert ex[0].detail["flags"] == {"T": 60}
    # A pinned value is saturation, not a stuck sensor.
    assert not [e for e in events if e.kind == "sensor_stuck"]


def test_saturated_meter_over_a_gb3096_night_raises_ln_with_t_counted(profiles):
    mon = noise(profiles, "gb3096-2008")
    night = T0 - 8 * 3600 - 13 * 60  # 22:00 Beijing (T0 is 06:13)
    events = []
    for i in range(0, 8 * 3600 + 60, 60):
        mon.observe("LA", 130.0, "T", night + i)
        events += mon.tick(night + i)
    ln = [
        e
        for e in exceedances(events)
        if e.detail["quantity"] == "LAeq" and e.status is not EventStatus.UPDATE
    ]
    assert [e.status for e in ln] == [EventStatus.OPEN, EventStatus.CLOSED]
    assert ln[0].detail["standard_quantity"] == "Ln"
    assert ln[0].detail["certain_at"] == night + 6 * 3600  # valid at 75 %
    assert ln[-1].detail["flags"] == {"T": 8 * 60}


def test_other_flags_at_the_same_level_are_never_judged(profiles):
    for flag in "FMSDCB":
        mon = noise(profiles)
        events = []
        for i in range(130):
            mon.observe("LA", 130.0, flag, DAY_T0 + i)
            events += mon.tick(DAY_T0 + i)
        assert exceedances(events) == [], flag
    # nor over a GB 3096 period: flagged data are not coverage either
    for flag in "FMSDCB":
        mon = noise(profiles, "gb3096-2008")
        night = T0 - 8 * 3600 - 13 * 60
        events = []
        for i in range(0, 8 * 3600 + 60, 60):
            mon.observe("LA", 130.0, flag, night + i)
            events += mon.tick(night + i)
        assert exceedances(events) == [], flag
        assert mon.periods["latest"]["LAeq"]["valid"] is False


def test_over_range_never_proves_a_lower_limit_broken(profiles):
    # DO ≥ 5 (class III): a T reading says "at least 3", which does not prove DO < 5.
    mon = water(profiles)
    events = []
    for i in range(130):
        mon.observe("DO", 3.0, "T", DAY_T0 + i)
        events += mon.tick(DAY_T0 + i)
    assert exceedances(events) == []
    # The same value flagged N is an exceedance.
    mon = water(profiles)
    events = []
    for i in range(130):
        mon.observe("DO", 3.0, "N", DAY_T0 + i)
        events += mon.tick(DAY_T0 + i)
    assert [e.status for e in exceedances(events)] == [EventStatus.OPEN]


UPPER = Limit(
    quantity="x",
    unit="u",
    lower=None,
    upper=10.0,
    clear_lower=None,
    clear_upper=9.5,
    severity=Severity.ALARM,
    profile="p",
    standard="S",
    clause="c",
)
LOWER = Limit(
    quantity="x",
    unit="u",
    lower=5.0,
    upper=None,
    clear_lower=5.25,
    clear_upper=None,
    severity=Severity.ALARM,
    profile="p",
    standard="S",
    clause="c",
)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 100), st.integers(1, 50), st.integers(0, 50))
def test_step_with_t_readings(value, t_count, n_count):
    flags = (("T", t_count),)
    window = WindowValue(start=0, end=60, value=value, n=t_count + n_count, flags=flags)
    _, action = step(UPPER, Timing(), RuleState(), window)
    # Above an upper limit: T evidence opens, exactly as N readings would.
    assert (action is Action.OPEN) == (value > UPPER.upper)
    _, action = step(LOWER, Timing(), RuleState(), window)
    # Below a lower limit: never opens on T evidence.
    assert action is Action.NONE


def test_evidence_flags_are_n_and_t() -> None:
    assert frozenset("NT") == EVIDENCE_FLAGS
