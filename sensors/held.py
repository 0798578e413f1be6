"""Readings held back from judgement while the wall clock is not trusted (no I/O).

Before the first NTP sync a Pi's wall clock may be days off (see ``edge.clock_watch``).
Readings received then are stored and acknowledged as always, but judging them would
date an exceedance wrongly, so the batch builder hands their monitor calls here instead,
with the monotonic time of receipt. Once the clock is synced, :meth:`HeldReadings.release`
replays them to their monitors in the order they arrived, each with its corrected time:
a reading without device time is judged at its corrected receipt time; one with device
time keeps it, if that passes the skew rules (``ingest.max_skew_s`` /
``ingest.max_lateness_s``) against the corrected receipt time.

The buffer is bounded: beyond ``limit`` the oldest held reading is dropped from judgement
(it stays stored) and counted in :attr:`HeldReadings.not_judged`, which status and the
``clock_synchronised`` audit record show.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Judge(Protocol):
    """The two monitor calls a reading can make (``sensors.batch_builder.ReadingMonitor``)."""

    def observe(self, quantity: str, value: float, flag: str, ts: float) -> None:
        """One stored reading."""
        ...

    def out_of_range(self, quantity: str, value: float, ts: float) -> None:
        """One calibrated value outside the physical range."""
        ...


@dataclass(frozen=True, slots=True)
class HeldReading:
    """One monitor call waiting for a trusted clock."""

    mono: float
    """Monotonic time of receipt."""
    wall: float
    """Wall time of receipt, as the untrusted clock said."""
    monitor: Judge
    quantity: str
    value: float
    flag: str | None
    """The data flag; None: an out-of-range value (``out_of_range``, not ``observe``)."""
    device_ts: float | None
    """The device's own time stamp (None: the reading is dated by its receipt)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """What one release did."""

    replayed: int
    skew_refused: int
    """Device times outside the skew rules against the corrected receipt time: stored,
    never judged."""
    not_judged: int
    """Dropped from the full buffer while the clock was not trusted (total of this run)."""
    first_received: float | None
    last_received: float | None
    """Corrected receipt times of the first and last held reading (None: none held)."""
    offset_s: float | None
    """Corrected minus recorded receipt time of the last held reading: how far the stored
    minutes of readings without device time lie off."""


class HeldReadings:
    """A bounded, ordered buffer of monitor calls (used under the ingest's lock)."""

    def __init__(self, limit: int, *, max_skew_s: float, max_lateness_s: float) -> None:
        self._held: deque[HeldReading] = deque()
        self._limit = limit
        self._max_skew = max_skew_s
        self._max_lateness = max_lateness_s
        self.not_judged = 0

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, reading: HeldReading) -> None:
        """Keep one call; drop (and count) the oldest beyond the limit."""
        if self._limit <= 0:
            self.not_judged += 1
            return
        if len(self._held) >= self._limit:
            self._held.popleft()
            self.not_judged += 1
        self._held.append(reading)

    def release(self, corrected: Callable[[float, float], float]) -> Release:
        """Replay every held call in arrival order with corrected times; empty the buffer.

        ``corrected(wall, mono)`` is the true wall time of a receipt
        (:meth:`edge.clock_watch.ClockWatch.corrected`).
        """
        replayed = refused = 0
        first: float | None = None
        last: float | None = None
        offset: float | None = None
        while self._held:
            held = self._held.popleft()
            received = corrected(held.wall, held.mono)
            if first is None:
                first = received
            last, offset = received, received - held.wall
            ts = received
            if held.device_ts is not None:
                ts = held.device_ts
                if not received - self._max_lateness <= ts <= received + self._max_skew:
                    refused += 1
                    continue
            if held.flag is None:
                held.monitor.out_of_range(held.quantity, held.value, ts)
            else:
                held.monitor.observe(held.quantity, held.value, held.flag, ts)
            replayed += 1
        return Release(
            replayed=replayed,
            skew_refused=refused,
            not_judged=self.not_judged,
            first_received=first,
            last_received=last,
            offset_s=None if offset is None else round(offset, 6),
        )
