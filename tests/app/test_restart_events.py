"""A condition that lasts across a gateway restart stays one event in the store and outbox.

Runs the monitors and a real SQLite store, "restarts" (new monitors from the same config,
the store reopened on the same file), runs the gateway's start-up step, and checks the
events table and the outbox: the same ids stay open, no second OPEN, then CLOSED.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections import defaultdict
from contextlib import closing
from pathlib import Path

from helpers import gateway_config, sensor

from cloud_sync.outbox import Outbox
from edge.app.gateway import build_sensor_monitors, resume_open_events
from edge.batch import Batch
from edge.events import Event, EventStatus, Severity
from edge.store import Store
from sensors.modes import Mode, ModeRequest, apply_request
from sensors.monitor import SensorMonitor

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 60) + 4 * 3600  # 10:00 Beijing: day period
HEALTH = {"expected_interval_s": 1, "offline_multiple": 5}
STANDARD = {"profile": "gb12348-2008", "params": {"zone": "2"}, "window_s": 60}


def _config(db: Path):
    return gateway_config(
        db,
        sensors=[
            sensor("noise-01", "t/noise/01", standard=STANDARD, health=HEALTH),
            sensor("noise-02", "t/noise/02", standard=STANDARD, health=HEALTH),
        ],
    )


def _feed(
    monitors: dict[str, SensorMonitor],
    values: list[float],
    t0: float,
    reporting: tuple[str, ...] = ("noise-01",),
) -> list[Event]:
    """The ``reporting`` sensors send one value a second, the others are silent; tick."""
    events: list[Event] = []
    for i, value in enumerate(values):
        for sensor_id in reporting:
            monitors[sensor_id].observe("LA", value, "N", t0 + i)
        for monitor in monitors.values():
            events += monitor.tick(t0 + i)
    return events


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def _outbox_statuses(db: Path) -> dict[str, list[str]]:
    """Event id → the statuses sent to the cloud, in order."""
    out: dict[str, list[str]] = defaultdict(list)
    for (body,) in _rows(db, "SELECT body FROM outbox ORDER BY seq"):
        record = json.loads(body)
        if record.get("type") == "event":
            out[record["event_id"]].append(record["status"])
    return dict(out)


def test_exceedance_and_offline_keep_their_ids_across_a_restart(tmp_path, caplog):
    db = tmp_path / "gateway.db"
    config = _config(db)

    async def first_run() -> tuple[Event, Event, Event]:
        monitors = build_sensor_monitors(config)
        async with await Store.open(db, hook=Outbox(gateway_id="gw-test")) as store:
            monitors["noise-02"].observe("LA", 50.0, "N", T0)  # then silent
            events = _feed(monitors, [65.0 + (i % 2) * 0.1 for i in range(121)], T0)
            await store.commit(Batch(events=events))
            camera = Event(
                kind="camera_offline",
                source="cam-1",
                severity=Severity.ALARM,
                status=EventStatus.OPEN,
                started_at=T0,
            )
            await store.emit(camera)
        by_kind = {e.kind: e for e in events if e.status is EventStatus.OPEN}
        return by_kind["exceedance"], by_kind["sensor_offline"], camera

    exceedance, offline, camera = asyncio.run(first_run())  # ... and the power goes off

    async def second_run() -> None:
        monitors = build_sensor_monitors(config)  # the gateway's own builder
        async with await Store.open(db, hook=Outbox(gateway_id="gw-test")) as store:
            with caplog.at_level(logging.INFO, logger="edge.app.gateway"):
                await resume_open_events(store, monitors)
            t1 = T0 + 3600
            # Still loud, noise-02 still silent: 15 minutes of windows, no new OPEN.
            loud = _feed(monitors, [65.0 + (i % 2) * 0.1 for i in range(900)], t1)
            assert not [e for e in loud if e.status is EventStatus.OPEN]
            await store.commit(Batch(events=loud))
            assert {e.event_id for e in await store.open_events()} == {
                exceedance.event_id,
                offline.event_id,
            }
            # Quiet again, and noise-02 reports: both close, with their original ids.
            quiet = [50.0 + (i % 3) for i in range(121)]
            clear = _feed(monitors, quiet, t1 + 900, ("noise-01", "noise-02"))
            await store.commit(Batch(events=clear))
            closed = {e.kind: e for e in clear if e.status is EventStatus.CLOSED}
            assert closed["exceedance"].event_id == exceedance.event_id
            assert closed["exceedance"].started_at == exceedance.started_at
            assert closed["sensor_offline"].event_id == offline.event_id
            assert closed["sensor_offline"].started_at == offline.started_at

    asyncio.run(second_run())

    assert "open events at start adopted=2 closed=1" in caplog.text
    sent = _outbox_statuses(db)
    assert sent[exceedance.event_id][0] == "open"
    assert sent[exceedance.event_id].count("open") == 1
    assert sent[exceedance.event_id][-1] == "closed"
    assert "update" in sent[exceedance.event_id]  # the periodic update after the restart
    assert sent[offline.event_id] == ["open", "closed"]
    # A camera outage needs fresh confirmation: closed at start, as before.
    assert sent[camera.event_id] == ["open", "closed"]
    ((detail,),) = _rows(db, f"SELECT detail FROM events WHERE id = '{camera.event_id}'")
    assert json.loads(detail)["closed_by"] == "gateway restart"
    # No other exceedance or offline event was ever opened.
    assert _rows(db, "SELECT kind, status FROM events ORDER BY kind") == [
        ("camera_offline", "closed"),
        ("exceedance", "closed"),
        ("sensor_offline", "closed"),
    ]


def test_maintenance_survives_a_restart_without_a_second_event(tmp_path):
    db = tmp_path / "gateway.db"
    config = _config(db)

    async def first_run() -> Event:
        monitors = build_sensor_monitors(config)
        async with await Store.open(db, hook=Outbox(gateway_id="gw-test")) as store:
            opened = monitors["noise-01"].set_mode("maintenance", "tech.wang", "windscreen", T0)
            await store.emit(opened)
        return opened

    opened = asyncio.run(first_run())

    async def second_run() -> list[Event]:
        monitors = build_sensor_monitors(config)
        async with await Store.open(db, hook=Outbox(gateway_id="gw-test")) as store:
            await resume_open_events(store, monitors)
            assert monitors["noise-01"].forced_flag == "M"
            done = ModeRequest(
                sensor_id="noise-01",
                mode=Mode.NORMAL,
                who="tech.wang",
                why="done",
                requested_at=T0,
            )
            event = apply_request(monitors, done)
            assert event is not None
            await store.emit(event)
            return [event]

    (closed,) = asyncio.run(second_run())
    assert (closed.status, closed.event_id) == (EventStatus.CLOSED, opened.event_id)
    assert _outbox_statuses(db) == {opened.event_id: ["open", "closed"]}
