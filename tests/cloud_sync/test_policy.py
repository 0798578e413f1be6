"""Eviction choice and backoff (pure), and a stateful model of the outbox (alarms popped first)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cloud_sync.config import OutboxConfig
from cloud_sync.outbox import Outbox
from cloud_sync.policy import (
    EVICTION_ORDER,
    PRIORITY,
    Candidate,
    backoff_delay,
    plan_eviction,
)
from edge.store import Store

classes = st.sampled_from(list(PRIORITY))
candidates = st.lists(
    st.builds(Candidate, st.integers(1, 10_000), classes, st.integers(1, 500), st.booleans()),
    max_size=60,
    unique_by=lambda c: c.seq,
)


@given(candidates, st.integers(0, 20_000))
def test_eviction_never_takes_an_alarm_while_routine_data_remains(cands, excess) -> None:
    chosen = plan_eviction(cands, excess)
    ids = {c.seq for c in chosen}
    left = [c for c in cands if c.seq not in ids]
    if any(c.data_class == "alarm" and not c.delivered for c in chosen):
        assert not [c for c in left if c.data_class != "alarm" or c.delivered]
    # Undelivered minute data goes oldest first.
    minute_taken = sorted(c.seq for c in chosen if c.data_class == "minute" and not c.delivered)
    minute_left = [c.seq for c in left if c.data_class == "minute" and not c.delivered]
    if minute_taken and minute_left:
        assert max(minute_taken) < min(minute_left)
    assert sum(c.size for c in chosen) >= min(excess, sum(c.size for c in cands))


@given(st.integers(0, 50), st.integers(0, 2**32))
def test_backoff_is_bounded(attempt, seed) -> None:
    delay = backoff_delay(attempt, 0.5, 30.0, random.Random(seed))
    assert 0.25 <= delay <= 30.0


def test_eviction_order_is_routine_first() -> None:
    assert EVICTION_ORDER[0] == "minute"
    assert EVICTION_ORDER[-1] == "alarm"


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
