"""Minute aggregates of readings, and sound-level energy arithmetic (pure).

Per sensor, quantity, data flag and minute the gateway keeps count, min, max, the sum
(for the arithmetic mean) and, for sound levels, the energy sum Σ10^(L/10) (for Leq).
Minute accumulators merge associatively, which is what lets the store add a batch's
partial aggregate to the committed row with one UPSERT instead of writing each reading.

This is the one home of Leq: the sensor rules' windows, the minute records sent to the
cloud and the tests all use :func:`energy`, :func:`level_from_energy` and :func:`leq`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# [count, min, max, sum, energy_sum]; a list, not a dataclass: this is on the hot path.
MinuteAccumulator = list[float]
AggregateKey = tuple[str, str, str, int]  # (sensor_id, quantity, flag, minute start)


def new_accumulator(value: float, energy_on: bool) -> MinuteAccumulator:
    """Start a minute accumulator with one reading."""
    return [1, value, value, value, energy(value) if energy_on else 0.0]


def add_reading(acc: MinuteAccumulator, value: float, energy_on: bool) -> None:
    """Fold one reading into ``acc`` in place."""
    acc[0] += 1
    acc[1] = min(acc[1], value)
    acc[2] = max(acc[2], value)
    acc[3] += value
    if energy_on:
        acc[4] += 10.0 ** (value / 10.0)


def merge(a: MinuteAccumulator, b: MinuteAccumulator) -> MinuteAccumulator:
    """Combine two accumulators of the same bucket (what the store's UPSERT does)."""
    return [a[0] + b[0], min(a[1], b[1]), max(a[2], b[2]), a[3] + b[3], a[4] + b[4]]


def energy(level_db: float) -> float:
    """Relative sound energy of a level in dB: 10^(L/10)."""
    return float(10.0 ** (level_db / 10.0))


def level_from_energy(total_energy: float, n: float) -> float:
    """Equivalent continuous level (Leq) of ``n`` readings whose energies sum to this."""
    return 10.0 * math.log10(total_energy / n)


def leq(levels: Iterable[float]) -> float:
    """Leq of equally spaced sound levels in dB (energy average, not arithmetic mean).

    Raises ValueError when ``levels`` is empty, because Leq of nothing is undefined.
    """
    values = list(levels)
    if not values:
        raise ValueError("Leq of no readings is undefined")
    # Subtract the maximum before exponentiating so that 140 dB does not lose precision.
    top = max(values)
    total = math.fsum(energy(v - top) for v in values)
    return top + level_from_energy(total, len(values))
