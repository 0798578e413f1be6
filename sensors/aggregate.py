"""Minute aggregates of readings (pure).

Per sensor, quantity, data flag and minute the gateway keeps count, min, max, the sum
(for the arithmetic mean) and, for sound levels, the energy sum Σ10^(L/10) (for Leq).
Accumulators merge associatively, which is what lets the store add a batch's partial
aggregate to the committed row with one UPSERT instead of writing each reading.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# [count, min, max, sum, energy_sum]; a list, not a dataclass: this is on the hot path.
Accumulator = list[float]
AggregateKey = tuple[str, str, str, int]  # (sensor_id, quantity, flag, minute_start)


def new_accumulator(value: float, energy: bool) -> Accumulator:
    """Start an accumulator with one reading."""
    return [1, value, value, value, 10.0 ** (value / 10.0) if energy else 0.0]


def add_reading(acc: Accumulator, value: float, energy: bool) -> None:
    """Fold one reading into ``acc`` in place."""
    acc[0] += 1
    acc[1] = min(acc[1], value)
    acc[2] = max(acc[2], value)
    acc[3] += value
    if energy:
        acc[4] += 10.0 ** (value / 10.0)


def merge(a: Accumulator, b: Accumulator) -> Accumulator:
    """Combine two accumulators of the same bucket (what the store's UPSERT does)."""
    return [a[0] + b[0], min(a[1], b[1]), max(a[2], b[2]), a[3] + b[3], a[4] + b[4]]


def mean(acc: Accumulator) -> float:
    """Arithmetic mean."""
    return acc[3] / acc[0]


def leq_from_energy(energy_sum: float, count: float) -> float:
    """Equivalent continuous level: 10·log10 of the mean sound energy."""
    return 10.0 * math.log10(energy_sum / count)


def leq(levels: Iterable[float]) -> float:
    """Leq of a sequence of sound levels in dB (energy average, not arithmetic mean)."""
    values = list(levels)
    if not values:
        raise ValueError("Leq of no levels")
    # Subtract the maximum before exponentiating so that 140 dB does not lose precision.
    top = max(values)
    energy = math.fsum(10.0 ** ((v - top) / 10.0) for v in values)
    return top + 10.0 * math.log10(energy / len(values))


def minute_start(timestamp: float) -> int:
    """Start of the minute containing ``timestamp`` (Unix seconds)."""
    return int(timestamp // 60) * 60
