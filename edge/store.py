"""The gateway's local store: one SQLite database (WAL), one writer.

Everything the gateway must not lose goes through :class:`Store`: minute aggregates,
dead letters, per-sensor state and events. Writes are grouped: whatever is queued while
a transaction runs goes into the next one (group commit), so the SD card sees one
commit per batch rather than one per reading. ``synchronous=FULL`` makes each commit
survive power loss, not only a crash of the process.

Every event change is also appended to the ``outbox`` in the same transaction, with the
gateway-wide sequence number, so cloud sync can forward it without a second source of
truth. The same commit closes finished minutes into minute records, enforces the outbox
quota and runs queued outbox operations (:meth:`Store.run`: pop, done, status records),
so there is still exactly one writer (see ``cloud_sync/outbox.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite

from cloud_sync.minutes import close_minutes
from cloud_sync.outbox import NewRecord, Outbox
from cloud_sync.outbox import migrate as migrate_outbox
from edge.clock import clock_synchronised
from edge.counters import bump_counter
from edge.events import Event, EventStatus, Severity
from sensors.aggregate import merge
from sensors.intake import Batch

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

SCHEMA = """
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

UPSERT_AGGREGATE = """
INSERT INTO minute_aggregates
    (sensor_id, quantity, flag, minute, count, min_value, max_value, sum_value, energy_sum)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sensor_id, quantity, flag, minute) DO UPDATE SET
    count = count + excluded.count,
    min_value = min(min_value, excluded.min_value),
    max_value = max(max_value, excluded.max_value),
    sum_value = sum_value + excluded.sum_value,
    energy_sum = energy_sum + excluded.energy_sum
"""

UPSERT_SENSOR_STATE = """
INSERT INTO sensor_state (sensor_id, last_seen, readings, dead_letters, last_values)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (sensor_id) DO UPDATE SET
    last_seen = max(last_seen, excluded.last_seen),
    readings = readings + excluded.readings,
    dead_letters = dead_letters + excluded.dead_letters,
    last_values = json_patch(last_values, excluded.last_values)
"""

UPSERT_EVENT = """
INSERT INTO events
    (id, seq, kind, source, severity, status, started_at, ended_at, detail, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    seq = excluded.seq,
    severity = excluded.severity,
    status = CASE WHEN excluded.status = 'update' THEN 'open' ELSE excluded.status END,
    ended_at = excluded.ended_at,
    detail = excluded.detail,
    updated_at = excluded.updated_at
"""


@dataclass(frozen=True, slots=True)
class _Failed:
    exc: Exception


class StoreClosedError(RuntimeError):
    """The store was used after :meth:`Store.close`."""


def event_data_class(event: Event) -> str:
    """Outbox data class of an event: alarms travel first."""
    return "alarm" if event.severity is Severity.ALARM else "event"


def event_body(event: Event, seq: int) -> dict[str, Any]:
    """The JSON form of an event change, as stored in the outbox and sent to the cloud."""
    return {
        "type": "event",
        "seq": seq,
        "event_id": event.event_id,
        "kind": event.kind,
        "source": event.source,
        "severity": str(event.severity),
        "status": str(event.status),
        "started_at": event.started_at,
        "ended_at": event.ended_at,
        "detail": dict(event.detail),
    }


T = TypeVar("T")
Op = Callable[[aiosqlite.Connection], Awaitable[Any]]
"""An outbox operation run by the writer inside its transaction (under a savepoint)."""


@dataclass(slots=True)
class _Job:
    batch: Batch | None
    op: Op | None
    done: asyncio.Future[Any]


