"""The outbox as the store's transaction hook: event records ride in the same commit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing

from helpers import alarm_event

from cloud_sync.outbox import Outbox
from edge.events import EventStatus, Severity
from edge.store import Store


def _rows(db, sql):
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def test_every_event_change_becomes_an_outbox_record_with_its_seq(tmp_path):
    db = tmp_path / "g.db"
    opened = alarm_event()

    async def run(events):
        async with await Store.open(db, hook=Outbox(gateway_id="gw")) as store:
            return [await store.emit(e) for e in events]

    seqs = asyncio.run(run([opened, alarm_event(EventStatus.UPDATE, opened.event_id)]))
    seqs += asyncio.run(run([alarm_event(EventStatus.CLOSED, opened.event_id), alarm_event()]))
    assert seqs == [1, 2, 3, 4]
    outbox = _rows(db, "SELECT seq, data_class, body FROM outbox ORDER BY seq")
    assert [row[0] for row in outbox] == [1, 2, 3, 4]
    assert {row[1] for row in outbox} == {"alarm"}
    assert [json.loads(row[2])["status"] for row in outbox] == ["open", "update", "closed", "open"]
    # The chain links each record to the one before it.
    chain = _rows(db, "SELECT prev, hash FROM outbox ORDER BY seq")
    assert all(chain[i][0] == chain[i - 1][1] for i in range(1, len(chain)))


def test_warnings_travel_as_events_not_alarms(tmp_path):
    db = tmp_path / "g.db"

    async def main():
        async with await Store.open(db, hook=Outbox(gateway_id="gw")) as store:
            await asyncio.gather(
                *(store.emit(alarm_event(severity=Severity.WARNING)) for _ in range(50))
            )

    asyncio.run(main())
    assert _rows(db, "SELECT count(*), min(data_class), max(data_class) FROM outbox") == [
        (50, "event", "event")
    ]
