"""What the console shows, read without writing: the gateway's memory and the database.

Live readings, data flags, modes and health come from the running gateway's own objects
(the batch builder's recent readings, the monitors' open conditions), copied under the
ingest's lock in microseconds. What only the database knows (last seen, dead letters with
their payloads, open events, the cloud backlog, how records were stamped) is read through
a read-only connection (``edge.readonly``), with small indexed or bounded queries; only
the store's single writer writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cloud_sync import outbox_view
from cloud_sync.sync import CloudSync
from edge import readonly
from edge.app.audit import RunningDigests
from edge.app.config import GatewayConfig
from edge.app.console.camera_feed import CameraFeed
from edge.app.remote_config import Control
from edge.app.status import printable
from edge.clock import clock_synchronised
from edge.store import Store
from sensors.batch_builder import BatchBuilder
from sensors.modes import ModeDesk
from sensors.monitor import SensorMonitor

DEAD_LETTERS_SHOWN = 20
PAYLOAD_SHOWN = 2048
"""Bytes of a dead letter's payload shown (the store keeps at most what ingest allows)."""
CLOCK_RECORDS = 200
SNAPSHOT_MAX_AGE_S = 0.5
"""Several open pages share one snapshot: the gateway's state is copied at most this often."""

# Open events through the partial index ``events_open``: instant events, which pile up over
# the years, are never read (``status NOT IN (...)`` would scan the whole table).
OPEN_EVENTS = "SELECT * FROM events WHERE status != 'closed' AND status IN ('open', 'update')"