class Store:
    """Async, single-writer access to the gateway database.

    Use as ``async with await Store.open(path) as store:``. :meth:`commit` and :meth:`emit`
    return only after the data is committed; callers acknowledge upstream after that.
    """

    def __init__(self, db: aiosqlite.Connection, path: Path, outbox: Outbox | None = None) -> None:
        self._db = db
        self.path = path
        self.outbox = outbox or Outbox(gateway_id="")
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="offsite-edge.store.writer")
        self._closed = False
        self.commits = 0

    @classmethod
    async def open(cls, path: Path | str, *, outbox: Outbox | None = None) -> Self:
        """Open (creating if needed) the database at ``path`` and start the writer.

        ``outbox`` says who signs records and which uplinks they are pending for; without
        it records are still chained (unsigned) but pending for no uplink.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await _prepare(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, outbox)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def commit(self, batch: Batch) -> list[int]:
        """Commit a batch in the next group transaction; return its events' sequence numbers."""
        if self._closed:
            raise StoreClosedError("store is closed")
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(batch, None, done))
        return await done

    async def run(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``op`` in the writer's next transaction; return its result after the commit.

        A failing op is rolled back to its savepoint and raises here; the rest of the
        group transaction still commits.
        """
        if self._closed:
            raise StoreClosedError("store is closed")
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(None, op, done))
        return await done

    async def emit(self, event: Event) -> int:
        """Commit one event (the :class:`~edge.events.EventSink` protocol)."""
        seqs = await self.commit(Batch(events=[event]))
        return seqs[0]

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the database."""
        if self._closed:
            return
        self._closed = True
        await self._queue.put(None)
        await self._writer
        await self._db.execute("PRAGMA optimize")
        await self._db.close()

    async def _write_loop(self) -> None:
        while True:
            job = await self._queue.get()
            jobs: list[_Job] = []
            stopping = job is None
            if job is not None:
                jobs.append(job)
            # Group commit: take everything that queued up while the last commit ran.
            while not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    stopping = True
                else:
                    jobs.append(more)
            if jobs:
                await self._commit_jobs(jobs)
            if stopping:
                return

    async def _commit_jobs(self, jobs: list[_Job]) -> None:
        try:
            results = await self._write(jobs)
        except Exception as exc:
            log.exception("store commit failed; %d batches not committed", len(jobs))
            try:
                await self._db.rollback()
            except aiosqlite.Error:
                log.exception("rollback failed")
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(exc)
            return
        self.commits += 1
        for job, result in zip(jobs, results, strict=True):
            if job.done.done():
                continue
            if isinstance(result, _Failed):
                job.done.set_exception(result.exc)
            else:
                job.done.set_result(result)

    async def _write(self, jobs: Sequence[_Job]) -> list[Any]:  # noqa: PLR0915
        db = self._db
        now = time.time()
        batches = [job.batch for job in jobs if job.batch is not None]
        aggregates: dict[tuple[str, str, str, int], list[float]] = {}
        for batch in batches:
            for key, acc in batch.aggregates.items():
                have = aggregates.get(key)
                aggregates[key] = acc if have is None else merge(have, acc)
        await db.execute("BEGIN IMMEDIATE")
        if aggregates:
            await db.executemany(
                UPSERT_AGGREGATE, [(*key, *acc) for key, acc in aggregates.items()]
            )
        dead = [d for batch in batches for d in batch.dead_letters]
        if dead:
            await db.executemany(
                "INSERT INTO dead_letters (received_at, topic, sensor_id, reason, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                [(d.received_at, d.topic, d.sensor_id, d.reason, d.payload) for d in dead],
            )
            await bump_counter(db, "dead_letters_total", len(dead))
        state_rows = [
            (
                sensor_id,
                a.last_seen,
                a.readings,
                a.dead_letters,
                json.dumps({q: list(v) for q, v in a.last_values.items()}),
            )
            for batch in batches
            for sensor_id, a in batch.activity.items()
        ]
        if state_rows:
            await db.executemany(UPSERT_SENSOR_STATE, state_rows)
        synced = clock_synchronised()
        seqs: list[list[int]] = []
        total_events = sum(len(b.events) for b in batches)
        if total_events:
            last = await bump_counter(db, "seq", total_events)
            next_seq = last - total_events + 1
            event_rows, outbox_rows = [], []
            for batch in batches:
                batch_seqs = []
                for event in batch.events:
                    detail = json.dumps(dict(event.detail), ensure_ascii=False, default=str)
                    event_rows.append(
                        (
                            event.event_id,
                            next_seq,
                            event.kind,
                            event.source,
                            str(event.severity),
                            str(event.status),
                            event.started_at,
                            event.ended_at,
                            detail,
                            now,
                        )
                    )
                    body = json.loads(
                        json.dumps(event_body(event, next_seq), ensure_ascii=False, default=str)
                    )
                    outbox_rows.append(
                        NewRecord(next_seq, event_data_class(event), now, synced, body)
                    )
                    batch_seqs.append(next_seq)
                    next_seq += 1
                seqs.append(batch_seqs)
            await db.executemany(UPSERT_EVENT, event_rows)
            await self.outbox.put(db, outbox_rows)
        else:
            seqs = [[] for _ in batches]
        late = sorted({(key[0], key[3]) for key in aggregates})
        await close_minutes(db, self.outbox, now=now, late=late, clock_synced=synced)
        results: list[Any] = []
        batch_results = iter(seqs)
        for job in jobs:
            if job.op is None:
                results.append(next(batch_results))
                continue
            await db.execute("SAVEPOINT op")
            try:
                results.append(await job.op(db))
            except Exception as exc:  # noqa: BLE001 - handed to the op's caller, not swallowed
                await db.execute("ROLLBACK TO op")
                results.append(_Failed(exc))
            await db.execute("RELEASE op")
        await self.outbox.enforce_quota(db, now, synced)
        await db.commit()
        return results

    async def prune_dead_letters(self, keep: int) -> int:
        """Delete all but the newest ``keep`` dead letters; return how many were deleted."""
        cursor = await self._db.execute(
            "DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?", (keep,)
        )
        return cursor.rowcount

    async def open_events(self) -> list[Event]:
        """Events not yet closed, e.g. to resume their lifecycle after a restart."""
        async with self._db.execute(
            "SELECT id, kind, source, severity, status, started_at, ended_at, detail"
            " FROM events WHERE status NOT IN ('closed', 'instant') ORDER BY seq"
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            Event(
                event_id=row[0],
                kind=row[1],
                source=row[2],
                severity=Severity(row[3]),
                status=EventStatus(row[4]),
                started_at=row[5],
                ended_at=row[6],
                detail=json.loads(row[7]),
            )
            for row in rows
        ]


async def _prepare(db: aiosqlite.Connection) -> None:
    await db.execute("PRAGMA journal_mode=WAL")
    # FULL: each commit reaches the disk before we acknowledge the broker (power loss safe).
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA busy_timeout=5000")
    # Fewer, larger checkpoints spare the SD card; 4 MB of WAL is still quick to replay.
    await db.execute("PRAGMA wal_autocheckpoint=1000")
    await db.executescript(SCHEMA)
    async with db.execute("SELECT value FROM meta WHERE key = 'schema_version'") as cursor:
        row = await cursor.fetchone()
    if row is None:
        await db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
    elif int(row[0]) > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema {row[0]} is newer than this gateway's {SCHEMA_VERSION}"
        )
    # Schema 1 → 2: chain, delivery and quota columns on the outbox (idempotent).
    await migrate_outbox(db)
    await db.execute(
        "UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
        (str(SCHEMA_VERSION), SCHEMA_VERSION),
    )
