"""The 2031 day frame: Ld, Ln and Ldn from a local day of hour records (HJ 212-2017)."""

from __future__ import annotations

import datetime as dt
import math
import re

import pytest
from hj212_fakes import minute_item as item

from cloud_sync.hj212_frames import (
    CodeBook,
    combine,
)
from edge.aggregate import energy

BEIJING = dt.timezone(dt.timedelta(hours=8))
MN = "010000A8900016F000169DC0"
QN_RE = re.compile(r"^\d{17}$")


def test_energy_helper_matches_leq():
    # The tests' item() uses leq(); combine() folds energies: they must agree.
    values = [40.0, 80.0]
    c = combine([item("LA", "N", values[:1], True), item("LA", "N", values[1:], True)])
    assert c.leq == pytest.approx(10 * math.log10(sum(energy(v) for v in values) / 2))


# --- day data (2031) --------------------------------------------------------------------

MIDNIGHT = dt.datetime(2024, 5, 1, tzinfo=BEIJING).timestamp()


def noise_day(day_level=60.0, night_level=45.0, flag="N"):
    """24 hour bodies of a noise sensor: steady day and night levels (06-22 is day)."""
    hours = {}
    for h in range(24):
        level = day_level if 6 <= h < 22 else night_level
        start = int(MIDNIGHT) + h * 3600
        body = {"type": "hour", "sensor_id": "n", "hour": start, "items": []}
        body["items"].append(item("LA", flag, [level] * 60, sound=True))
        hours[start] = body
    return hours


def test_day_frame_has_ld_ln_ldn():
    from cloud_sync.hj212_daily import day_items
    from cloud_sync.hj212_frames import Hj212Sensor

    cp = dict(day_items(noise_day(), CodeBook(), Hj212Sensor(kind="noise"), 8.0))
    assert cp["Ld-DayData"] == "60.0"
    assert cp["Ln-NightData"] == "45.0"
    ldn = 10 * math.log10((16 * 10**6.0 + 8 * 10 ** ((45 + 10) / 10)) / 24)
    assert cp["Ldn-Data"] == f"{ldn:.1f}"
    whole = 10 * math.log10((16 * 10**6.0 + 8 * 10**4.5) / 24)
    assert cp["Leq-Data"] == f"{whole:.1f}"
    assert cp["LMx-Data"] == "60.0"
    assert cp["LMn-Data"] == "45.0"
    assert cp["Ld-Flag"] == cp["Ln-Flag"] == cp["Ldn-Flag"] == "N"
    # A local government moving the day to 07:00-22:00 moves hour 06 into the night.
    late = Hj212Sensor(kind="noise", day_start_s=7 * 3600.0)
    cp = dict(day_items(noise_day(), CodeBook(), late, 8.0))
    assert cp["Ld-DayData"] == "60.0"
    assert float(cp["Ln-NightData"]) > 45.0


def test_day_collector_hands_over_only_at_the_last_local_hour():
    from cloud_sync.hj212_daily import DayCollector

    collector = DayCollector(8.0)
    hours = noise_day()
    got = [collector.add("n", start, body) for start, body in sorted(hours.items())]
    assert got[:-1] == [None] * 23
    day = got[-1]
    assert day is not None
    assert day.complete
    assert day.start == MIDNIGHT
    # Not answered: the last hour comes again and the same full day is handed over.
    again = collector.add("n", max(hours), hours[max(hours)])
    assert again is not None
    assert again.complete
    collector.done(again)
    # A day the gateway joined at noon is handed over incomplete (and not sent).
    collector = DayCollector(8.0)
    late = [collector.add("n", s, b) for s, b in sorted(hours.items()) if s >= MIDNIGHT + 12 * 3600]
    assert late[-1] is not None
    assert not late[-1].complete


# --- the uplink against a platform that stays silent or sends settings -------------------
