"""Table-driven tests: every shipped profile resolves to the numbers in the standards."""

from __future__ import annotations

import itertools

import pytest

from edge.events import Severity
from sensors.config import LimitOverride, StandardRef
from sensors.errors import ProfileError
from sensors.rules import Level, classify
from sensors.standards import (
    Profile,
    load_profiles,
    ph_band,
    resolve_limits,
    unit_factor,
)


def _one(limits, quantity, severity=Severity.ALARM):
    found = [lim for lim in limits if lim.quantity == quantity and lim.severity is severity]
    assert len(found) == 1, (quantity, severity, limits)
    return found[0]


def test_all_profiles_load_with_clauses(profiles):
    assert set(profiles) == {
        "gb3096-2008",
        "gb12348-2008",
        "gb22337-2008",
        "gb18483-2001",
        "db11-1488-2018",
        "gb3838-2002",
        "gb15618-2018",
        "particulate-voc",
        "soil-probe",
    }
    for profile in profiles.values():
        for row in profile.limits:
            assert row.clause.strip()


def test_shipped_profiles_load_from_package():
    assert "gb3096-2008" in load_profiles()


def _combos(profile: Profile):
    names = list(profile.parameters)
    choices = [profile.parameters[n].choices for n in names]
    bands = [b.name for b in profile.ph_bands] or [None]
    for values, band in itertools.product(itertools.product(*choices), bands):
        params = dict(zip(names, values, strict=True))
        if band is not None:
            params["ph_band"] = band
        yield params


@pytest.mark.parametrize(
    "name",
    [
        "gb3096-2008",
        "gb12348-2008",
        "gb22337-2008",
        "gb18483-2001",
        "db11-1488-2018",
        "gb3838-2002",
        "gb15618-2018",
    ],
)
def test_every_parameter_combination_resolves_unambiguously(profiles, name):
    for params in _combos(profiles[name]):
        resolved = resolve_limits(profiles[name], StandardRef(profile=name, params=params))
        assert all(resolved.values()), params  # every period has at least one limit


GB3096 = {
    "0": (50, 40),
    "1": (55, 45),
    "2": (60, 50),
    "3": (65, 55),
    "4a": (70, 55),
    "4b": (70, 60),
}


@pytest.mark.parametrize(("zone", "day", "night"), [(z, d, n) for z, (d, n) in GB3096.items()])
def test_gb3096_zone_day_night(profiles, zone, day, night):
    ref = StandardRef(profile="gb3096-2008", params={"zone": zone})
    resolved = resolve_limits(profiles["gb3096-2008"], ref)
    assert _one(resolved["day"], "LAeq").upper == day
    assert _one(resolved["night"], "LAeq").upper == night
    # Lmax: night only, limit + 15 dB(A) (§5.4); no day-time Lmax rule
    assert _one(resolved["night"], "LAmax").upper == night + 15
    assert not [lim for lim in resolved["day"] if lim.quantity == "LAmax"]
    lim = _one(resolved["day"], "LAeq")
    assert classify(lim, day) is Level.DEADBAND
    assert classify(lim, day + 0.1) is Level.BREACH
    assert "表1" in lim.clause


BOUNDARY = {"0": (50, 40), "1": (55, 45), "2": (60, 50), "3": (65, 55), "4": (70, 55)}


@pytest.mark.parametrize("name", ["gb12348-2008", "gb22337-2008"])
@pytest.mark.parametrize(("zone", "day", "night"), [(z, d, n) for z, (d, n) in BOUNDARY.items()])
def test_boundary_noise_zone_day_night(profiles, name, zone, day, night):
    resolved = resolve_limits(profiles[name], StandardRef(profile=name, params={"zone": zone}))
    assert _one(resolved["day"], "LAeq").upper == day
    assert _one(resolved["night"], "LAeq").upper == night