# HJ 212-2017 Table 8: what a reading's data flag means.
FLAGS = {
    "N": "normal",
    "F": "stopped",
    "M": "maintenance",
    "S": "set manually",
    "D": "fault",
    "C": "calibration",
    "T": "over range",
    "B": "communication fault",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayParts:
    """The running gateway's parts the console reads (and the mode desk it writes to)."""

    config: GatewayConfig
    store: Store
    builder: BatchBuilder
    monitors: Mapping[str, SensorMonitor]
    lock: threading.Lock
    """The ingest's lock: the builder and monitors are fed from the MQTT thread."""
    desk: ModeDesk
    broker_connected: asyncio.Event
    digests: RunningDigests
    cloud: CloudSync | None = None
    control: Control | None = None
    """The supervisor's control of this run: its config file (None: run without one)."""
    started_at: float = field(default_factory=time.time)
    cameras: CameraFeed = field(default_factory=CameraFeed)
    """The running cameras (empty until the vision task has started them)."""


def _memory(parts: GatewayParts) -> dict[str, dict[str, Any]]:
    """Copy each sensor's recent readings, mode and open conditions (under the lock)."""
    out: dict[str, dict[str, Any]] = {}
    with parts.lock:
        for sensor in parts.config.sensors:
            monitor = parts.monitors.get(sensor.id)
            out[sensor.id] = {
                "history": parts.builder.history(sensor.id),
                "mode": None if monitor is None else monitor.mode,
                "open": {} if monitor is None else monitor.open_events(),
            }
    return out


def current_mode(parts: GatewayParts, sensor_id: str) -> str:
    """The sensor's mode as its monitor has it now (requests still queued not counted)."""
    monitor = parts.monitors.get(sensor_id)
    if monitor is None:
        return "normal"
    with parts.lock:
        return str(monitor.mode.mode)


def _sensor_rows(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with closing(readonly.connect_read_only(path)) as db:
            return readonly.sensor_states(db)
    except (sqlite3.Error, FileNotFoundError):
        return {}


def live_sensors(parts: GatewayParts, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per sensor: latest value and flag per quantity, flags seen lately, health and mode.

    ``rows`` is the committed ``sensor_state`` (last seen, counts, last values): a quantity
    not in the in-memory history (``store.raw_history`` 0, or just restarted) shows its
    last committed value.
    """
    memory = _memory(parts)
    out: dict[str, Any] = {}
    for sensor in parts.config.sensors:
        mem, row = memory[sensor.id], rows.get(sensor.id, {})
        values: dict[str, dict[str, Any]] = {}
        for name, (value, flag, *rest) in row.get("last_values", {}).items():
            values[name] = {"value": value, "flag": flag, "ts": rest[0] if rest else None}
        flags: dict[str, int] = {}
        for ts, name, value, flag in mem["history"]:
            values[name] = {"value": value, "flag": flag, "ts": ts}
            flags[flag] = flags.get(flag, 0) + 1
        quantities = {
            q.name: {
                "unit": q.unit,
                **values.get(q.name, {"value": None, "flag": None, "ts": None}),
            }
            for q in sensor.quantities
        }
        mode = mem["mode"]
        open_keys = sorted(mem["open"])
        health = "offline" if "sensor_offline" in mem["open"] else "ok"
        if health == "ok" and open_keys:
            health = "; ".join(k.replace("sensor_", "").replace(":", " ") for k in open_keys)
        out[sensor.id] = {
            "quantities": quantities,
            "recent_flags": flags,
            "last_seen": row.get("last_seen"),
            "readings": row.get("readings", 0),
            "dead_letters": row.get("dead_letters", 0),
            "health": health,
            "conditions": open_keys,
            "mode": "normal" if mode is None else str(mode.mode),
            "mode_who": "" if mode is None else printable(mode.who),
            "mode_why": "" if mode is None else printable(mode.why),
            "mode_since": None if mode is None or not mode.who else mode.since,
        }
    return out


class LiveFeed:
    """One shared, briefly cached snapshot of every sensor for pages and event streams."""

    def __init__(self, parts: GatewayParts) -> None:
        self._parts = parts
        self._lock = asyncio.Lock()
        self._at = -1.0
        self._snapshot: dict[str, Any] = {}

    async def snapshot(self) -> dict[str, Any]:
        """Every sensor's live state, at most :data:`SNAPSHOT_MAX_AGE_S` old."""
        async with self._lock:
            if time.monotonic() - self._at > SNAPSHOT_MAX_AGE_S:
                rows = await asyncio.to_thread(_sensor_rows, self._parts.config.store.path)
                self._snapshot = live_sensors(self._parts, rows)
                self._at = time.monotonic()
            return self._snapshot


def _payload(raw: bytes) -> dict[str, Any]:
    shown = raw[:PAYLOAD_SHOWN]
    return {
        "text": printable(shown.decode("utf-8", errors="backslashreplace"), PAYLOAD_SHOWN * 4),
        "hex": shown.hex(" "),
        "bytes": len(raw),
        "cut": len(raw) > PAYLOAD_SHOWN,
    }


def _dead_letters(db: sqlite3.Connection, sensor_id: str | None) -> list[dict[str, Any]]:
    """The newest dead letters of a sensor (None: of topics no sensor is configured for)."""
    # Pruning keeps the table at ``store.dead_letter_keep`` rows: a bounded scan.
    if sensor_id is None:
        rows = db.execute(
            "SELECT id, received_at, topic, reason, payload FROM dead_letters"
            " WHERE sensor_id IS NULL ORDER BY id DESC LIMIT ?",
            (DEAD_LETTERS_SHOWN,),
        )
    else:
        rows = db.execute(
            "SELECT id, received_at, topic, reason, payload FROM dead_letters"
            " WHERE sensor_id = ? ORDER BY id DESC LIMIT ?",
            (sensor_id, DEAD_LETTERS_SHOWN),
        )
    return [
        {
            "id": r["id"],
            "received_at": r["received_at"],
            "topic": printable(r["topic"]),
            "reason": printable(r["reason"], 1000),
            "payload": _payload(bytes(r["payload"])),
        }
        for r in rows
    ]


def unrouted_dead_letters(path: Path) -> list[dict[str, Any]]:
    """The newest messages on topics no sensor is configured for (a mistyped topic)."""
    try:
        with closing(readonly.connect_read_only(path)) as db:
            return _dead_letters(db, None)
    except (sqlite3.Error, FileNotFoundError):
        return []


def sensor_records(path: Path, sensor_id: str) -> dict[str, Any]:
    """A sensor's newest dead letters (reason and raw payload) and its open events."""
    out: dict[str, Any] = {"dead_letters": [], "open_events": []}
    try:
        with closing(readonly.connect_read_only(path)) as db:
            out["dead_letters"] = _dead_letters(db, sensor_id)
            out["open_events"] = [
                {
                    "seq": r["seq"],
                    "kind": printable(r["kind"]),
                    "severity": r["severity"],
                    "started_at": r["started_at"],
                    "detail": printable(r["detail"], 500),
                }
                for r in db.execute(OPEN_EVENTS + " AND source = ? ORDER BY seq", (sensor_id,))
            ]
    except (sqlite3.Error, FileNotFoundError):
        pass
    return out


def _clock(db: sqlite3.Connection) -> dict[str, Any]:
    rows = db.execute(
        "SELECT clock_synced FROM outbox ORDER BY seq DESC LIMIT ?", (CLOCK_RECORDS,)
    ).fetchall()
    return {
        "records_checked": len(rows),
        "records_unsynchronised": sum(1 for (s,) in rows if s == 0),
    }


def running_facts(parts: GatewayParts) -> dict[str, Any]:
    """What the running gateway knows in memory (call on its event loop)."""
    config = parts.config
    facts: dict[str, Any] = {
        "broker_connected": parts.broker_connected.is_set(),
        "cloud": None,
    }
    if parts.cloud is not None and config.cloud is not None:
        facts["cloud"] = {
            "uplinks": [u.name for u in config.cloud.uplinks],
            "connected": parts.cloud.connected.is_set(),
            "uplink_states": parts.cloud.uplink_states(),
            "acknowledged": parts.cloud.acknowledged.is_set(),
            "delivered": dict(parts.cloud.delivered),
        }
    return facts


def gateway_facts(parts: GatewayParts) -> dict[str, Any]:
    """Backlog, clock, version, digests and the database (blocking: run in a thread)."""
    config = parts.config
    facts: dict[str, Any] = {
        "gateway_id": config.gateway.id,
        "site": config.site.name,
        "version": _version(),
        "started_at": parts.started_at,
        "config_sha256": parts.digests.config_sha256,
        "config_file": parts.digests.config_file,
        "model_sha256": parts.digests.model_sha256,
        "broker": f"{config.broker.host}:{config.broker.port}",
        "backlog": {},
        "last_delivered_at": None,
        "clock_synchronised": clock_synchronised(),
        "records_checked": 0,
        "records_unsynchronised": 0,
        "database_bytes": readonly.database_bytes(config.store.path),
        "open_events": 0,
    }
    try:
        with closing(readonly.connect_read_only(config.store.path)) as db:
            facts["backlog"] = outbox_view.backlog(db)
            facts["last_delivered_at"] = outbox_view.last_delivered_at(db)
            facts.update(_clock(db))
            facts["open_events"] = db.execute(
                OPEN_EVENTS.replace("SELECT *", "SELECT count(*)")
            ).fetchone()[0]
    except (sqlite3.Error, FileNotFoundError):
        pass
    return facts


def _version() -> str:
    try:
        return metadata.version("offsite-edge")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"
