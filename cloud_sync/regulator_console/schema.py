"""The regulator console's own tables in the receiver's database.

The receiver owns ``records`` and the rest of its schema; the console only *reads*
``records`` (by its ``arrival`` cursor) and keeps what it derives from them in tables
prefixed ``reg_``: one row per event (the alerts), their counts per gateway, UTC day,
kind and severity and the open ones per gateway and severity (kept as alerts change, so
the risk list reads a few hundred rows, not every alert), the minute values of each sensor
(the charts), per-gateway evasion signals, the append-only handling trail with its
attachments, the webhook push queue, and the regulators' accounts and sessions.
Every statement here is idempotent, so the console, ``add-user`` and a benchmark can
each open the file first.
"""

from __future__ import annotations

import sqlite3

SEVERITY_RANK = {"info": 0, "warning": 1, "alarm": 2}

SCHEMA = """
CREATE TABLE IF NOT EXISTS reg_cursor (
    name TEXT PRIMARY KEY,
    arrival INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reg_alerts (
    id INTEGER PRIMARY KEY,
    gateway TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    sensor TEXT,
    quantity TEXT,
    site TEXT,
    severity TEXT NOT NULL,
    sev_rank INTEGER NOT NULL,
    event_status TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'new',
    assignee TEXT,
    started_at REAL NOT NULL,
    ended_at REAL,
    detail TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    first_arrival INTEGER NOT NULL,
    last_arrival INTEGER NOT NULL,
    records INTEGER NOT NULL DEFAULT 1,
    UNIQUE (gateway, event_id)
);
CREATE INDEX IF NOT EXISTS reg_alerts_time ON reg_alerts (started_at, id);
CREATE INDEX IF NOT EXISTS reg_alerts_gateway ON reg_alerts (gateway, started_at, id);
CREATE INDEX IF NOT EXISTS reg_alerts_kind ON reg_alerts (kind, started_at, id);
CREATE INDEX IF NOT EXISTS reg_alerts_state ON reg_alerts (state, started_at, id);
CREATE INDEX IF NOT EXISTS reg_alerts_risk
    ON reg_alerts (gateway, kind, sev_rank, state, started_at);
CREATE TABLE IF NOT EXISTS reg_daily (
    gateway TEXT NOT NULL,
    day INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sev_rank INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (gateway, day, kind, sev_rank)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reg_open (
    gateway TEXT NOT NULL,
    sev_rank INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (gateway, sev_rank)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reg_sites (
    gateway TEXT PRIMARY KEY,
    site TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reg_minutes (
    gateway TEXT NOT NULL,
    sensor TEXT NOT NULL,
    quantity TEXT NOT NULL,
    minute INTEGER NOT NULL,
    value REAL NOT NULL,
    lo REAL NOT NULL,
    hi REAL NOT NULL,
    flags TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (gateway, sensor, quantity, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reg_signals (
    gateway TEXT NOT NULL,
    signal TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at REAL,
    PRIMARY KEY (gateway, signal)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reg_steps (
    n INTEGER PRIMARY KEY,
    alert INTEGER NOT NULL REFERENCES reg_alerts (id),
    action TEXT NOT NULL CHECK (action IN
        ('acknowledge', 'assign', 'comment', 'rectified', 'close')),
    who TEXT NOT NULL,
    at REAL NOT NULL,
    assignee TEXT,
    comment TEXT,
    attachment TEXT REFERENCES reg_attachments (sha256),
    state_after TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reg_steps_alert ON reg_steps (alert, n);
CREATE TRIGGER IF NOT EXISTS reg_steps_no_update BEFORE UPDATE ON reg_steps
BEGIN SELECT RAISE(ABORT, 'handling steps are append-only'); END;
CREATE TRIGGER IF NOT EXISTS reg_steps_no_delete BEFORE DELETE ON reg_steps
BEGIN SELECT RAISE(ABORT, 'handling steps are append-only'); END;
CREATE TABLE IF NOT EXISTS reg_attachments (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reg_push (
    n INTEGER PRIMARY KEY,
    alert INTEGER NOT NULL REFERENCES reg_alerts (id),
    target TEXT NOT NULL,
    arrival INTEGER NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    pushed_at REAL,
    failed_at REAL,
    last_error TEXT,
    UNIQUE (alert, target)
);
CREATE INDEX IF NOT EXISTS reg_push_due ON reg_push (next_at)
    WHERE pushed_at IS NULL AND failed_at IS NULL;
CREATE TABLE IF NOT EXISTS reg_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('read-only', 'handling')),
    password_hash TEXT NOT NULL,
    must_change INTEGER NOT NULL,
    created_at REAL NOT NULL,
    changed_at REAL
);
CREATE TABLE IF NOT EXISTS reg_sessions (
    token_sha256 TEXT PRIMARY KEY,
    user TEXT,
    csrf TEXT NOT NULL,
    last_used REAL NOT NULL,
    notice TEXT
);
"""


DAY_S = 86_400


def day_of(t: float) -> int:
    """The UTC day number of a Unix time (the risk list's recency buckets)."""
    return int(t // DAY_S)


def count_open(conn: sqlite3.Connection, gateway: str, sev_rank: int, delta: int) -> None:
    """Add ``delta`` to the open (not closed) alerts of a gateway and severity."""
    conn.execute(
        "INSERT INTO reg_open (gateway, sev_rank, n) VALUES (?, ?, ?)"
        " ON CONFLICT DO UPDATE SET n = n + excluded.n",
        (gateway, sev_rank, delta),
    )


def count_daily(  # noqa: PLR0917 - the bucket's key and the change
    conn: sqlite3.Connection, gateway: str, day: int, kind: str, sev_rank: int, delta: int
) -> None:
    """Add ``delta`` to the alerts of a gateway, UTC day, kind and severity."""
    conn.execute(
        "INSERT INTO reg_daily (gateway, day, kind, sev_rank, n) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET n = n + excluded.n",
        (gateway, day, kind, sev_rank, delta),
    )


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the console's tables and indexes if missing (never touches the receiver's)."""
    conn.executescript(SCHEMA)
