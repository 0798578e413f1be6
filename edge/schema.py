"""The whole database schema of a gateway, every table and migration, in order.

One SQLite file (WAL) holds everything the gateway must not lose. The tables, by owner:

* the store (``edge.store``): ``meta`` (key/value: schema version, chain head, closed
  minutes), ``counters`` (the gateway sequence ``seq``, totals), ``minute_aggregates``,
  ``sensor_state``, ``dead_letters``, ``events``;
* the outbox (``cloud_sync.outbox``, through the store's transaction hook): ``outbox``
  (one row per record for the cloud, chained and signed) and ``outbox_pending`` (one row
  per uplink and record still to deliver);
* signed commands (``cloud_sync.command_ids``, through :meth:`Store.run`): ``command_ids``
  (every accepted command id, so a replay is refused after a restart) and the meta key
  ``command_high_water`` (the newest ``issued_at`` accepted).
* evidence uploads (``cloud_sync.evidence_queue``, through the outbox hook and
  :meth:`Store.run`): ``evidence_uploads`` (one row per snapshot to send, and whether a
  receiver confirmed holding its bytes).
* the store (``edge.store_rows``): ``minute_quality`` (per sensor, quantity and minute:
  values refused and readings received while the clock was not trusted; rows only where
  either happened), for the data rates and the minute records' clock flag.

Only the store's single writer writes this file; everyone else reads it read-only
(``edge.readonly``). Migrations run in order at :func:`prepare` and are idempotent, so a
database from any earlier version opens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiosqlite

from edge.errors import OffsiteEdgeError

SCHEMA_VERSION = 5

VERSION_1 = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS minute_aggregates (
    sensor_id TEXT NOT NULL,
    quantity TEXT NOT NULL,
    flag TEXT NOT NULL,
    minute INTEGER NOT NULL,
    count INTEGER NOT NULL,
    min_value REAL NOT NULL,
    max_value REAL NOT NULL,
    sum_value REAL NOT NULL,
    energy_sum REAL NOT NULL,
    PRIMARY KEY (sensor_id, quantity, flag, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sensor_state (
    sensor_id TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    readings INTEGER NOT NULL,
    dead_letters INTEGER NOT NULL,
    last_values TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    topic TEXT NOT NULL,
    sensor_id TEXT,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    detail TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_open ON events (status) WHERE status != 'closed';
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    data_class TEXT NOT NULL,
    created_at REAL NOT NULL,
    clock_synced INTEGER,
    body TEXT NOT NULL
);
"""

_VERSION_2_COLUMNS = {
    "prev": "TEXT",
    "hash": "TEXT",
    "sig": "TEXT",
    "size": "INTEGER NOT NULL DEFAULT 0",
    "delivered_at": "REAL",
}

_VERSION_2_TABLES = """
CREATE TABLE IF NOT EXISTS outbox_pending (
    uplink TEXT NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (uplink, priority, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_pending_seq ON outbox_pending (seq);
CREATE INDEX IF NOT EXISTS outbox_class ON outbox (data_class, seq);
CREATE INDEX IF NOT EXISTS outbox_delivered ON outbox (delivered_at)
    WHERE delivered_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS minute_aggregates_minute ON minute_aggregates (minute);
"""


async def _version_2(db: aiosqlite.Connection) -> None:
    """Outbox chain, delivery and quota columns; per-uplink delivery state."""
    async with db.execute("PRAGMA table_info(outbox)") as cursor:
        have = {row[1] for row in await cursor.fetchall()}
    for name, decl in _VERSION_2_COLUMNS.items():
        if name not in have:
            await db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {decl}")
    await db.executescript(_VERSION_2_TABLES)


_VERSION_3_TABLES = """
CREATE TABLE IF NOT EXISTS command_ids (
    id TEXT PRIMARY KEY,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    key TEXT NOT NULL,
    accepted_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS command_ids_issued ON command_ids (issued_at);
"""


async def _version_3(db: aiosqlite.Connection) -> None:
    """Executed ids of signed downlink commands (replay protection)."""
    await db.executescript(_VERSION_3_TABLES)


_EVIDENCE_UPLOADS = """
CREATE TABLE IF NOT EXISTS evidence_uploads (
    sha256 TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    path TEXT NOT NULL,
    queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    confirmed_at REAL,
    confirmed_by TEXT,
    lost_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS evidence_uploads_pending ON evidence_uploads (next_at, queued_at)
    WHERE confirmed_at IS NULL AND lost_at IS NULL;
"""


async def _evidence_uploads(db: aiosqlite.Connection) -> None:
    """Evidence snapshots queued for upload, and which ones a receiver confirmed holding."""
    await db.executescript(_EVIDENCE_UPLOADS)


_MINUTE_QUALITY = """
CREATE TABLE IF NOT EXISTS minute_quality (
    sensor_id TEXT NOT NULL,
    quantity TEXT NOT NULL,
    minute INTEGER NOT NULL,
    refused INTEGER NOT NULL DEFAULT 0,
    untrusted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sensor_id, quantity, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS minute_quality_minute ON minute_quality (minute);
"""


async def _minute_quality(db: aiosqlite.Connection) -> None:
    """Refused values and readings received under an untrusted clock, per minute."""
    await db.executescript(_MINUTE_QUALITY)


MIGRATIONS: tuple[tuple[int, Callable[[aiosqlite.Connection], Awaitable[None]]], ...] = (
    (2, _version_2),
    (3, _version_3),
    (4, _evidence_uploads),
    (5, _minute_quality),
)
"""(version, step) in order; each step is idempotent."""


class SchemaError(OffsiteEdgeError):
    """The database was written by a newer gateway than this one."""


async def prepare(db: aiosqlite.Connection) -> None:
    """Set the durability pragmas, create the tables and run every migration."""
    await db.execute("PRAGMA journal_mode=WAL")
    # FULL: each commit reaches the disk before we acknowledge the broker (power loss safe).
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA busy_timeout=5000")
    # Fewer, larger checkpoints spare the SD card; 4 MB of WAL is still quick to replay.
    await db.execute("PRAGMA wal_autocheckpoint=1000")
    await db.executescript(VERSION_1)
    async with db.execute("SELECT value FROM meta WHERE key = 'schema_version'") as cursor:
        row = await cursor.fetchone()
    if row is None:
        await db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    elif int(row[0]) > SCHEMA_VERSION:
        raise SchemaError(f"database schema {row[0]} is newer than this gateway's {SCHEMA_VERSION}")
    for _version, step in MIGRATIONS:
        await step(db)
    await db.execute(
        "UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
        (str(SCHEMA_VERSION), SCHEMA_VERSION),
    )
    await db.commit()
