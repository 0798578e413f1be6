"""The gateway's local store: one SQLite database (WAL), one writer.

Everything the gateway must not lose goes through :class:`Store`: minute aggregates,
dead letters, per-sensor state and events. Writes are grouped: whatever is queued while
a transaction runs goes into the next one (group commit), so the SD card sees one
commit per batch rather than one per reading. ``synchronous=FULL`` makes each commit
survive power loss, not only a crash of the process.

The store knows what it writes, not who else wants to know: a :class:`TransactionHook`
(cloud sync's outbox) is called inside every commit's transaction with what it wrote, so
whatever the hook adds (records for the cloud) commits atomically with it. Other
components run their own writes as operations in the writer's transaction
(:meth:`Store.run`), so there is exactly one writer. The schema is in ``edge.schema``.
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
from typing import Any, Protocol, Self, TypeVar

import aiosqlite

from edge.aggregate import MinuteAccumulator, merge
from edge.batch import Batch
from edge.clock import clock_synchronised
from edge.counters import bump_counter, reserve_seqs
from edge.errors import OffsiteEdgeError
from edge.events import Event, EventStatus, Severity
from edge.schema import prepare

log = logging.getLogger(__name__)

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


class StoreClosedError(OffsiteEdgeError):
    """The store was used after :meth:`Store.close`."""


T = TypeVar("T")
Op = Callable[[aiosqlite.Connection], Awaitable[Any]]
"""An operation run by the writer inside its transaction (under a savepoint)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """What one transaction wrote, handed to the :class:`TransactionHook`."""

    events: Sequence[tuple[int, Event]]
    """Each event change with the gateway sequence number it was given."""
    minutes: Sequence[tuple[str, int]]
    """(sensor_id, minute start) of every minute aggregate the transaction changed."""
    now: float
    """Wall-clock time of the transaction."""
    clock_synced: bool | None
    """Whether the system clock was NTP-synchronised (None: unknown)."""


class TransactionHook(Protocol):
    """Called inside every commit's transaction, after the store's own writes."""

    async def in_transaction(self, db: aiosqlite.Connection, written: Written) -> None:
        """Add to the transaction; nothing here may commit. Raising aborts the commit."""
        ...


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

    def __init__(
        self, db: aiosqlite.Connection, path: Path, hook: TransactionHook | None = None
    ) -> None:
        self._db = db
        self.path = path
        self._hook = hook
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="offsite-edge.store.writer")
        self._closed = False
        self.commits = 0

    @classmethod
    async def open(cls, path: Path | str, *, hook: TransactionHook | None = None) -> Self:
        """Open (creating if needed) the database at ``path`` and start the writer.

        ``hook`` is called inside every commit's transaction (cloud sync's outbox).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await prepare(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, hook)

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

    async def _write(self, jobs: Sequence[_Job]) -> list[Any]:
        db = self._db
        now = time.time()
        synced = clock_synchronised()
        await db.execute("BEGIN IMMEDIATE")
        # Operations first: records they append take their sequence numbers before this
        # transaction's events, so the sequence stays in the order rows are written.
        op_results: dict[int, Any] = {}
        for index, job in enumerate(jobs):
            if job.op is not None:
                op_results[index] = await _run_op(db, job.op)
        batches = [job.batch for job in jobs if job.batch is not None]
        minutes = await _write_readings(db, batches)
        seqs, events = await _write_events(db, batches, now)
        if self._hook is not None:
            written = Written(events=events, minutes=minutes, now=now, clock_synced=synced)
            await self._hook.in_transaction(db, written)
        await db.commit()
        batch_seqs = iter(seqs)
        return [
            op_results[index] if job.op is not None else next(batch_seqs)
            for index, job in enumerate(jobs)
        ]

    async def prune_dead_letters(self, keep: int) -> int:
        """Delete all but the newest ``keep`` dead letters; return how many were deleted."""

        async def prune(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?",
                (keep,),
            )
            return cursor.rowcount

        return await self.run(prune)

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


async def _run_op(db: aiosqlite.Connection, op: Op) -> Any:
    await db.execute("SAVEPOINT op")
    try:
        result = await op(db)
    except Exception as exc:  # noqa: BLE001 - handed to the op's caller, not swallowed
        await db.execute("ROLLBACK TO op")
        result = _Failed(exc)
    await db.execute("RELEASE op")
    return result


async def _write_readings(
    db: aiosqlite.Connection, batches: Sequence[Batch]
) -> list[tuple[str, int]]:
    """Write the batches' aggregates, dead letters and sensor state; return touched minutes."""
    aggregates: dict[tuple[str, str, str, int], MinuteAccumulator] = {}
    for batch in batches:
        for key, acc in batch.aggregates.items():
            have = aggregates.get(key)
            aggregates[key] = acc if have is None else merge(have, acc)
    if aggregates:
        await db.executemany(UPSERT_AGGREGATE, [(*key, *acc) for key, acc in aggregates.items()])
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
    return sorted({(key[0], key[3]) for key in aggregates})


async def _write_events(
    db: aiosqlite.Connection, batches: Sequence[Batch], now: float
) -> tuple[list[list[int]], list[tuple[int, Event]]]:
    """Give each event the next sequence number and write it; return seqs per batch."""
    total = sum(len(b.events) for b in batches)
    if not total:
        return [[] for _ in batches], []
    next_seq = await reserve_seqs(db, total)
    rows, numbered, seqs = [], [], []
    for batch in batches:
        batch_seqs = []
        for event in batch.events:
            detail = json.dumps(dict(event.detail), ensure_ascii=False, default=str)
            rows.append(
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
            numbered.append((next_seq, event))
            batch_seqs.append(next_seq)
            next_seq += 1
        seqs.append(batch_seqs)
    await db.executemany(UPSERT_EVENT, rows)
    return seqs, numbered
