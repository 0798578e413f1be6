"""The store never acknowledges into a deleted file and always lets the process exit."""

import asyncio
import json
import math
import os
import sqlite3
import threading
import time
from contextlib import closing

import pytest

from edge.batch import Batch
from edge.events import Event, EventStatus, Severity
from edge.store import Store, StoreFileLostError


def _batch(minute: int) -> Batch:
    return Batch(aggregates={("s1", "LA", "N", minute): [1, 50.0, 50.0, 50.0, 0.0]}, messages=1)


def _minutes(path) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        return [m for (m,) in conn.execute("SELECT minute FROM minute_aggregates ORDER BY 1")]


def _delete(db) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            os.unlink(f"{db}{suffix}")


@pytest.mark.parametrize("how", ["deleted", "replaced", "wal deleted"])
def test_a_database_file_gone_from_its_path_fails_every_later_commit(tmp_path, how):
    db = tmp_path / "g.db"

    async def main():
        async with await Store.open(db) as store:
            await store.commit(_batch(0))
            if how == "wal deleted":
                # Commits would live in an unlinked WAL until a checkpoint: lost in a crash.
                os.unlink(f"{db}-wal")
            else:
                _delete(db)
            if how == "replaced":
                with closing(sqlite3.connect(db)) as other:
                    other.execute("CREATE TABLE x (a)")
            for minute in (60, 120):
                with pytest.raises(StoreFileLostError, match=str(db)):
                    await store.commit(_batch(minute))
            assert store.lost is not None

    asyncio.run(main())
    # Nothing committed after the loss was "durably" anywhere we could acknowledge it.
    if how == "deleted":
        assert not db.exists()
    elif how == "wal deleted":
        assert _minutes(db) == [0]
    else:
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("x",)]


def test_a_store_reopened_at_the_path_works_again(tmp_path):
    db = tmp_path / "g.db"

    async def main():
        async with await Store.open(db) as store:
            await store.commit(_batch(0))
            os.unlink(db)
            with pytest.raises(StoreFileLostError):
                await store.commit(_batch(60))
        async with await Store.open(db) as store:
            await store.commit(_batch(120))

    asyncio.run(main())
    assert _minutes(db) == [120]


def test_close_ends_the_connection_thread_when_the_database_refuses_writes(tmp_path, caplog):
    """A file system turned read-only: the final PRAGMA optimize fails; close still returns."""
    db = tmp_path / "g.db"
    before = set(threading.enumerate())

    async def main():
        store = await Store.open(db)
        rows = {(f"s{i % 5}", "LA", "N", 60 * i): [1, 1.0, 1.0, 1.0, 0.0] for i in range(3000)}
        await store.commit(Batch(aggregates=rows, messages=1))

        async def read_then_refuse_writes(conn):
            # A query through an index gives PRAGMA optimize something to write.
            async with conn.execute(
                "SELECT count(*) FROM minute_aggregates WHERE sensor_id = 's1' AND quantity = 'LA'"
            ) as cursor:
                await cursor.fetchall()
            await conn.execute("PRAGMA query_only = 1")

        await store.run(read_then_refuse_writes)
        await store.close()

    asyncio.run(main())
    # aiosqlite resolves close() from its thread just before that thread returns: wait
    # (bounded) for it to be gone rather than catch it in its last instant.
    deadline = time.monotonic() + 10
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()
    assert "store close: final statements failed" in caplog.text
    assert "readonly" in caplog.text


def test_an_event_with_nan_or_infinity_is_committed_with_null(tmp_path):
    """JSON has no NaN: the outbox would refuse the record and every later commit with it."""
    from cloud_sync.outbox import Outbox

    db = tmp_path / "g.db"
    event = Event(
        kind="sensor_out_of_range",
        source="soil-01",
        severity=Severity.ALARM,
        status=EventStatus.OPEN,
        started_at=math.nan,
        detail={"value": math.inf, "window": [1.0, -math.inf], "last": {"v": math.nan}},
    )

    async def main():
        async with await Store.open(db, hook=Outbox("gw-test")) as store:
            await store.emit(event)
            await store.commit(_batch(60))  # and the next commit is not held up by it

    asyncio.run(main())
    with closing(sqlite3.connect(db)) as conn:
        (detail, started) = conn.execute("SELECT detail, started_at FROM events").fetchone()
        (body,) = conn.execute("SELECT body FROM outbox WHERE data_class = 'alarm'").fetchone()
    assert json.loads(detail) == {"value": None, "window": [1.0, None], "last": {"v": None}}
    assert math.isfinite(started)
    assert json.loads(body)["detail"] == json.loads(detail)
    assert _minutes(db) == [60]