@pytest.mark.parametrize(("kind", "offset"), [("frequent", 10), ("occasional", 15)])
def test_gb12348_night_lmax(profiles, kind, offset):
    ref = StandardRef(profile="gb12348-2008", params={"zone": "2", "night_noise": kind})
    resolved = resolve_limits(profiles["gb12348-2008"], ref)
    assert _one(resolved["night"], "LAmax").upper == 50 + offset


INDOOR = {  # zone: (A day, A night, B day, B night)
    "0": (40, 30, 40, 30),
    "1": (40, 30, 45, 35),
    "2": (45, 35, 50, 40),
    "3": (45, 35, 50, 40),
    "4": (45, 35, 50, 40),
}


@pytest.mark.parametrize("name", ["gb12348-2008", "gb22337-2008"])
@pytest.mark.parametrize("zone", list(INDOOR))
def test_indoor_structure_noise(profiles, name, zone):
    a_day, a_night, b_day, b_night = INDOOR[zone]
    for room, day, night in (("room_a", a_day, a_night), ("room_b", b_day, b_night)):
        ref = StandardRef(profile=name, params={"zone": zone, "location": room})
        resolved = resolve_limits(profiles[name], ref)
        assert _one(resolved["day"], "LAeq").upper == day
        assert _one(resolved["night"], "LAeq").upper == night
    if name == "gb22337-2008":  # non-steady noise: Lmax ≤ limit + 10, day and night
        assert _one(resolved["day"], "LAmax").upper == b_day + 10


WATER = {  # class: DO min, CODMn, COD, BOD5, NH3-N, TP river, TP lake, TN lake
    "I": (7.5, 2, 15, 3, 0.15, 0.02, 0.01, 0.2),
    "II": (6, 4, 15, 3, 0.5, 0.1, 0.025, 0.5),
    "III": (5, 6, 20, 4, 1.0, 0.2, 0.05, 1.0),
    "IV": (3, 10, 30, 6, 1.5, 0.3, 0.1, 1.5),
    "V": (2, 15, 40, 10, 2.0, 0.4, 0.2, 2.0),
}


@pytest.mark.parametrize("cls", list(WATER))
def test_gb3838_every_class_boundary(profiles, cls):
    do, codmn, cod, bod5, nh3n, tp_river, tp_lake, tn_lake = WATER[cls]
    profile = profiles["gb3838-2002"]
    river = resolve_limits(profile, StandardRef(profile="gb3838-2002", params={"class": cls}))
    lake = resolve_limits(
        profile, StandardRef(profile="gb3838-2002", params={"class": cls, "water_body": "lake"})
    )["any"]
    river = river["any"]
    # DO is a lower bound: at the bound is fine, just below is a violation
    lim = _one(river, "DO")
    assert (lim.lower, lim.upper) == (do, None)
    assert classify(lim, do) is not Level.BREACH
    assert classify(lim, do - 0.01) is Level.BREACH
    assert classify(lim, 100.0) is Level.CLEAR
    # pH is two-sided 6-9 in every class
    ph = _one(river, "pH")
    assert (ph.lower, ph.upper) == (6, 9)
    for value, level in (
        (5.99, Level.BREACH),
        (6.0, Level.DEADBAND),
        (7.5, Level.CLEAR),
        (9.0, Level.DEADBAND),
        (9.01, Level.BREACH),
    ):
        assert classify(ph, value) is level, value
    for q, bound in (
        ("CODMn", codmn),
        ("COD", cod),
        ("BOD5", bod5),
        ("NH3-N", nh3n),
        ("TP", tp_river),
    ):
        lim = _one(river, q)
        assert lim.upper == bound
        assert classify(lim, bound) is not Level.BREACH
        assert classify(lim, bound * 1.001) is Level.BREACH
    assert _one(lake, "TP").upper == tp_lake
    assert _one(lake, "TN").upper == tn_lake
    assert not [lim for lim in river if lim.quantity == "TN"]  # TN: lakes/reservoirs only


