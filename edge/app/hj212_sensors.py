"""What the HJ 212 uplink needs to know about each sensor: kind, profile, pollutant codes.

The roof is the one place that sees both the sensors' config (with their standard
profiles) and the cloud uplinks, so the per-sensor facts are gathered here and handed to
the uplink: the system code ``ST`` follows the sensor's profile and kind, and a reading's
pollutant code comes from its profile (``pH`` judged against GB 3838 → ``w01001``).
"""

from __future__ import annotations

from collections.abc import Mapping

from cloud_sync.hj212_frames import NOISE_ITEMS, Hj212Sensor
from edge.app.config import GatewayConfig
from sensors.standards import Profile, load_profiles

_NOISE_CODES = frozenset(code for code, _ in NOISE_ITEMS) | {"LA"}

# Where a sensor without a standard profile finds its readings' codes: the profiles of its
# kind (a water probe's "pH" is w01001; soil has no HJ 212-2017 codes, noise its own items).
_PROFILES_BY_KIND = {
    "water": ("gb3838-2002",),
    "gas": ("particulate-voc", "db11-1488-2018", "gb18483-2001"),
}


def reading_codes(
    profile: Profile, quantity_map: Mapping[str, str], readings: list[str]
) -> dict[str, str]:
    """Reading name → HJ 212 code from a profile's ``hj212`` fields.

    A reading maps to the code of the profile quantity computed from it (``input``, after
    the sensor's ``quantity_map``). Sound levels are left out: they go out as the
    standard's noise items, not under one code. A reading two coded quantities share is
    ambiguous and left out too.
    """
    by_input: dict[str, set[str]] = {}
    for name, spec in profile.quantities.items():
        if spec.hj212 is None or spec.hj212 in _NOISE_CODES:
            continue
        by_input.setdefault(spec.input or name, set()).add(spec.hj212)
    codes: dict[str, str] = {}
    for reading in readings:
        found = by_input.get(quantity_map.get(reading, reading), set())
        if len(found) == 1:
            codes[reading] = next(iter(found))
    return codes


def hj212_sensors(config: GatewayConfig) -> dict[str, Hj212Sensor]:
    """Per sensor: kind, profile, profile pollutant codes and day/night (2031 Ld/Ln)."""
    profiles = load_profiles()
    out: dict[str, Hj212Sensor] = {}
    for sensor in config.sensors:
        ref = sensor.standard
        profile = None if ref is None else profiles.get(ref.profile)
        codes = (
            {}
            if ref is None or profile is None
            else reading_codes(profile, ref.quantity_map, [q.name for q in sensor.quantities])
        )
        if ref is None:
            names = [q.name for q in sensor.quantities]
            found: dict[str, str] = {}
            for name in _PROFILES_BY_KIND.get(sensor.kind, ()):
                for reading, code in reading_codes(profiles[name], {}, names).items():
                    found.setdefault(reading, code)
            out[sensor.id] = Hj212Sensor(kind=sensor.kind, codes=found)
            continue
        out[sensor.id] = Hj212Sensor(
            kind=sensor.kind,
            profile=ref.profile,
            codes=codes,
            day_start_s=ref.seconds_of(ref.day_start),
            night_start_s=ref.seconds_of(ref.night_start),
        )
    return out
