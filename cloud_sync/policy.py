"""Delivery policy as pure functions: priorities, eviction choice, backoff, seq ranges."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PRIORITY: dict[str, int] = {"alarm": 0, "event": 1, "status": 2, "minute": 3}
"""Send order after a reconnect: alarms first, routine minute data last."""

EVICTION_ORDER: tuple[str, ...] = ("minute", "status")
"""Which undelivered data the quota may evict, in this order. Alarms and events are never
evicted by the quota: what the regulator must see outranks the disk budget."""

PROTECTED: frozenset[str] = frozenset({"alarm", "event"})
"""Undelivered classes the quota never evicts."""

TTL_FLOOR_S: dict[str, float] = {
    "alarm": 365 * 86400.0,
    "event": 365 * 86400.0,
    "minute": 7 * 86400.0,
    "status": 86400.0,
}
"""Regulator minimums: an undelivered record is kept at least this long whatever the
config says (a site cannot shorten the TTL to make an alarm expire before the link is up)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An outbox row that could be evicted."""

    seq: int
    data_class: str
    size: int
    delivered: bool


def eviction_rank(candidate: Candidate) -> tuple[int, int]:
    """Sort key: delivered rows first (losing them loses nothing), then by class, oldest first."""
    if candidate.delivered:
        return (-1, candidate.seq)
    if candidate.data_class not in EVICTION_ORDER:
        return (len(EVICTION_ORDER), candidate.seq)
    return (EVICTION_ORDER.index(candidate.data_class), candidate.seq)


def plan_eviction(candidates: Iterable[Candidate], excess: int) -> list[Candidate]:
    """Choose rows to delete so that at least ``excess`` bytes are freed.

    Delivered rows go first, then undelivered minute data and status, each oldest first.
    Undelivered alarms and events are never chosen (:data:`PROTECTED`), even if that leaves
    the outbox over its quota.
    """
    chosen: list[Candidate] = []
    freed = 0
    evictable = [c for c in candidates if c.delivered or c.data_class not in PROTECTED]
    for candidate in sorted(evictable, key=eviction_rank):
        if freed >= excess:
            break
        chosen.append(candidate)
        freed += candidate.size
    return chosen


def seq_runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse sequence numbers into inclusive runs: [1,2,3,7] → [(1,3),(7,7)]."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def gap_body(
    reason: str, lost: Sequence[Candidate], meta: Mapping[int, tuple[str, str, float]]
) -> dict[str, Any]:
    """The gap record for evicted undelivered rows: what was lost, by class, and the chain
    links around each run of seqs (``meta``: seq → prev hash, own hash, created_at)."""
    counts: dict[str, int] = {}
    for candidate in lost:
        counts[candidate.data_class] = counts.get(candidate.data_class, 0) + 1
    ranges = [
        {"first_seq": first, "last_seq": last, "prev": meta[first][0], "last_hash": meta[last][1]}
        for first, last in seq_runs(meta)
    ]
    created = [m[2] for m in meta.values()]
    return {
        "type": "gap",
        "reason": reason,
        "counts": counts,
        "records": len(lost),
        "from_created_at": min(created),
        "to_created_at": max(created),
        "ranges": ranges,
    }


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): U(0, min(max, i·2^n))."""
    ceiling = min(max_s, initial_s * 2 ** min(attempt, 30))
    return rng.uniform(initial_s / 2, max(ceiling, initial_s / 2))
