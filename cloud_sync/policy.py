"""Delivery policy as pure functions: priorities, eviction choice, backoff, seq ranges."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

PRIORITY: dict[str, int] = {"alarm": 0, "event": 1, "status": 2, "minute": 3}
"""Send order after a reconnect: alarms first, routine minute data last."""

EVICTION_ORDER: tuple[str, ...] = ("minute", "status", "event", "alarm")
"""Which undelivered data goes first when the outbox is over quota."""


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
    return (EVICTION_ORDER.index(candidate.data_class), candidate.seq)


def plan_eviction(candidates: Iterable[Candidate], excess: int) -> list[Candidate]:
    """Choose rows to delete so that at least ``excess`` bytes are freed.

    Delivered rows go first, then undelivered minute data, status, events and alarms last,
    each oldest first. So an alarm is only chosen once no routine row is left.
    """
    chosen: list[Candidate] = []
    freed = 0
    for candidate in sorted(candidates, key=eviction_rank):
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


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): U(0, min(max, i·2^n))."""
    ceiling = min(max_s, initial_s * 2 ** min(attempt, 30))
    return rng.uniform(initial_s / 2, max(ceiling, initial_s / 2))
