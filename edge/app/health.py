"""What /healthz and the commit metrics know: the ingest's commits, a loop heartbeat.

The ingest's committer is wrapped (:class:`CommitWatch`) rather than instrumented: once
per commit (not per message) it times the commit, notes whether it succeeded and counts
the committed dead letters by reason class, so the ingest's hot path stays as it is. A
heartbeat task (:func:`heartbeat`) stamps the time once a second; a stamp older than
``loop_stale_s`` means the event loop is stuck. :func:`verdict` turns both, with the
broker session and the store's state, into the reasons the gateway is unhealthy.

These values are written on the event loop and read by the metrics server's thread: each
is one attribute (a float, an int, a dict entry), which the GIL reads whole.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from edge.batch import Batch
from edge.waits import wait_any

HEARTBEAT_S = 1.0
COMMIT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the commit duration histogram (an SD card's fsync: ms to seconds)."""

DEAD_LETTER_REASONS = (
    "unrouted",
    "too_large",
    "malformed",
    "device_time",
    "out_of_range",
    "internal",
)
"""The reason classes of dead letters (a bounded label set; the reason text is not)."""


def reason_class(reason: str) -> str:
    """The class of a dead letter's reason text (one of :data:`DEAD_LETTER_REASONS`).

    Follows the wording of ``sensors.batch_builder``: a topic without a sensor, an
    oversized payload, a refused device time, a screening bug, values that all fell outside
    their physical range; anything else is a payload that did not decode (wholly or partly).
    """
    if reason.startswith("no sensor is configured"):
        return "unrouted"
    if reason.startswith("payload of ") and reason.endswith("-byte limit"):
        return "too_large"
    if reason.startswith("device time "):
        return "device_time"
    if reason.startswith("internal error:"):
        return "internal"
    problems = reason.split("; ")
    if all("outside the physical range" in problem for problem in problems):
        return "out_of_range"
    return "malformed"


@dataclass
class CommitWatch:
    """Wraps the ingest's committer; keeps what the metrics and /healthz say about commits."""

    commit: Callable[[Batch], Awaitable[object]]
    successes: int = 0
    failures: int = 0
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_failure: str = ""
    seconds_total: float = 0.0
    dead_letters: Counter[str] = field(default_factory=Counter)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_BUCKETS_S) + 1))
    """Commits per duration bucket (not cumulative; the last one is above every bound)."""

    async def __call__(self, batch: Batch) -> object:
        """Commit ``batch`` through the wrapped committer; note how it went."""
        started = time.perf_counter()
        try:
            result = await self.commit(batch)
        except Exception as exc:
            self.failures += 1
            self.last_failure_at = time.time()
            self.last_failure = f"{type(exc).__name__}: {exc}"[:300]
            raise
        elapsed = time.perf_counter() - started
        self.seconds_total += elapsed
        self.buckets[bisect.bisect_left(COMMIT_BUCKETS_S, elapsed)] += 1
        for letter in batch.dead_letters:
            self.dead_letters[reason_class(letter.reason)] += 1
        self.successes += 1
        self.last_success_at = time.time()
        return result

    @property
    def failing(self) -> bool:
        """Whether the latest commit attempt failed (no success since the last failure)."""
        if self.last_failure_at is None:
            return False
        return self.last_success_at is None or self.last_failure_at >= self.last_success_at


@dataclass
class Heartbeat:
    """The event loop's last sign of life (``time.monotonic()``)."""

    beat_at: float = field(default_factory=time.monotonic)

    def age(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self.beat_at


async def heartbeat(beat: Heartbeat, stop: asyncio.Event) -> None:
    """Stamp ``beat`` once a second until ``stop`` is set."""
    while not stop.is_set():
        beat.beat_at = time.monotonic()
        await wait_any(stop, at_most=HEARTBEAT_S)


def verdict(
    *,
    broker_connected: bool,
    commits: CommitWatch,
    store_lost: BaseException | None,
    loop_age_s: float,
    loop_stale_s: float,
) -> list[str]:
    """Why the gateway is unhealthy, one reason a line (empty: healthy)."""
    reasons: list[str] = []
    if not broker_connected:
        reasons.append("broker session is down: sensor messages are not being received")
    if store_lost is not None:
        reasons.append("database file was deleted or replaced: commits no longer reach it")
    elif commits.failing:
        reasons.append(
            f"the last commit failed ({commits.failures} failures): {commits.last_failure}"
        )
    if loop_age_s > loop_stale_s:
        reasons.append(
            f"event loop unresponsive: last heartbeat {loop_age_s:.1f} s ago "
            f"(limit {loop_stale_s:g} s)"
        )
    return reasons
