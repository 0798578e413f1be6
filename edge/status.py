"""Read-only view of a gateway database, for `offsite-edge status` and the demo."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from contextlib import closing as contextlib_closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_sync.policy import PRIORITY
from edge.config import GatewayConfig

_CLASS_BY_PRIORITY = {priority: name for name, priority in PRIORITY.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorStatus:
    """One sensor as the store last saw it."""

    sensor_id: str
    kind: str
    last_seen: float | None
    readings: int
    dead_letters: int
    last_values: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStatus:
    """What `offsite-edge status` reports."""

    sensors: list[SensorStatus]
    dead_letters_total: int
    recent_dead_letters: list[dict[str, Any]]
    open_events: list[dict[str, Any]]
    events_total: int
    database_bytes: int
    modes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Sensors a technician put into maintenance or calibration: mode, who, why, since."""
    cloud_backlog: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """Records not yet acknowledged, per uplink and data class."""
    last_delivered_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)


def database_bytes(path: Path) -> int:
    """Size of the database with its WAL and shared-memory files."""
    return sum(
        p.stat().st_size
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
        if p.exists()
    )


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open the database read-only (WAL lets this run beside the writing gateway)."""
    if not path.exists():
        raise FileNotFoundError(f"no gateway database at {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    db.row_factory = sqlite3.Row
    return db


def read_status(config: GatewayConfig, *, dead_letter_limit: int = 5) -> GatewayStatus:
    """Collect per-sensor state, dead letters, open events and database size."""
    path = config.store.path
    with contextlib_closing(connect_read_only(path)) as db:
        state = {row["sensor_id"]: row for row in db.execute("SELECT * FROM sensor_state")}
        sensors = []
        for sensor in config.sensors:
            row = state.get(sensor.id)
            sensors.append(
                SensorStatus(
                    sensor_id=sensor.id,
                    kind=sensor.kind,
                    last_seen=row["last_seen"] if row else None,
                    readings=row["readings"] if row else 0,
                    dead_letters=row["dead_letters"] if row else 0,
                    last_values=json.loads(row["last_values"]) if row else {},
                )
            )
        total = db.execute(
            "SELECT coalesce((SELECT value FROM counters WHERE name = 'dead_letters_total'), 0)"
        ).fetchone()[0]
        recent = [
            {
                "received_at": r["received_at"],
                "topic": r["topic"],
                "sensor_id": r["sensor_id"],
                "reason": r["reason"],
            }
            for r in db.execute(
                "SELECT * FROM dead_letters ORDER BY id DESC LIMIT ?", (dead_letter_limit,)
            )
        ]
        open_events = [
            {
                "event_id": r["id"],
                "seq": r["seq"],
                "kind": r["kind"],
                "source": r["source"],
                "severity": r["severity"],
                "started_at": r["started_at"],
                "detail": json.loads(r["detail"]),
            }
            for r in db.execute(
                "SELECT * FROM events WHERE status NOT IN ('closed', 'instant') ORDER BY seq"
            )
        ]
        events_total = db.execute("SELECT count(*) FROM events").fetchone()[0]
        modes = {
            r["sensor_id"]: {
                "mode": r["mode"],
                "who": r["who"],
                "why": r["why"],
                "since": r["requested_at"],
            }
            for r in query_optional(db, "SELECT * FROM sensor_modes WHERE mode != 'normal'")
        }
        backlog: dict[str, dict[str, int]] = {}
        for r in query_optional(
            db, "SELECT uplink, priority, count(*) AS n FROM outbox_pending GROUP BY 1, 2"
        ):
            backlog.setdefault(r["uplink"], {})[_CLASS_BY_PRIORITY.get(r["priority"], "?")] = r["n"]
        delivered = query_optional(db, "SELECT max(delivered_at) AS t FROM outbox")
    return GatewayStatus(
        sensors=sensors,
        dead_letters_total=int(total),
        recent_dead_letters=recent,
        open_events=open_events,
        events_total=int(events_total),
        database_bytes=database_bytes(path),
        modes=modes,
        cloud_backlog=backlog,
        last_delivered_at=delivered[0]["t"] if delivered else None,
    )


def query_optional(db: sqlite3.Connection, sql: str, *args: object) -> list[sqlite3.Row]:
    """Rows of a query on a table that only exists once its feature was used."""
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []


def recent_events(path: Path, *, after_seq: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """Event changes (open, update, close) after sequence number ``after_seq``, in order.

    Read from the outbox, which keeps every change, while ``events`` keeps the latest state.
    """
    with contextlib_closing(connect_read_only(path)) as db:
        return [
            json.loads(r["body"])
            for r in db.execute(
                "SELECT body FROM outbox WHERE seq > ? AND json_extract(body, '$.type') = 'event'"
                " ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
        ]


def aggregates(path: Path, sensor_id: str, quantity: str) -> list[dict[str, Any]]:
    """Committed minute aggregates of one quantity, oldest minute first."""
    with contextlib_closing(connect_read_only(path)) as db:
        return [
            dict(r)
            for r in db.execute(
                "SELECT * FROM minute_aggregates WHERE sensor_id = ? AND quantity = ?"
                " ORDER BY minute, flag",
                (sensor_id, quantity),
            )
        ]
