"""The commit unit: everything the store writes in one transaction (no I/O).

The sensor side folds received messages into a :class:`Batch` (minute aggregates, dead
letters, per-sensor activity, events); the store commits it whole, and only then are the
messages acknowledged to the broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.aggregate import AggregateKey, MinuteAccumulator, merge
from edge.events import Event

QualityKey = tuple[str, str, int]
"""(sensor_id, quantity, minute start) of a :attr:`Batch.quality` counter pair."""
REFUSED, UNTRUSTED = 0, 1
"""Indexes into a quality counter pair: values refused (decoding, range, device time),
readings received while the clock was not trusted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A message, or part of one, that could not be used, and why."""

    received_at: float
    topic: str
    sensor_id: str | None
    reason: str
    payload: bytes


@dataclass(slots=True, kw_only=True)
class SensorActivity:
    """What one sensor did within a batch."""

    last_seen: float = 0.0
    readings: int = 0
    dead_letters: int = 0
    last_values: dict[str, tuple[float, str, float]] = field(default_factory=dict)
    """quantity → (value, flag, timestamp) of the newest reading in the batch."""


@dataclass(slots=True, kw_only=True)
class Batch:
    """Everything to commit in one transaction."""

    aggregates: dict[AggregateKey, MinuteAccumulator] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    activity: dict[str, SensorActivity] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    messages: int = 0
    quality: dict[QualityKey, list[int]] = field(default_factory=dict)
    """Per sensor, quantity and minute: [values refused, readings received while the clock
    was not trusted]. Only minutes with either are present (rare: off the hot path)."""

    def count_quality(self, key: QualityKey, index: int, n: int = 1) -> None:
        """Add ``n`` to one quality counter (:data:`REFUSED` or :data:`UNTRUSTED`)."""
        pair = self.quality.get(key)
        if pair is None:
            pair = self.quality[key] = [0, 0]
        pair[index] += n

    def __bool__(self) -> bool:
        return bool(self.messages or self.events or self.dead_letters)

    def absorb(self, later: Batch) -> None:
        """Fold a later batch into this one (to retry a commit that failed)."""
        for key, acc in later.aggregates.items():
            have = self.aggregates.get(key)
            self.aggregates[key] = acc if have is None else merge(have, acc)
        self.dead_letters.extend(later.dead_letters)
        for sensor_id, new in later.activity.items():
            old = self.activity.get(sensor_id)
            if old is None:
                self.activity[sensor_id] = new
                continue
            old.last_seen = max(old.last_seen, new.last_seen)
            old.readings += new.readings
            old.dead_letters += new.dead_letters
            old.last_values.update(new.last_values)
        self.events.extend(later.events)
        self.messages += later.messages
        for spot, (refused, untrusted) in later.quality.items():
            self.count_quality(spot, REFUSED, refused)
            self.count_quality(spot, UNTRUSTED, untrusted)
