"""`offsite-edge status` shows each sensor's data rates and the clock watch (a real CLI run)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from zoneinfo import ZoneInfo

import yaml
from helpers import cli, gateway_dict, sensor

from cloud_sync.daily_rates import day_bounds
from edge.app.audit import clock_audit_event
from edge.batch import Batch
from edge.store import Store

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def _fill(db, yesterday: dt.date) -> None:
    """Yesterday: 1440 readings expected, 1080 arrived (720 N, 360 M), 120 values refused."""
    start, _ = day_bounds(yesterday, SHANGHAI)
    batch = Batch(messages=1080)
    for i in range(1080):
        flag = "N" if i < 720 else "M"
        batch.aggregates[("noise-01", "LA", flag, int(start) + 60 * i)] = [1, 50, 50, 50, 1e5]
    for i in range(120):
        batch.quality[("noise-01", "LA", int(start) + 60 * i)] = [1, 0]
    batch.events.append(
        clock_audit_event(
            "clock_step",
            time.time() - 30,
            {"step_s": -12.5, "direction": "back", "at": time.time() - 30},
        )
    )
    async with await Store.open(db) as store:
        await store.commit(batch)


def test_status_shows_rates_per_sensor_and_the_last_clock_step(tmp_path):
    db = tmp_path / "g.db"
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(gateway_dict(db, sensors=[sensor("noise-01", "t/n")])), encoding="utf-8"
    )
    yesterday = dt.datetime.fromtimestamp(time.time(), SHANGHAI).date() - dt.timedelta(days=1)
    asyncio.run(_fill(db, yesterday))

    data = json.loads(cli("status", "--config", str(path), "--json").stdout)
    rates = data["rates"]["noise-01"]["yesterday"]
    assert rates["date"] == yesterday.isoformat()
    assert (rates["expected"], rates["received"], rates["valid"], rates["refused"]) == (
        1440,
        1200,
        720,
        120,
    )
    assert rates["transmission_rate"] == round(1200 / 1440, 4)
    assert rates["validity_rate"] == 0.6
    assert rates["effective_rate"] == round(round(1200 / 1440, 4) * 0.6, 4)
    assert data["last_clock_step"]["direction"] == "back"
    assert data["clock"]["last_step"]["step_s"] == -12.5
    assert data["clock"]["state"] is None  # no gateway runs: its watch is not known

    text = cli("status", "--config", str(path)).stdout
    assert "data rates (transmission × validity = effective):" in text
    line = next(x for x in text.splitlines() if x.strip().startswith("noise-01") and "%" in x)
    assert "yesterday  83.3% ×  60.0% =  50.0%" in line
    assert "clock last stepped back by -12.500 s" in text
