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
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import aiosqlite

from edge.batch import Batch
from edge.clock import clock_synchronised
from edge.errors import OffsiteEdgeError, SetupError
from edge.events import Event, EventStatus, Severity
from edge.schema import prepare
from edge.store_rows import write_events, write_readings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Failed:
    exc: Exception


class StoreClosedError(OffsiteEdgeError):
    """The store was used after :meth:`Store.close`."""


class StoreFileLostError(SetupError):
    """The database file was deleted or replaced while open: commits no longer reach it.

    Nothing committed after this is acknowledged; a restart opens (or creates) the file
    that is at the path now.
    """


T = TypeVar("T")
_Files = tuple[tuple[int, int], tuple[int, int] | None]
"""(device, inode) of the database file and of its WAL file (None: no WAL file)."""
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
        self,
        db: aiosqlite.Connection,
        path: Path,
        hook: TransactionHook | None = None,
        clock: Callable[[], bool | None] | None = None,
    ) -> None:
        self._db = db
        self.path = path
        self._hook = hook
        # What records say of the clock: the gateway's clock watch, else the kernel's flag.
        self.clock: Callable[[], bool | None] = clock or clock_synchronised
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="offsite-edge.store.writer")
        self._closed = False
        self._lost: StoreFileLostError | None = None
        # The files we opened; a deleted or replaced file still takes commits (into an
        # unlinked inode), so every commit checks that the paths still name them.
        self._identity = _identity(path)
        self.commits = 0

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        hook: TransactionHook | None = None,
        clock: Callable[[], bool | None] | None = None,
    ) -> Self:
        """Open (creating if needed) the database at ``path`` and start the writer.

        ``hook`` is called inside every commit's transaction (cloud sync's outbox);
        ``clock`` says whether the clock is synchronised (``clock_synced`` of every record;
        default: the kernel's flag, :func:`edge.clock.clock_synchronised`).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await prepare(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, hook, clock)

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

    @property
    def lost(self) -> StoreFileLostError | None:
        """Set once the database file is found deleted or replaced (commits then fail)."""
        return self._lost

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the database.

        The connection's thread always ends, even when the final statements fail (e.g. the
        file system turned read-only), so that the process can exit.
        """
        if self._closed:
            return
        self._closed = True
        await self._queue.put(None)
        try:
            await self._writer
            if self._lost is None:
                await self._db.execute("PRAGMA optimize")
        except Exception:
            log.exception("store close: final statements failed db=%s", self.path)
        finally:
            try:
                await self._db.close()  # aiosqlite stops its thread even when this raises
            except Exception:
                log.exception("store close: closing the database failed db=%s", self.path)

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
            if not isinstance(exc, StoreFileLostError):  # that one was logged as it was found
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

    def _check_file(self) -> None:
        """Raise StoreFileLostError unless the path still names the file we opened."""
        if self._lost is not None:
            raise StoreFileLostError(str(self._lost))  # a fresh one: no growing traceback
        try:
            now: _Files | None = _identity(self.path)
        except OSError:
            now = None
        db_opened, wal_opened = self._identity
        if now is None or now[0] != db_opened or (wal_opened is not None and now[1] != wal_opened):
            self._lost = StoreFileLostError(
                f"database file {self.path} (or its -wal file) was deleted or replaced while "
                "the gateway had it open; nothing is acknowledged any more (the broker keeps "
                "it): restart the gateway to open the file now at that path"
            )
            log.critical("%s", self._lost)
            raise self._lost

    async def _write(self, jobs: Sequence[_Job]) -> list[Any]:
        self._check_file()
        db = self._db
        now = time.time()
        synced = self.clock()
        await db.execute("BEGIN IMMEDIATE")
        # Operations first: records they append take their sequence numbers before this
        # transaction's events, so the sequence stays in the order rows are written.
        op_results: dict[int, Any] = {}
        for index, job in enumerate(jobs):
            if job.op is not None:
                op_results[index] = await _run_op(db, job.op)
        batches = [job.batch for job in jobs if job.batch is not None]
        minutes = await write_readings(db, batches)
        seqs, events = await write_events(db, batches, now)
        if self._hook is not None:
            written = Written(events=events, minutes=minutes, now=now, clock_synced=synced)
            await self._hook.in_transaction(db, written)
        await db.commit()
        # Checked after the commit: if the file went before it, what we committed went
        # with it, and the callers must not acknowledge it.
        self._check_file()
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


def _identity(path: Path) -> _Files:
    """(device, inode) of the database file and of its WAL file (None: there is none)."""
    st = os.stat(path)
    try:
        wal = os.stat(f"{path}-wal")
    except FileNotFoundError:
        return (st.st_dev, st.st_ino), None
    return (st.st_dev, st.st_ino), (wal.st_dev, wal.st_ino)


async def _run_op(db: aiosqlite.Connection, op: Op) -> Any:
    await db.execute("SAVEPOINT op")
    try:
        result = await op(db)
    except Exception as exc:  # noqa: BLE001 - handed to the op's caller, not swallowed
        await db.execute("ROLLBACK TO op")
        result = _Failed(exc)
    await db.execute("RELEASE op")
    return result
