"""Eviction choice and backoff (pure), and a stateful model of the outbox (alarms popped first)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pydantic import ValidationError

from cloud_sync.config import OutboxConfig
from cloud_sync.outbox import Outbox
from cloud_sync.policy import (
    EVICTION_ORDER,
    PRIORITY,
    PROTECTED,
    TTL_FLOOR_S,
    Candidate,
    backoff_delay,
    plan_eviction,
)
from edge.events import Event, EventStatus, Severity
from edge.store import Store

classes = st.sampled_from(list(PRIORITY))
candidates = st.lists(
    st.builds(Candidate, st.integers(1, 10_000), classes, st.integers(1, 500), st.booleans()),
    max_size=60,
    unique_by=lambda c: c.seq,
)


@given(candidates, st.integers(0, 20_000))
def test_eviction_never_takes_an_undelivered_alarm_or_event(cands, excess) -> None:
    chosen = plan_eviction(cands, excess)
    ids = {c.seq for c in chosen}
    left = [c for c in cands if c.seq not in ids]
    assert not [c for c in chosen if c.data_class in PROTECTED and not c.delivered]
    # Undelivered minute data goes oldest first.
    minute_taken = sorted(c.seq for c in chosen if c.data_class == "minute" and not c.delivered)
    minute_left = [c.seq for c in left if c.data_class == "minute" and not c.delivered]
    if minute_taken and minute_left:
        assert max(minute_taken) < min(minute_left)
    evictable = [c for c in cands if c.delivered or c.data_class not in PROTECTED]
    assert sum(c.size for c in chosen) >= min(excess, sum(c.size for c in evictable))


@given(st.integers(0, 50), st.integers(0, 2**32))
def test_backoff_is_bounded(attempt, seed) -> None:
    delay = backoff_delay(attempt, 0.5, 30.0, random.Random(seed))
    assert 0.25 <= delay <= 30.0


def test_eviction_order_is_routine_only() -> None:
    assert EVICTION_ORDER == ("minute", "status")
    assert PROTECTED.isdisjoint(EVICTION_ORDER)


@pytest.mark.parametrize("data_class", sorted(TTL_FLOOR_S))
def test_a_ttl_below_the_regulator_floor_is_refused(data_class) -> None:
    floor = TTL_FLOOR_S[data_class]
    assert OutboxConfig(ttl_s={data_class: floor}).ttl_s[data_class] == floor
    with pytest.raises(ValidationError, match="below the regulator floor"):
        OutboxConfig(ttl_s={data_class: floor - 1})


def test_an_outbox_of_alarms_over_its_quota_keeps_every_alarm(tmp_path: Path) -> None:
    asyncio.run(_alarms_over_quota(tmp_path))


async def _alarms_over_quota(tmp_path: Path) -> None:
    outbox = Outbox(gateway_id="gw", settings=OutboxConfig(quota_bytes=4096))
    async with await Store.open(tmp_path / "g.db", hook=outbox) as store:
        for n in range(60):
            await store.emit(
                Event(
                    kind="exceedance",
                    source="noise-01",
                    severity=Severity.ALARM,
                    status=EventStatus.OPEN,
                    started_at=float(n),
                    detail={"n": n, "pad": "x" * 200},
                )
            )

        async def rows(db):
            async with db.execute("SELECT data_class, body FROM outbox") as cursor:
                return await cursor.fetchall()

        stored = await store.run(rows)
    assert len(stored) == 60
    assert {row[0] for row in stored} == {"alarm"}
    assert outbox.evicted_total == 0


class OutboxMachine(RuleBasedStateMachine):
    """put/pop/done/evict against a real SQLite outbox, compared with a plain model."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.loop = asyncio.new_event_loop()
        path = Path(tempfile.mkdtemp()) / "o.db"
        self.outbox = Outbox(
            gateway_id="g",
            uplinks={"u": frozenset(PRIORITY)},
            settings=OutboxConfig(quota_bytes=20_000, minute_close_s=0),
        )
        self.store = self.loop.run_until_complete(Store.open(path, hook=self.outbox))
        self.pending: dict[int, str] = {}  # model: seq → class, not yet delivered
        self.gone: set[int] = set()

    def teardown(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()

    def _run(self, op):
        return self.loop.run_until_complete(self.store.run(op))

    @rule(cls=classes, n=st.integers(1, 30), size=st.integers(10, 400))
    def put(self, cls, n, size) -> None:
        body = {"type": "t", "pad": "x" * size}

        async def op(db):
            return await self.outbox.put_bodies(db, [(cls, body)] * n, time.time(), None)

        for seq in self._run(op):
            self.pending[seq] = cls

    @rule(limit=st.integers(1, 40), ack=st.booleans())
    def pop_and_maybe_done(self, limit, ack) -> None:
        async def op(db):
            return await self.outbox.pop(db, "u", limit)

        records = self._run(op)
        ranks = [PRIORITY[r.data_class] for r in records]
        assert ranks == sorted(ranks)  # alarms first
        if ack and records:

            async def done(db):
                await self.outbox.done(db, "u", [r.seq for r in records], time.time())

            self._run(done)
            for r in records:
                self.pending.pop(r.seq, None)

    @invariant()
    def no_alarm_evicted_while_routine_pending(self) -> None:
        async def op(db):
            async with db.execute(
                "SELECT p.seq, o.data_class FROM outbox_pending p JOIN outbox o USING (seq)"
            ) as cursor:
                return dict(await cursor.fetchall())

        actual = self._run(op)
        evicted = {s: c for s, c in self.pending.items() if s not in actual}
        gap_records = {s for s, c in actual.items() if s not in self.pending}
        # Anything the store holds that the model does not is a gap record it appended.
        for seq in gap_records:
            self.pending[seq] = actual[seq]
        if any(c == "alarm" for c in evicted.values()):
            assert not [c for c in actual.values() if c in {"minute", "status"}]
        for seq in evicted:
            self.pending.pop(seq)


OutboxMachine.TestCase.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)
TestOutbox = OutboxMachine.TestCase