@pytest.mark.parametrize(
    ("ph", "band"),
    [
        (4.0, "le5.5"),
        (5.5, "le5.5"),
        (5.51, "5.5-6.5"),
        (6.5, "5.5-6.5"),
        (6.51, "6.5-7.5"),
        (7.5, "6.5-7.5"),
        (7.51, "gt7.5"),
        (9.0, "gt7.5"),
    ],
)
def test_soil_ph_band_edges(profiles, ph, band):
    assert ph_band(profiles["gb15618-2018"], ph) == band


SOIL_SCREEN = {  # (metal, land use): values by band le5.5, 5.5-6.5, 6.5-7.5, gt7.5
    ("Cd", "paddy"): (0.3, 0.4, 0.6, 0.8),
    ("Cd", "other"): (0.3, 0.3, 0.3, 0.6),
    ("Hg", "paddy"): (0.5, 0.5, 0.6, 1.0),
    ("Hg", "other"): (1.3, 1.8, 2.4, 3.4),
    ("As", "paddy"): (30, 30, 25, 20),
    ("As", "other"): (40, 40, 30, 25),
    ("Pb", "paddy"): (80, 100, 140, 240),
    ("Pb", "other"): (70, 90, 120, 170),
    ("Cr", "paddy"): (250, 250, 300, 350),
    ("Cr", "other"): (150, 150, 200, 250),
    ("Cu", "orchard"): (150, 150, 200, 200),
    ("Cu", "other"): (50, 50, 100, 100),
    ("Cu", "paddy"): (50, 50, 100, 100),
    ("Cd", "orchard"): (0.3, 0.3, 0.3, 0.6),
    ("Ni", "paddy"): (60, 70, 100, 190),
    ("Zn", "other"): (200, 200, 250, 300),
}
SOIL_CONTROL = {
    "Cd": (1.5, 2.0, 3.0, 4.0),
    "Hg": (2.0, 2.5, 4.0, 6.0),
    "As": (200, 150, 120, 100),
    "Pb": (400, 500, 700, 1000),
    "Cr": (800, 850, 1000, 1300),
}
PHS = (5.0, 6.0, 7.0, 8.0)


@pytest.mark.parametrize(("metal", "land_use"), list(SOIL_SCREEN))
@pytest.mark.parametrize("band", range(4))
def test_gb15618_screening_and_control_by_band(profiles, metal, land_use, band):
    ref = StandardRef(profile="gb15618-2018", params={"land_use": land_use}, soil_ph=PHS[band])
    limits = resolve_limits(profiles["gb15618-2018"], ref)["any"]
    screen = _one(limits, metal, Severity.WARNING)
    assert screen.upper == SOIL_SCREEN[(metal, land_use)][band]
    if metal in SOIL_CONTROL:
        control = _one(limits, metal, Severity.ALARM)
        assert control.upper == SOIL_CONTROL[metal][band]
        assert control.upper > screen.upper
    else:
        assert not [lim for lim in limits if lim.quantity == metal and lim.severity == "alarm"]


def test_soil_ph_band_given_directly_or_contradicting(profiles):
    p = profiles["gb15618-2018"]
    ref = StandardRef(profile="gb15618-2018", params={"land_use": "paddy", "ph_band": "gt7.5"})
    assert _one(resolve_limits(p, ref)["any"], "Cd", Severity.WARNING).upper == 0.8
    with pytest.raises(ProfileError, match="contradicts"):
        resolve_limits(
            p,
            StandardRef(
                profile="gb15618-2018",
                params={"land_use": "paddy", "ph_band": "gt7.5"},
                soil_ph=5.0,
            ),
        )
    with pytest.raises(ProfileError, match="soil_ph"):
        resolve_limits(p, StandardRef(profile="gb15618-2018", params={"land_use": "paddy"}))


@pytest.mark.parametrize(("size", "eff"), [("small", 60), ("medium", 75), ("large", 85)])
def test_gb18483_fume_and_efficiency(profiles, size, eff):
    ref = StandardRef(profile="gb18483-2001", params={"size": size})
    limits = resolve_limits(profiles["gb18483-2001"], ref)["any"]
    assert _one(limits, "fume").upper == 2.0
    lim = _one(limits, "removal_efficiency", Severity.WARNING)
    assert (lim.lower, lim.upper) == (eff, None)


