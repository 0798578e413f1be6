"""How the store's writer turns batches into rows (inside its transaction; no commit here).

Minute aggregates are UPSERTed as deltas, dead letters appended, per-sensor state merged
and events given the gateway's next sequence numbers. Only :mod:`edge.store`'s single
writer calls these.

An event is written as JSON can carry it: a NaN or infinity in its detail (a monitor's
empty window, an overflowing calibrated value) becomes null, because the outbox would
refuse the record, fail the commit, and the batch holding it would be retried forever.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import aiosqlite

from edge.aggregate import MinuteAccumulator, merge
from edge.batch import Batch
from edge.counters import bump_counter, reserve_seqs
from edge.events import Event

log = logging.getLogger(__name__)

UPSERT_AGGREGATE = """
INSERT INTO minute_aggregates
    (sensor_id, quantity, flag, minute, count, min_value, max_value, sum_value, energy_sum)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sensor_id, quantity, flag, minute) DO UPDATE SET
    count = count + excluded.count,
    min_value = min(min_value, excluded.min_value),
    max_value = max(max_value, excluded.max_value),
    sum_value = sum_value + excluded.sum_value,
    energy_sum = energy_sum + excluded.energy_sum
"""

UPSERT_QUALITY = """
INSERT INTO minute_quality (sensor_id, quantity, minute, refused, untrusted)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (sensor_id, quantity, minute) DO UPDATE SET
    refused = refused + excluded.refused,
    untrusted = untrusted + excluded.untrusted
"""

UPSERT_SENSOR_STATE = """
INSERT INTO sensor_state (sensor_id, last_seen, readings, dead_letters, last_values)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (sensor_id) DO UPDATE SET
    last_seen = max(last_seen, excluded.last_seen),
    readings = readings + excluded.readings,
    dead_letters = dead_letters + excluded.dead_letters,
    last_values = json_patch(last_values, excluded.last_values)
"""

UPSERT_EVENT = """
INSERT INTO events
    (id, seq, kind, source, severity, status, started_at, ended_at, detail, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    seq = excluded.seq,
    severity = excluded.severity,
    status = CASE WHEN excluded.status = 'update' THEN 'open' ELSE excluded.status END,
    ended_at = excluded.ended_at,
    detail = excluded.detail,
    updated_at = excluded.updated_at
"""


async def write_readings(
    db: aiosqlite.Connection, batches: Sequence[Batch]
) -> list[tuple[str, int]]:
    """Write the batches' aggregates, dead letters and sensor state; return touched minutes."""
    aggregates: dict[tuple[str, str, str, int], MinuteAccumulator] = {}
    for batch in batches:
        for key, acc in batch.aggregates.items():
            have = aggregates.get(key)
            aggregates[key] = acc if have is None else merge(have, acc)
    if aggregates:
        await db.executemany(UPSERT_AGGREGATE, [(*key, *acc) for key, acc in aggregates.items()])
    quality = [(*key, *pair) for batch in batches for key, pair in batch.quality.items()]
    if quality:  # rare: refusals, or a clock not yet trusted
        await db.executemany(UPSERT_QUALITY, quality)
    dead = [d for batch in batches for d in batch.dead_letters]
    if dead:
        await db.executemany(
            "INSERT INTO dead_letters (received_at, topic, sensor_id, reason, payload)"
            " VALUES (?, ?, ?, ?, ?)",
            [(d.received_at, d.topic, d.sensor_id, d.reason, d.payload) for d in dead],
        )
        await bump_counter(db, "dead_letters_total", len(dead))
    state_rows = [
        (
            sensor_id,
            a.last_seen,
            a.readings,
            a.dead_letters,
            json.dumps({q: list(v) for q, v in a.last_values.items()}),
        )
        for batch in batches
        for sensor_id, a in batch.activity.items()
    ]
    if state_rows:
        await db.executemany(UPSERT_SENSOR_STATE, state_rows)
    return sorted({(key[0], key[3]) for key in aggregates})


async def write_events(
    db: aiosqlite.Connection, batches: Sequence[Batch], now: float
) -> tuple[list[list[int]], list[tuple[int, Event]]]:
    """Give each event the next sequence number and write it; return seqs per batch."""
    total = sum(len(b.events) for b in batches)
    if not total:
        return [[] for _ in batches], []
    next_seq = await reserve_seqs(db, total)
    rows, numbered, seqs = [], [], []
    for batch in batches:
        batch_seqs = []
        for original in batch.events:
            event = json_safe_event(original, now)
            detail = json.dumps(dict(event.detail), ensure_ascii=False, default=str)
            rows.append(
                (
                    event.event_id,
                    next_seq,
                    event.kind,
                    event.source,
                    str(event.severity),
                    str(event.status),
                    event.started_at,
                    event.ended_at,
                    detail,
                    now,
                )
            )
            numbered.append((next_seq, event))
            batch_seqs.append(next_seq)
            next_seq += 1
        seqs.append(batch_seqs)
    await db.executemany(UPSERT_EVENT, rows)
    return seqs, numbered


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def _nulled(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _nulled(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nulled(v) for v in value]
    return value


def json_safe_event(event: Event, now: float) -> Event:
    """``event`` with every NaN or infinity (which JSON cannot hold) replaced: null in the
    detail, ``now`` for a start or end time. The same event when there is none."""
    started, ended = event.started_at, event.ended_at
    times_ok = math.isfinite(started) and (ended is None or math.isfinite(ended))
    if times_ok and not _has_non_finite(event.detail):
        return event
    log.warning(
        "event kind=%s source=%s has NaN or infinite figures; stored as null",
        event.kind,
        event.source,
    )
    if not math.isfinite(started):
        started = now
    if ended is not None and not math.isfinite(ended):
        ended = now
    return dataclasses.replace(
        event, detail=_nulled(event.detail), started_at=started, ended_at=ended
    )
