import asyncio
import json
import sqlite3
from contextlib import closing

import pytest
from helpers import alarm_event

from edge.batch import Batch, DeadLetter, SensorActivity
from edge.events import EventStatus, Severity
from edge.store import Store, Written


class RecordingHook:
    """A transaction hook that notes what each commit wrote, inside its transaction."""

    def __init__(self):
        self.seen: list[Written] = []
        self.in_transaction_flags: list[bool] = []

    async def in_transaction(self, db, written):
        self.in_transaction_flags.append(db.in_transaction)
        self.seen.append(written)

    def events(self):
        return [(seq, str(event.status)) for w in self.seen for seq, event in w.events]


def _rows(db, sql, *args):
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, args).fetchall()


def test_aggregates_merge_across_commits(tmp_path):
    db = tmp_path / "g.db"

    async def main():
        async with await Store.open(db) as store:
            await store.commit(
                Batch(aggregates={("s", "LA", "N", 60): [2, 50.0, 60.0, 110.0, 1.1e6]})
            )
            await store.commit(Batch(aggregates={("s", "LA", "N", 60): [1, 40.0, 55.0, 40.0, 1e4]}))

    asyncio.run(main())
    assert _rows(
        db, "SELECT count, min_value, max_value, sum_value, energy_sum FROM minute_aggregates"
    ) == [(3, 40.0, 60.0, 150.0, pytest.approx(1.11e6))]
    assert _rows(db, "PRAGMA journal_mode") == [("wal",)]


def test_dead_letters_sensor_state_and_counters(tmp_path):
    db = tmp_path / "g.db"
    dead = DeadLetter(received_at=5.0, topic="t", sensor_id="s", reason="bad", payload=b"\x00\xff")

    async def main():
        async with await Store.open(db) as store:
            first = SensorActivity(
                last_seen=5.0, readings=3, dead_letters=1, last_values={"LA": (50.0, "N", 4.0)}
            )
            second = SensorActivity(last_seen=6.0, readings=2, last_values={"DO": (5.0, "M", 6.0)})
            await store.commit(Batch(dead_letters=[dead], activity={"s": first}))
            await store.commit(Batch(dead_letters=[dead, dead], activity={"s": second}))

    asyncio.run(main())
    assert _rows(db, "SELECT reason, payload FROM dead_letters") == [("bad", b"\x00\xff")] * 3
    assert _rows(db, "SELECT value FROM counters WHERE name = 'dead_letters_total'") == [(3,)]
    ((last_seen, readings, dead_count, values),) = _rows(
        db, "SELECT last_seen, readings, dead_letters, last_values FROM sensor_state"
    )
    assert (last_seen, readings, dead_count) == (6.0, 5, 1)
    assert json.loads(values) == {"LA": [50.0, "N", 4.0], "DO": [5.0, "M", 6.0]}


def test_event_sequence_is_monotonic_across_restarts_and_lifecycle_is_kept(tmp_path):
    db = tmp_path / "g.db"
    opened = alarm_event()

    hook = RecordingHook()

    async def first_run():
        async with await Store.open(db, hook=hook) as store:
            return [
                await store.emit(opened),
                await store.emit(alarm_event(EventStatus.UPDATE, opened.event_id)),
            ]

    async def second_run():
        async with await Store.open(db, hook=hook) as store:
            assert [e.event_id for e in await store.open_events()] == [opened.event_id]
            return [
                await store.emit(alarm_event(EventStatus.CLOSED, opened.event_id)),
                await store.emit(alarm_event()),
            ]

    seqs = asyncio.run(first_run()) + asyncio.run(second_run())
    assert seqs == [1, 2, 3, 4]
    assert _rows(db, "SELECT seq, status FROM events ORDER BY seq") == [(3, "closed"), (4, "open")]
    # The hook saw every event change with its sequence number, inside the transaction.
    assert hook.events() == [(1, "open"), (2, "update"), (3, "closed"), (4, "open")]
    assert all(hook.in_transaction_flags)


def test_concurrent_commits_are_grouped_into_fewer_transactions(tmp_path):
    db = tmp_path / "g.db"

    hook = RecordingHook()

    async def main():
        async with await Store.open(db, hook=hook) as store:
            seqs = await asyncio.gather(
                *(store.emit(alarm_event(severity=Severity.WARNING)) for _ in range(50))
            )
            return seqs, store.commits

    seqs, commits = asyncio.run(main())
    assert sorted(seqs) == list(range(1, 51))
    assert commits < 50
    assert len(hook.seen) == commits
    assert sorted(seq for seq, _ in hook.events()) == list(range(1, 51))


def test_close_commits_what_is_queued(tmp_path):
    db = tmp_path / "g.db"

    async def main():
        store = await Store.open(db)
        pending = [asyncio.ensure_future(store.emit(alarm_event())) for _ in range(5)]
        await asyncio.sleep(0)
        await store.close()
        return await asyncio.gather(*pending)

    assert sorted(asyncio.run(main())) == [1, 2, 3, 4, 5]


def test_prune_dead_letters_keeps_the_newest(tmp_path):
    db = tmp_path / "g.db"

    async def main():
        async with await Store.open(db) as store:
            letters = [
                DeadLetter(
                    received_at=float(i), topic="t", sensor_id=None, reason=str(i), payload=b""
                )
                for i in range(10)
            ]
            await store.commit(Batch(dead_letters=letters))
            return await store.prune_dead_letters(3)

    assert asyncio.run(main()) == 7
    assert _rows(db, "SELECT reason FROM dead_letters ORDER BY id") == [("7",), ("8",), ("9",)]
    assert _rows(db, "SELECT value FROM counters WHERE name = 'dead_letters_total'") == [(10,)]


def test_a_failing_hook_aborts_the_whole_commit(tmp_path):
    db = tmp_path / "g.db"

    class FailingHook:
        async def in_transaction(self, db, written):
            raise RuntimeError("hook broke")

    async def main():
        async with await Store.open(db, hook=FailingHook()) as store:
            with pytest.raises(RuntimeError, match="hook broke"):
                await store.commit(
                    Batch(aggregates={("s", "LA", "N", 60): [1, 50.0, 50.0, 50.0, 1e5]})
                )

    asyncio.run(main())
    assert _rows(db, "SELECT count(*) FROM minute_aggregates") == [(0,)]


def test_operations_take_their_seqs_before_the_events_of_the_same_commit(tmp_path):
    db = tmp_path / "g.db"
    hook = RecordingHook()

    async def main():
        from edge.counters import reserve_seqs

        async with await Store.open(db, hook=hook) as store:
            op = asyncio.ensure_future(store.run(lambda conn: reserve_seqs(conn, 2)))
            event = asyncio.ensure_future(store.emit(alarm_event()))
            return await op, await event

    first_of_op, event_seq = asyncio.run(main())
    assert (first_of_op, event_seq) == (1, 3)
