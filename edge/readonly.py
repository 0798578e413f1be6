"""Read-only access to a gateway database, beside the running gateway (WAL allows it).

Status views, the demo and the evidence quota read the database through this module;
only the store's single writer (``edge.store``) writes it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open the database read-only, rows as :class:`sqlite3.Row`.

    Raises FileNotFoundError when there is no database yet (the gateway never ran).
    """
    if not path.exists():
        raise FileNotFoundError(f"no gateway database at {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    db.row_factory = sqlite3.Row
    return db


def database_bytes(path: Path) -> int:
    """Size of the database with its WAL and shared-memory files."""
    return sum(
        p.stat().st_size
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
        if p.exists()
    )


def sensor_states(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Per sensor: last_seen, readings, dead_letters and last_values (quantity → value)."""
    return {
        row["sensor_id"]: {
            "last_seen": row["last_seen"],
            "readings": row["readings"],
            "dead_letters": row["dead_letters"],
            "last_values": json.loads(row["last_values"]),
        }
        for row in db.execute("SELECT * FROM sensor_state")
    }


def dead_letters_total(db: sqlite3.Connection) -> int:
    """Dead letters ever recorded (pruning keeps the count)."""
    row = db.execute("SELECT value FROM counters WHERE name = 'dead_letters_total'").fetchone()
    return 0 if row is None else int(row[0])


def recent_dead_letters(db: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The newest dead letters, newest first, without their payloads."""
    return [
        {
            "received_at": r["received_at"],
            "topic": r["topic"],
            "sensor_id": r["sensor_id"],
            "reason": r["reason"],
        }
        for r in db.execute("SELECT * FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,))
    ]


def open_events(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Events not yet closed, oldest change first."""
    return [
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


def open_event_counts(db: sqlite3.Connection) -> dict[str, int]:
    """How many events are open now, by kind."""
    return {
        str(r[0]): int(r[1])
        for r in db.execute(
            # Spelled so that the partial index events_open applies (NOT IN would scan).
            "SELECT kind, count(*) FROM events WHERE status != 'closed' AND status != 'instant'"
            " GROUP BY kind"
        )
    }


def events_total(db: sqlite3.Connection) -> int:
    """Events ever recorded."""
    return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
