"""Maintenance and calibration requests, from a technician's CLI to the running gateway.

The CLI records the requested mode in the gateway database (table ``sensor_modes``); the
gateway applies it within a second, or at its next start, and records a ``maintenance``
event with who and why. The row stays, so a sensor under maintenance stays flagged
across restarts.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from edge.status import connect_read_only, query_optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS sensor_modes (
    sensor_id TEXT PRIMARY KEY,
    mode TEXT NOT NULL,
    who TEXT NOT NULL,
    why TEXT NOT NULL,
    requested_at REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeRequest:
    """The mode a technician asked for."""

    sensor_id: str
    mode: str
    who: str
    why: str
    requested_at: float


def request_mode(db_path: Path, sensor_id: str, mode: str, who: str, why: str) -> ModeRequest:
    """Record a technician's request (``normal``, ``maintenance`` or ``calibration``)."""
    if not who.strip() or not why.strip():
        raise ValueError("who and why are required")
    request = ModeRequest(
        sensor_id=sensor_id, mode=mode, who=who, why=why, requested_at=time.time()
    )
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(db_path, timeout=10.0)) as db, db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)
        db.execute(
            "INSERT INTO sensor_modes (sensor_id, mode, who, why, requested_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (sensor_id) DO UPDATE SET"
            " mode = excluded.mode, who = excluded.who, why = excluded.why,"
            " requested_at = excluded.requested_at",
            (sensor_id, mode, who, why, request.requested_at),
        )
    return request


def read_requests(db_path: Path) -> dict[str, ModeRequest]:
    """All recorded requests, by sensor id (empty when none were ever made)."""
    if not db_path.exists():
        return {}
    with closing(connect_read_only(db_path)) as db:
        # No table yet: nobody asked.
        rows = query_optional(
            db, "SELECT sensor_id, mode, who, why, requested_at FROM sensor_modes"
        )
    return {
        row[0]: ModeRequest(
            sensor_id=row[0], mode=row[1], who=row[2], why=row[3], requested_at=row[4]
        )
        for row in rows
    }
