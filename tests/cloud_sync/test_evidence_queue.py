"""The gateway's evidence queue in a real SQLite store: queued with the event, lent room, lost loudly."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from cloud_sync.config import OutboxConfig
from cloud_sync.evidence_budget import EvidenceBudget, lend
from cloud_sync.evidence_queue import claim, confirm, retry_later
from cloud_sync.outbox import Outbox, classes_of
from cloud_sync.outbox_view import evidence_delivered
from edge.events import Event, EventStatus, Severity
from edge.store import Store

from .conftest import alarm

SHA = "5a" * 32


def _violation(sha: str = SHA, path: str = "/nowhere.jpg") -> Event:
    return Event(
        kind="violation",
        source="kitchen-1",
        severity=Severity.INFO,
        status=EventStatus.OPEN,
        started_at=time.time(),
        detail={"snapshot_sha256": sha, "snapshot_path": path},
    )


def _rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, args).fetchall()


def _outbox(quota: int = 1 << 30) -> Outbox:
    return Outbox(
        gateway_id="gw-1",
        uplinks={"cloud": classes_of(None)},
        settings=OutboxConfig(quota_bytes=quota),
    )


def test_a_snapshot_is_queued_in_the_commit_of_its_event_and_delivered_only_when_confirmed(
    tmp_path,
):
    db = tmp_path / "gw.db"

    async def main() -> None:
        outbox = _outbox()
        async with await Store.open(db, hook=outbox) as store:
            await store.emit(_violation())
            assert _rows(db, "SELECT sha256, attempts FROM evidence_uploads") == [(SHA, 0)]
            upload = await store.run(lambda c: claim(c, time.time()))
            assert upload is not None
            assert (upload.sha256, upload.attempts) == (SHA, 1)
            # another uplink sending it now does not get it
            assert await store.run(lambda c: claim(c, time.time(), {SHA})) is None
            assert not evidence_delivered(db)(SHA)
            delay = await store.run(lambda c: retry_later(c, upload, time.time(), "no receipt"))
            assert delay > 0
            await store.run(lambda c: confirm(c, SHA, "regulator bureau", time.time()))
            # delivered only now; the event record's own delivery never counted
            assert evidence_delivered(db)(SHA)
            assert await store.run(lambda c: claim(c, time.time() + 10_000)) is None

    asyncio.run(main())


def test_without_an_uplink_for_events_nothing_is_queued(tmp_path):
    db = tmp_path / "gw.db"

    async def main() -> None:
        outbox = Outbox(gateway_id="gw-1", uplinks={"hj": classes_of(["minute"])})
        async with await Store.open(db, hook=outbox) as store:
            await store.emit(_violation())
        assert _rows(db, "SELECT count(*) FROM evidence_uploads") == [(0,)]

    asyncio.run(main())


def test_the_outbox_lends_minute_data_room_before_evidence_goes_and_keeps_alarms(tmp_path):
    db = tmp_path / "gw.db"

    async def main() -> None:
        outbox = _outbox(quota=200_000)
        async with await Store.open(db, hook=outbox) as store:
            for n in range(20):
                await store.emit(alarm(n, pad=200))
            minutes = [("minute", {"type": "minute", "n": n, "pad": "m" * 500}) for n in range(200)]

            async def put(c):
                await outbox.put_bodies(c, minutes, time.time(), True)

            await store.run(put)
            alarms_before = _rows(db, "SELECT count(*) FROM outbox WHERE data_class = 'alarm'")
            # evidence wants more than the whole outbox: it gets all but the alarms' share
            loan = await store.run(lambda c: lend(c, outbox, 10**9, time.time(), True))
            assert 0 < loan < 200_000
            # no minute data is left: all of it made room (only alarms and the gap record stay)
            assert _rows(db, "SELECT count(*) FROM outbox WHERE data_class = 'minute'") == [(0,)]
            kept = _rows(db, "SELECT coalesce(sum(size), 0) FROM outbox WHERE data_class = 'alarm'")
            assert loan == 200_000 - kept[0][0]
            # minute data was evicted with a gap record; every alarm is still there
            assert _rows(db, "SELECT count(*) FROM outbox WHERE data_class = 'alarm'") == (
                alarms_before
            )
            gaps = [
                json.loads(b)
                for (b,) in _rows(db, "SELECT body FROM outbox WHERE data_class = 'event'")
            ]
            assert any(g.get("type") == "gap" and g["counts"].get("minute") for g in gaps)
            # given back when evidence fits again
            assert await store.run(lambda c: lend(c, outbox, 0, time.time(), True)) == 0
            assert outbox.evidence_loan == 0

    asyncio.run(main())


def test_a_snapshot_deleted_unconfirmed_is_recorded_and_no_longer_sent(tmp_path):
    db = tmp_path / "gw.db"

    async def main() -> None:
        outbox = _outbox()
        async with await Store.open(db, hook=outbox) as store:
            await store.emit(_violation())
            budget = EvidenceBudget(store, outbox, asyncio.get_running_loop())
            # the evidence quota runs in a worker thread; the budget answers from the loop
            granted = await asyncio.to_thread(budget.borrow, 1000)
            assert granted == 1000
            await asyncio.to_thread(budget.lost, [{"sha256": SHA, "size": 1234}])
            assert await store.run(lambda c: claim(c, time.time())) is None
        records = [
            json.loads(b)
            for (b,) in _rows(db, "SELECT body FROM outbox WHERE data_class = 'event'")
        ]
        lost = [r for r in records if r.get("kind") == "evidence_lost"]
        assert [r["detail"]["snapshots"] for r in lost] == [[SHA]]
        assert _rows(db, "SELECT lost_at IS NOT NULL FROM evidence_uploads") == [(1,)]

    asyncio.run(main())