def test_db11_limits(profiles):
    ref = StandardRef(profile="db11-1488-2018", params={"size": "medium"})
    limits = resolve_limits(profiles["db11-1488-2018"], ref)["any"]
    assert _one(limits, "fume").upper == 1.0
    assert _one(limits, "particulate").upper == 5.0
    assert _one(limits, "NMHC").upper == 10.0


def test_override_with_stricter_local_limit_is_recorded(profiles):
    ov = LimitOverride(
        quantity="fume",
        max=1.0,
        clause="DB11/1488-2018 表1",
        who="tech.li",
        why="Beijing local standard",
    )
    ref = StandardRef(profile="gb18483-2001", params={"size": "small"}, overrides=(ov,))
    lim = _one(resolve_limits(profiles["gb18483-2001"], ref)["any"], "fume")
    assert lim.upper == 1.0
    assert lim.describe()["override"] == {
        "who": "tech.li",
        "why": "Beijing local standard",
        "clause": "DB11/1488-2018 表1",
    }


def test_looser_override_is_rejected_unless_allowed(profiles):
    ov = LimitOverride(quantity="fume", max=3.0, clause="x", who="a", why="b")
    ref = StandardRef(profile="gb18483-2001", params={"size": "small"}, overrides=(ov,))
    with pytest.raises(ProfileError, match="looser"):
        resolve_limits(profiles["gb18483-2001"], ref)
    relaxed = ov.model_copy(update={"allow_relaxed": True})
    ref = ref.model_copy(update={"overrides": (relaxed,)})
    assert _one(resolve_limits(profiles["gb18483-2001"], ref)["any"], "fume").upper == 3.0


def test_override_of_leq_moves_night_lmax(profiles):
    ov = LimitOverride(quantity="LAeq", max=45, period="night", clause="local", who="a", why="b")
    ref = StandardRef(profile="gb3096-2008", params={"zone": "2"}, overrides=(ov,))
    resolved = resolve_limits(profiles["gb3096-2008"], ref)
    assert _one(resolved["night"], "LAmax").upper == 60
    assert _one(resolved["day"], "LAeq").upper == 60


def test_configurable_particulate_limits_with_explicit_units(profiles):
    ov = LimitOverride(quantity="PM2.5", max=75, clause="site permit", who="a", why="b")
    ref = StandardRef(profile="particulate-voc", overrides=(ov,))
    lim = _one(resolve_limits(profiles["particulate-voc"], ref, {"PM2.5": "ng/m3"})["any"], "PM2.5")
    assert lim.upper == pytest.approx(75_000)  # 75 µg/m³ in the sensor's ng/m³
    assert lim.unit == "ng/m3"


def test_units():
    assert unit_factor("µg/m³", "ug/m3") == 1
    assert unit_factor("mg/m3", "ug/m3") == pytest.approx(1000)
    with pytest.raises(ProfileError):
        unit_factor("mg/L", "mg/m3")
    with pytest.raises(ProfileError):
        unit_factor("furlongs", "mg/m3")


@pytest.mark.parametrize(
    ("params", "message"),
    [({}, "required"), ({"zone": "9"}, "not one of"), ({"zone": "2", "colour": "x"}, "unknown")],
)
def test_bad_parameters(profiles, params, message):
    with pytest.raises(ProfileError, match=message):
        resolve_limits(profiles["gb3096-2008"], StandardRef(profile="gb3096-2008", params=params))


def test_bad_profile_file(tmp_path):
    (tmp_path / "x.yaml").write_text("name: y\nstandard: s\ntitle: t\nsource: s\nquantities: {}\n")
    with pytest.raises(ProfileError, match="does not match"):
        load_profiles(tmp_path)
    (tmp_path / "x.yaml").write_text("name: [\n")
    with pytest.raises(ProfileError):
        load_profiles(tmp_path)
