"""The evidence quota: confirmed snapshots go first; unconfirmed ones only when nothing else can."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vision.config import EvidenceConfig
from vision.evidence import EvidenceStore, StoredSnapshot, plan_quota

snapshots = st.lists(
    st.builds(
        StoredSnapshot,
        sha256=st.text("0123456789abcdef", min_size=4, max_size=4),
        size=st.integers(1, 1000),
        mtime=st.floats(0, 1e6),
        confirmed=st.booleans(),
    ),
    max_size=25,
    unique_by=lambda s: s.sha256,
)


@settings(max_examples=500, deadline=None)
@given(
    files=snapshots,
    quota=st.integers(0, 10_000),
    lent=st.one_of(st.none(), st.integers(0, 5000)),
    keep_index=st.integers(0, 30),
)
def test_plan_quota_rules(files, quota, lent, keep_index):
    keep = files[keep_index].sha256 if files and keep_index < len(files) else None
    plan = plan_quota(files, quota, keep=keep, lent=lent)
    gone = {f.sha256 for f in plan.confirmed + plan.unconfirmed}
    left = [f for f in files if f.sha256 not in gone]
    total = sum(f.size for f in left)
    assert keep not in gone
    assert all(f.confirmed for f in plan.confirmed)
    assert not any(f.confirmed for f in plan.unconfirmed)
    # an unconfirmed snapshot goes only once no deletable confirmed one is left ...
    if plan.unconfirmed:
        assert not any(f.confirmed and f.sha256 != keep for f in left)
        # ... and only while what is left exceeds the quota plus what the outbox lent
        assert lent is not None
        assert total + plan.unconfirmed[-1].size > quota + lent
    # with room unknown (None), nothing unconfirmed is ever deleted
    if lent is None:
        assert not plan.unconfirmed
    # it deletes no more than needed: without its last choice it would still be over
    chosen = plan.confirmed + plan.unconfirmed
    if chosen and not plan.unconfirmed:
        assert total + chosen[-1].size > quota
    # it gets under quota (+ loan) unless only undeletable snapshots are left
    deletable_left = [f for f in left if f.sha256 != keep and (f.confirmed or lent is not None)]
    if deletable_left:
        assert total <= quota + (lent or 0)
    # oldest first within each kind
    for picked in (plan.confirmed, plan.unconfirmed):
        ages = [(f.mtime, f.sha256) for f in picked]
        assert ages == sorted(ages)
        if picked:
            kind = picked[0].confirmed
            newest = ages[-1]
            assert not any(
                f.confirmed == kind and f.sha256 != keep and (f.mtime, f.sha256) < newest
                for f in left
            )


def _img(seed):
    return np.random.default_rng(seed).integers(0, 255, (240, 320, 3), dtype=np.uint8)


def _save(store, n):
    snap = store.save(_img(n), [], highlight=None, caption=str(n))
    os.utime(snap.path, (1000 + n, 1000 + n))
    return snap


def test_unconfirmed_snapshots_stay_while_the_outbox_lends_room(tmp_path):
    one = _save(EvidenceStore(EvidenceConfig(), tmp_path / "probe"), 0).size
    quota_mb = one * 2.5 / 2**20  # room for two
    asked: list[int] = []
    lost: list[list[str]] = []
    room = {"bytes": 10 * one}

    def borrow(want: int) -> int:
        asked.append(want)
        return min(want, room["bytes"])

    confirmed: set[str] = set()
    store = EvidenceStore(
        EvidenceConfig(quota_mb=quota_mb),
        tmp_path / "ev",
        is_delivered=confirmed.__contains__,
        borrow=borrow,
        on_lost=lambda snaps: lost.append([str(s["sha256"]) for s in snaps]),
    )
    snaps = [_save(store, n) for n in range(4)]
    # four unconfirmed in room for two: the outbox lent the rest, nothing deleted
    assert all(s.path.exists() for s in snaps)
    assert asked
    assert asked[-1] > 0
    assert store.lent == asked[-1]
    # the receiver confirmed the oldest two: they go first, and the loan shrinks
    confirmed.update({snaps[0].sha256, snaps[1].sha256})
    fifth = _save(store, 4)
    assert not any(s.path.exists() for s in snaps[:2])
    assert all(s.path.exists() for s in [*snaps[2:], fifth])
    assert not lost
    # the outbox has no more room (only alarms left): the oldest unconfirmed must go, loudly
    room["bytes"] = 0
    _save(store, 5)
    assert lost == [[snaps[2].sha256, snaps[3].sha256]]
    assert not snaps[2].path.exists()


def test_no_answer_from_the_outbox_deletes_nothing_unconfirmed(tmp_path):
    one = _save(EvidenceStore(EvidenceConfig(), tmp_path / "probe"), 0).size
    store = EvidenceStore(
        EvidenceConfig(quota_mb=one * 1.5 / 2**20),
        tmp_path / "ev",
        borrow=lambda _want: None,
        on_lost=lambda _snaps: (_ for _ in ()).throw(AssertionError("nothing may be lost")),
    )
    snaps = [_save(store, n) for n in range(3)]
    assert all(s.path.exists() for s in snaps)
