"""Cooking fume: removal efficiency by mass (GB 18483-2001), concentration at the base
airflow per stove, and DB11/1488's efficiencies as advisories rather than limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sensor_shapes import Q, Sensor

from edge.events import EventStatus, Severity
from sensors.config import HealthConfig, LimitOverride, StandardRef
from sensors.errors import ProfileError
from sensors.exceedances import ADVISORY_KIND
from sensors.fume import (
    FumeSpec,
    efficiency_window,
    mass_efficiency,
    normalised_concentration,
    normalised_window,
)
from sensors.monitor import build_monitors
from sensors.profiles import LimitRow, QuantitySpec
from sensors.rules import WindowStats

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 60) + 4 * 3600  # minute aligned, 10:13 Beijing
LABEL = "advisory (DB11/1488 Appendix B, equipment selection)"


def mean_of(value: float) -> WindowStats:
    return WindowStats(n=2, total=2 * value, vmax=value, vmin=value, last=value)


# --- pure functions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c_in", "q_in", "c_out", "q_out", "mass", "by_concentration"),
    [
        (10.0, 4000.0, 2.0, 10000.0, 50.0, 80.0),  # dilution air after the purifier
        (10.0, 4000.0, 5.0, 2000.0, 75.0, 50.0),  # outlet airflow lower (leak)
        (10.0, 4000.0, 4.0, 4000.0, 60.0, 60.0),  # equal airflows: the two agree
        (8.0, 6000.0, 0.0, 6000.0, 100.0, 100.0),
    ],
)
def test_mass_efficiency_is_not_the_concentration_ratio(
    c_in, q_in, c_out, q_out, mass, by_concentration
):
    assert mass_efficiency(c_in, q_in, c_out, q_out) == pytest.approx(mass)
    spec = FumeSpec(airflow="q", inlet_airflow="q_in")
    stats = {"c": mean_of(c_out), "c_in": mean_of(c_in), "q": mean_of(q_out), "q_in": mean_of(q_in)}
    value, detail = efficiency_window(spec, stats, "c", "c_in")
    assert value == pytest.approx(mass)
    assert detail["basis"] == "mass"
    assert detail["mass_in_mg_h"] == pytest.approx(c_in * q_in)
    assert detail["mass_out_mg_h"] == pytest.approx(c_out * q_out)
    # Without the airflows the same window is concentration-based, and says so.
    del stats["q"], stats["q_in"]
    value, detail = efficiency_window(spec, stats, "c", "c_in")
    assert value == pytest.approx(by_concentration)
    assert detail["basis"] == "concentration"
    assert "NOT the GB 18483-2001 mass-based" in detail["basis_note"]
    assert "no valid airflow reading in this window" in detail["basis_note"]


def test_efficiency_undefined_without_inlet_mass():
    spec = FumeSpec(airflow="q", inlet_airflow="q_in")
    stats = {"c": mean_of(1.0), "c_in": mean_of(0.0), "q": mean_of(5.0), "q_in": mean_of(5.0)}
    assert efficiency_window(spec, stats, "c", "c_in") == (None, {})
    assert mass_efficiency(1.0, 0.0, 1.0, 1.0) is None


@pytest.mark.parametrize(
    ("c", "q", "stoves", "expected"),
    [
        (3.0, 6000.0, 3, 3.0),  # exactly the base airflow of 3 stoves
        (3.0, 3000.0, 3, 1.5),  # half the base airflow: half the concentration
        (1.0, 9000.0, 3, 1.5),  # diluted by extra airflow: normalised up
        (1.0, 9000.0, 1.5, 3.0),  # fractional base stove count (from power or hood area)
    ],
)
def test_normalised_to_base_airflow_per_stove(c, q, stoves, expected):
    assert normalised_concentration(c, q, stoves, 2000.0) == pytest.approx(expected)
    spec = FumeSpec(airflow="q", base_airflow=2000.0, stoves=stoves)
    value, detail = normalised_window(spec, {"c": mean_of(c), "q": mean_of(q)}, "c")
    assert value == pytest.approx(expected)
    assert detail["normalised"] is True
    assert detail["c_measured"] == pytest.approx(c)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.01, 100.0),
    st.floats(1.0, 1e5),
    st.floats(0.0, 100.0),
    st.floats(1.0, 1e5),
)
def test_property_mass_efficiency_matches_the_concentration_ratio_only_at_equal_airflow(
    c_in, q_in, c_out, q_out
):
    mass = mass_efficiency(c_in, q_in, c_out, q_out)
    same = mass_efficiency(c_in, q_in, c_out, q_in)
    assert mass is not None
    assert same is not None
    assert same == pytest.approx(100.0 * (c_in - c_out) / c_in, abs=1e-9)
    # more air leaving at the same concentration carries more fume: lower efficiency
    assert (mass <= same + 1e-9) if q_out >= q_in else (mass >= same - 1e-9)


def test_profile_rejects_airflow_half_configured_and_alarm_advisories():
    with pytest.raises(ValidationError, match="both 'airflow' and 'inlet_airflow'"):
        QuantitySpec(unit="%", aggregate="efficiency", inlet="c_in", airflow="q")
    with pytest.raises(ValidationError, match="base_airflow"):
        QuantitySpec(unit="mg/m3", base_airflow=2000.0)
    with pytest.raises(ValidationError, match="never an alarm"):
        LimitRow(quantity="x", bound="min", value=90.0, clause="c", advisory="guidance")


# --- through the monitor -------------------------------------------------------------------


def fume_sensor(profile="gb18483-2001", params=None, readings=None, **ref_kw) -> Sensor:
    ref = StandardRef(profile=profile, params=params or {"size": "small"}, window_s=60, **ref_kw)
    names = readings or {
        "fume": "mg/m3",
        "fume_inlet": "mg/m3",
        "airflow": "m3/h",
        "airflow_inlet": "m3/h",
    }
    return Sensor(
        "fume-01",
        [Q(n, u) for n, u in names.items()],
        ref,
        HealthConfig(expected_interval_s=1),
        "kitchen exhaust duct",
    )


def judged(profiles, sensor, values):
    """Feed two hours of constant readings; return the first event by kind/quantity.

    Two hours hold whole evaluation periods of both profiles (GB 18483 5-sample blocks of
    50 min, DB11/1488 clock hours); efficiencies are judged per 1-min window.
    """
    mon = build_monitors([sensor], profiles, site="Acme")[sensor.id]
    events = []
    for i in range(0, 7200, 10):
        for name, v in values.items():
            mon.observe(name, v, "N", T0 + i)
        events += mon.tick(T0 + i)
    first: dict = {}
    for e in events:
        first.setdefault((e.kind, e.detail.get("quantity")), e)
    return first


def test_mass_efficiency_exposes_a_purifier_that_concentrations_pass(profiles):
    # Outlet diluted 2.5x by fresh air: concentrations say 80 % (passes 60 %), mass says 50 %.
    values = {"fume": 0.8, "fume_inlet": 4.0, "airflow": 10000.0, "airflow_inlet": 4000.0}
    sensor = fume_sensor(params={"size": "small", "stoves": "2"})
    events = judged(profiles, sensor, values)
    eff = events[("exceedance", "removal_efficiency")]
    assert eff.severity is Severity.WARNING
    d = eff.detail
    assert d["window_value"] == pytest.approx(50.0)
    assert d["basis"] == "mass"
    assert d["limit_min"] == 60
    assert (d["q_in_m3h"], d["q_out_m3h"]) == (4000.0, 10000.0)
    assert "表2" in d["clause"]


def test_mass_efficiency_clears_a_purifier_that_concentrations_fail(profiles):
    # Less air leaves than enters (a leak before the port): concentrations say 50 %.
    values = {"fume": 2.0, "fume_inlet": 4.0, "airflow": 2000.0, "airflow_inlet": 4000.0}
    events = judged(profiles, fume_sensor(params={"size": "small", "stoves": "1"}), values)
    assert ("exceedance", "removal_efficiency") not in events  # 75 % by mass
    assert ("exceedance", "fume") not in events  # 2.0*2000/(1*2000) = 2.0, at the limit


def test_fume_judged_at_base_airflow_per_stove(profiles):
    # 1.5 mg/m3 measured passes 2.0 as measured, but 12000 m3/h for 3 base stoves is 2x the
    # base airflow: 3.0 mg/m3 at base airflow breaks the limit.
    values = {"fume": 1.5, "fume_inlet": 10.0, "airflow": 12000.0, "airflow_inlet": 12000.0}
    sensor = fume_sensor(params={"size": "medium", "stoves": "3"})
    d = judged(profiles, sensor, values)[("exceedance", "fume")].detail
    assert d["window_value"] == pytest.approx(3.0)
    assert d["c_measured"] == pytest.approx(1.5)
    assert (d["normalised"], d["stoves"], d["base_airflow_m3h"]) == (True, 3.0, 2000.0)
    assert d["q_m3h"] == 12000.0
    assert d["limit_max"] == 2.0


def test_airflow_in_m3_per_second_is_converted(profiles):
    readings = {"fume": "mg/m3", "airflow": "m3/s"}
    sensor = fume_sensor(params={"size": "medium", "stoves": "3"}, readings=readings)
    d = judged(profiles, sensor, {"fume": 1.5, "airflow": 12000.0 / 3600})
    assert d[("exceedance", "fume")].detail["window_value"] == pytest.approx(3.0)


def test_without_stove_count_the_measured_value_is_judged_and_labelled(profiles):
    values = {"fume": 2.5, "fume_inlet": 10.0, "airflow": 12000.0, "airflow_inlet": 12000.0}
    d = judged(profiles, fume_sensor(), values)[("exceedance", "fume")].detail
    assert d["window_value"] == pytest.approx(2.5)
    assert d["normalised"] is False
    assert "params.stoves" in d["basis_note"]


def test_concentration_only_sensor_is_labelled_not_mass_based(profiles):
    readings = {"fume": "mg/m3", "fume_inlet": "mg/m3"}
    sensor = fume_sensor(readings=readings)
    eff = judged(profiles, sensor, {"fume": 2.0, "fume_inlet": 4.0})[
        ("exceedance", "removal_efficiency")
    ]
    assert eff.detail["window_value"] == pytest.approx(50.0)
    assert eff.detail["basis"] == "concentration"
    assert "reports no inlet and outlet airflow" in eff.detail["basis_note"]


@pytest.mark.parametrize("stoves", ["0", "-2", "many", "nan"])
def test_invalid_stove_count_is_a_setup_error(profiles, stoves):
    with pytest.raises(ProfileError, match="stoves"):
        build_monitors([fume_sensor(params={"size": "small", "stoves": stoves})], profiles)


@pytest.mark.parametrize(
    ("size", "stoves", "ok"),
    [
        ("small", "1", True),
        ("small", "2.9", True),
        ("small", "3", False),  # 表1: 3 base stoves is a medium unit
        ("medium", "3", True),
        ("medium", "5.5", True),
        ("medium", "6", False),
        ("large", "6", True),
        ("large", "40", True),
        ("large", "2", False),
    ],
)
def test_stove_count_must_agree_with_the_size(profiles, size, stoves, ok):
    sensor = fume_sensor(params={"size": size, "stoves": stoves})
    if ok:
        assert build_monitors([sensor], profiles)
    else:
        with pytest.raises(ProfileError, match=f"stoves={stoves} means size="):
            build_monitors([sensor], profiles)


def test_unknown_airflow_unit_is_a_setup_error(profiles):
    sensor = fume_sensor(readings={"fume": "mg/m3", "airflow": "l/min"})
    with pytest.raises(ProfileError, match="fume-01: airflow unit 'l/min'"):
        build_monitors([sensor], profiles)


def test_db11_efficiency_is_an_advisory_warning_never_an_exceedance(profiles):
    readings = {"fume": "mg/m3", "fume_inlet": "mg/m3", "airflow": "m3/h", "airflow_inlet": "m3/h"}
    sensor = fume_sensor("db11-1488-2018", {"size": "medium"}, readings)
    values = {"fume": 1.5, "fume_inlet": 3.0, "airflow": 5000.0, "airflow_inlet": 5000.0}
    events = judged(profiles, sensor, values)
    # The 1.0 mg/m3 concentration is a 表1 limit: an exceedance alarm.
    assert events[("exceedance", "fume")].severity is Severity.ALARM
    # 50 % < 90 % guidance: an advisory, labelled so, and no exceedance for it at all.
    adv = events[(ADVISORY_KIND, "fume_efficiency")]
    assert adv.severity is Severity.WARNING
    assert adv.status is EventStatus.OPEN
    assert adv.detail["advisory"] == LABEL
    assert "附录B" in adv.detail["clause"]
    assert "表1" not in adv.detail["clause"]
    assert adv.detail["basis"] == "mass"
    assert adv.detail["shortfall"] == pytest.approx(40.0)  # 90 % guidance, 50 % by mass
    assert "peak_excess_ratio" not in adv.detail  # no 超标倍数 for guidance
    assert not [k for k in events if k[0] == "exceedance" and k[1].endswith("_efficiency")]


def test_db11_advisory_resumes_after_restart(profiles):
    readings = {"fume": "mg/m3", "fume_inlet": "mg/m3"}
    sensor = fume_sensor("db11-1488-2018", {"size": "medium"}, readings)
    adv = judged(profiles, sensor, {"fume": 0.5, "fume_inlet": 1.0})[
        (ADVISORY_KIND, "fume_efficiency")
    ]
    fresh = build_monitors([sensor], profiles)["fume-01"]
    assert fresh.adopt(adv)
    assert fresh.open_events() == {"exceedance:fume_efficiency:warning": adv.event_id}


def test_local_override_on_an_efficiency_is_a_real_limit(profiles):
    override = LimitOverride(
        quantity="fume_efficiency",
        min=95.0,
        severity="warning",
        clause="local order 2024-7",
        who="tech.li",
        why="district requires 95 %",
    )
    readings = {"fume": "mg/m3", "fume_inlet": "mg/m3"}
    sensor = fume_sensor("db11-1488-2018", {"size": "medium"}, readings, overrides=(override,))
    events = judged(profiles, sensor, {"fume": 0.5, "fume_inlet": 1.0})
    eff = events[("exceedance", "fume_efficiency")]
    assert "advisory" not in eff.detail
    assert eff.detail["override"]["who"] == "tech.li"
