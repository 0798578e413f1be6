"""Evaluation periods reach status and the event log: a real monitor over a GB 3096 night and
an incomplete day, the gateway's state writer, and a real ``offsite-edge status`` run."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import yaml
from gateway_thread import GatewayThread
from helpers import cli, gateway_config, gateway_dict, sensor
from mqtt_tools import noise_payload, publish_all
from mqtt_tools import wait_for as mqtt_wait
from sensor_shapes import Q, Sensor

from edge.app.lock import GatewayLock
from edge.app.logs import EventLog, TextFormatter
from edge.app.runstate import publish_state, read_state
from edge.app.status_periods import monitor_periods, period_lines
from edge.events import EventStatus
from edge.store import Store
from sensors.config import HealthConfig, StandardRef
from sensors.monitor import build_monitors
from sensors.standards import load_profiles

SH = ZoneInfo("Asia/Shanghai")


def at(hhmm: str, day: int = 1) -> float:
    h, m = hhmm.split(":")
    return (datetime(2024, 5, 1, int(h), int(m), tzinfo=SH) + timedelta(days=day - 1)).timestamp()


def _monitor():
    """A GB 3096 zone 2 monitor after a 52 dB(A) night (Ln limit 50: exceeded) and a day
    with 1 h of data (invalid): what a gateway that ran them would hold."""
    ref = StandardRef(profile="gb3096-2008", params={"zone": "2"})
    s = Sensor("noise-01", [Q("LA", "dB(A)")], ref, HealthConfig(expected_interval_s=60))
    mon = build_monitors([s], load_profiles())["noise-01"]
    events = []
    ts = at("22:00")
    while ts <= at("07:00", 2):
        mon.observe("LA", 52.0, "N", ts)
        events += mon.tick(ts)
        ts += 60
    ts = at("22:00", 2)  # the day ends with 1 h of data: invalid
    while ts <= at("22:10", 2):
        mon.observe("LA", 52.0, "N", ts)
        events += mon.tick(ts)
        ts += 60
    return mon, events


def test_state_file_and_status_show_period_verdicts(tmp_path):
    db = tmp_path / "g.db"
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(gateway_dict(db, sensors=[sensor("noise-01", "t/n")])), encoding="utf-8"
    )
    mon, _ = _monitor()

    async def main() -> None:
        async with await Store.open(db):
            pass
        stop = asyncio.Event()
        view = monitor_periods({"noise-01": mon, "quiet": _Quiet()}, threading.Lock())
        asked = asyncio.Event()

        def periods() -> dict:
            asked.set()
            return view()

        task = asyncio.create_task(publish_state(db, asyncio.Event(), stop, periods=periods))
        await asyncio.wait_for(asked.wait(), 10)  # the writer took them; its exit writes
        stop.set()
        await task

    asyncio.run(main())
    state = read_state(db)
    assert state is not None
    assert set(state["periods"]) == {"noise-01"}  # a sensor without periods is left out
    assert state["periods"]["noise-01"]["counts"]["LAeq"] == {
        "valid": 1,
        "invalid": 1,
        "exceeded": 1,
    }

    data = json.loads(cli("status", "--config", str(path), "--json").stdout)
    latest = data["periods"]["noise-01"]["latest"]["LAeq"]
    assert (latest["standard_quantity"], latest["valid"]) == ("Ld", False)
    assert latest["reason"].startswith("coverage")

    text = cli("status", "--config", str(path)).stdout
    assert "last written by a gateway no longer running" in text
    (line,) = [ln for ln in text.splitlines() if "noise-01 LAeq:" in ln]
    assert "Ld 2024-05-02T06:00:00+08:00 to 2024-05-02T22:00:00+08:00 = 52.0 (limit <= 60)" in line
    assert "INVALID: coverage 6% below 75% (never an exceedance)" in line
    assert "periods 1/1/1" in line
    assert "WARNING invalid periods" in line


class _Quiet:
    """A monitor of a sensor no standard judges over periods."""

    @property
    def periods(self) -> dict:
        return {}


def test_period_lines_of_a_valid_exceeded_period():
    lines = period_lines(
        {
            "s1": {
                "counts": {"LAeq": {"valid": 3, "invalid": 0, "exceeded": 1}},
                "latest": {
                    "LAeq": {
                        "standard_quantity": "Ln",
                        "period_start_local": "2024-05-01T22:00:00+08:00",
                        "period_end_local": "2024-05-02T06:00:00+08:00",
                        "value": 52.04,
                        "valid": True,
                        "coverage": 1.0,
                        "exceeded": True,
                        "limits": [{"severity": "alarm", "limit_max": 50, "limit_min": None}],
                    }
                },
            }
        },
        current=True,
    )
    assert lines[0].endswith(":")
    assert lines[1] == (
        "  s1 LAeq: Ln 2024-05-01T22:00:00+08:00 to 2024-05-02T06:00:00+08:00 = 52.0"
        " (limit <= 50) EXCEEDED; valid, coverage 100%; periods 3/0/1"
    )


def test_event_log_lines_name_the_standard_quantity_period_and_validity(tmp_path, caplog):
    _, events = _monitor()
    ln = [e for e in events if e.kind == "exceedance" and e.detail.get("quantity") == "LAeq"]
    changes = [e.status for e in ln if e.status is not EventStatus.UPDATE]
    assert changes == [EventStatus.OPEN, EventStatus.CLOSED]  # updates are not logged

    async def main() -> None:
        async with await Store.open(tmp_path / "g.db", hook=EventLog(None)) as store:
            for event in ln:
                await store.emit(event)

    with caplog.at_level(logging.INFO, logger="edge.app.events"):
        asyncio.run(main())
    opened, closed = caplog.records
    assert opened.getMessage() == "exceedance opened"
    assert opened.__dict__["standard_quantity"] == "Ln"
    assert opened.__dict__["period"] == "night"
    span = "2024-05-01T22:00:00+08:00/2024-05-02T06:00:00+08:00"
    assert opened.__dict__["period_local"] == span
    assert opened.__dict__["valid"] is True  # opened when certain, validity included
    assert closed.__dict__["valid"] is True
    assert closed.__dict__["limit_max"] == 50
    line = TextFormatter().format(opened)
    assert "standard_quantity=Ln period=night " in line
    assert "valid=True" in line
    assert f"period_local={span}" in line


def test_a_running_gateway_hands_its_period_verdicts_to_status(mosquitto_factory, tmp_path):
    """Real broker, real gateway: a past GB 3096 night (52 dB(A), Ln limit 50) and the
    evening of the next day (10 min of a 16 h day: invalid) reach state.json and status."""
    broker = mosquitto_factory()
    tag = uuid.uuid4().hex[:10]
    topic = f"{tag}/noise"
    db = tmp_path / "g.db"
    data = gateway_dict(
        db,
        port=broker.port,
        gateway_id=f"gw-{tag}",
        sensors=[
            sensor("noise-01", topic, standard={"profile": "gb3096-2008", "params": {"zone": "2"}})
        ],
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    night = datetime.now(SH).replace(hour=22, minute=0, second=0, microsecond=0) - timedelta(days=3)
    stamps = [night + timedelta(minutes=m) for m in range(9 * 60 + 1)]  # 22:00 to 07:00
    stamps += [night + timedelta(days=1, minutes=m) for m in range(11)]  # next 22:00-22:10
    messages = [(topic, noise_payload(52.0, int(t.timestamp() * 1000))) for t in stamps]

    def counts() -> dict | None:
        state = read_state(db) or {}
        return state.get("periods", {}).get("noise-01", {}).get("counts", {}).get("LAeq")

    config = gateway_config(db, port=broker.port, gateway_id=f"gw-{tag}", sensors=data["sensors"])
    # the lock `offsite-edge run` takes: status believes a state file only from its holder
    with GatewayLock.acquire(db), GatewayThread(config):
        assert mqtt_wait(lambda: (read_state(db) or {}).get("broker") == "connected", 30)
        publish_all(broker.host, broker.port, messages)
        assert mqtt_wait(lambda: counts() == {"valid": 1, "invalid": 1, "exceeded": 1}, 30), (
            counts()
        )
        status = json.loads(cli("status", "--config", str(path), "--json").stdout)
        text = cli("status", "--config", str(path)).stdout
    assert status["running"] is True
    latest = status["periods"]["noise-01"]["latest"]["LAeq"]
    assert (latest["standard_quantity"], latest["valid"], latest["exceeded"]) == (
        "Ld",
        False,
        False,
    )
    assert "evaluation periods (latest verdict; periods valid/invalid/exceeded):" in text
    (line,) = [ln for ln in text.splitlines() if "noise-01 LAeq:" in ln]
    assert "(limit <= 60) INVALID: coverage" in line
    assert "periods 1/1/1" in line
