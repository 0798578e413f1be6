"""The roof tells the HJ 212 uplink each sensor's kind, profile and pollutant codes."""

from __future__ import annotations

from types import SimpleNamespace

from cloud_sync.hj212_frames import Hj212Sensor, default_st
from edge.app.hj212_sensors import hj212_sensors, reading_codes
from sensors.config import StandardRef
from sensors.standards import load_profiles


def test_profile_codes_per_reading():
    profiles = load_profiles()
    water = profiles["gb3838-2002"]
    assert reading_codes(water, {}, ["pH", "DO", "turbidity"]) == {
        "pH": "w01001",
        "DO": "w01009",
    }
    # A sensor naming its reading differently maps it with quantity_map.
    assert reading_codes(water, {"ph_value": "pH"}, ["ph_value"]) == {"ph_value": "w01001"}
    # Sound levels go out as noise items (Leq/LMx/LMn), not under one code.
    assert reading_codes(profiles["gb3096-2008"], {}, ["LA"]) == {}
    # Cooking fume has no national code: it keeps its name unless the uplink config maps it.
    assert reading_codes(profiles["gb18483-2001"], {}, ["fume"]) == {}
    assert reading_codes(profiles["particulate-voc"], {}, ["PM2.5"]) == {"PM2.5": "a34004"}


def sensor(sid, kind, profile, *names, quantity_map=None):
    ref = None if profile is None else StandardRef(profile=profile, quantity_map=quantity_map or {})
    quantities = [SimpleNamespace(name=n) for n in names]
    return SimpleNamespace(id=sid, kind=kind, standard=ref, quantities=quantities)


def test_hj212_sensors_from_the_gateway_config():
    config = SimpleNamespace(
        sensors=[
            sensor("w", "water", "gb3838-2002", "pH"),
            sensor("k", "gas", "gb18483-2001", "fume"),
            sensor("n", "noise", "gb3096-2008", "LA"),
            sensor("x", "gas", None, "PM2.5"),
            sensor("p", "water", None, "pH", "turbidity"),
            sensor("s", "soil", None, "pH"),
        ]
    )
    got = hj212_sensors(config)  # type: ignore[arg-type]
    assert got == {
        "w": Hj212Sensor(kind="water", profile="gb3838-2002", codes={"pH": "w01001"}),
        "k": Hj212Sensor(kind="gas", profile="gb18483-2001", codes={}),
        "n": Hj212Sensor(kind="noise", profile="gb3096-2008", codes={}),
        # Without a standard, codes come from the profiles of the sensor's kind: a JSON pH
        # probe goes out as w01001, a soil probe's pH keeps its name (no soil codes).
        "x": Hj212Sensor(kind="gas", profile=None, codes={"PM2.5": "a34004"}),
        "p": Hj212Sensor(kind="water", profile=None, codes={"pH": "w01001"}),
        "s": Hj212Sensor(kind="soil", profile=None, codes={}),
    }
    sts = [default_st(s.kind, s.profile) for s in got.values()]
    assert sts == ["21", "31", "23", "22", "21", "25"]


def test_day_and_night_follow_the_sensors_standard():
    moved = sensor("n", "noise", "gb3096-2008", "LA")
    moved.standard = StandardRef(profile="gb3096-2008", day_start="07:00", night_start="23:00")
    (got,) = hj212_sensors(SimpleNamespace(sensors=[moved])).values()  # type: ignore[arg-type]
    assert (got.day_start_s, got.night_start_s) == (7 * 3600, 23 * 3600)
    (default,) = hj212_sensors(  # type: ignore[arg-type]
        SimpleNamespace(sensors=[sensor("n", "noise", "gb3096-2008", "LA")])
    ).values()
    assert (default.day_start_s, default.night_start_s) == (6 * 3600, 22 * 3600)
