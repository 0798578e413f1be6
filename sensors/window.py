"""Per-quantity window accumulators: what one window's readings reduce to.

An :class:`WindowAccumulator` holds the running sums of the current window for one reading
name, plus its flat-line run (for the stuck check). The monitor folds each reading into
it inline on the ingest hot path (see ``SensorMonitor.observe``), so the accumulator has
fixed slots and no per-reading methods; :meth:`WindowAccumulator.snapshot_and_reset` is called
once per window when the window is sealed into a :class:`SealedWindow`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sensors.rules import Aggregate, WindowStats

__all__ = ["Metric", "SealedWindow", "WindowAccumulator"]


class WindowAccumulator:
    """Per-quantity accumulator for the current window, plus flat-line tracking."""

    __slots__ = (
        "energy",
        "energy_on",
        "flags",
        "last",
        "n",
        "run_last",
        "run_n",
        "run_ref",
        "run_start",
        "seq",
        "tol",
        "total",
        "vmax",
        "vmin",
    )

    def __init__(self, *, energy_on: bool, tol: float) -> None:
        self.energy_on = energy_on
        self.tol = tol
        self.seq = 0  # every observed reading, for out-of-range recovery
        self.run_ref = math.nan
        self.run_start = 0.0
        self.run_last = 0.0
        self.run_n = 0
        self.n = 0
        self.total = 0.0
        self.energy = 0.0
        self.vmax = -math.inf
        self.vmin = math.inf
        self.last = math.nan
        self.flags: dict[str, int] = {}

    def snapshot_and_reset(self) -> WindowStats:
        """Return the window's statistics and start an empty window (the run carries on)."""
        stats = WindowStats(
            n=self.n,
            total=self.total,
            energy=self.energy,
            vmax=self.vmax,
            vmin=self.vmin,
            last=self.last,
            flags=tuple(sorted(self.flags.items())),
        )
        self.n = 0
        self.total = 0.0
        self.energy = 0.0
        self.vmax = -math.inf
        self.vmin = math.inf
        self.last = math.nan
        if self.flags:
            self.flags = {}
        return stats


@dataclass(frozen=True, slots=True)
class Metric:
    """How one profile quantity is computed from the sensor's readings."""

    aggregate: Aggregate
    reading: str
    inlet: str | None


@dataclass(frozen=True, slots=True)
class SealedWindow:
    """A closed window: its device-time bounds and each reading's statistics."""

    start: float
    end: float
    stats: Mapping[str, WindowStats]
