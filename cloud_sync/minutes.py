"""Minute and hour records: created when a minute (hour) closes, corrected when late data lands.

The store UPSERTs readings into ``minute_aggregates`` as deltas. A minute is *closed*
``minute_close_s`` after it ends; the commit that first sees it closed also appends one
``minute`` record per sensor and minute to the outbox, in the same transaction. A reading
for an already closed minute updates the aggregate and appends a ``correction`` record
carrying the full updated minute. Hours close with their last minute (``hour`` records).

A minute (hour) body also says, where it happened, how many of its readings were received
while the gateway's clock was not trusted (``clock_untrusted``: their minute may be off
by the clock's error) and how many values were refused per quantity (``refused``), from
the store's ``minute_quality`` rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from cloud_sync.validity import hour_validity, valid_minutes
from edge.aggregate import level_from_energy
from edge.counters import read_meta, write_meta

AggRow = tuple[str, str, str, int, int, float, float, float, float]
"""(sensor_id, quantity, flag, minute, count, min, max, sum, energy_sum)."""

_SELECT = (
    "SELECT sensor_id, quantity, flag, minute, count, min_value, max_value, sum_value,"
    " energy_sum FROM minute_aggregates"
)


def item_of(  # noqa: PLR0917 - mirrors the aggregate row
    quantity: str, flag: str, count: int, lo: float, hi: float, s: float, e: float
) -> dict[str, Any]:
    """One quantity's figures: count, min, max, mean and (sound levels) Leq."""
    item: dict[str, Any] = {
        "quantity": quantity,
        "flag": flag,
        "count": count,
        "min": lo,
        "max": hi,
        "avg": s / count,
    }
    if e > 0:
        item["leq"] = level_from_energy(e, count)
    return item


def minute_bodies(rows: Iterable[AggRow], *, correction: bool = False) -> list[dict[str, Any]]:
    """Group aggregate rows into one ``minute`` body per (sensor, minute), in time order."""
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for sensor, quantity, flag, minute, count, lo, hi, s, e in rows:
        grouped.setdefault((minute, sensor), []).append(
            item_of(quantity, flag, count, lo, hi, s, e)
        )
    return [
        {
            "type": "minute",
            "sensor_id": sensor,
            "minute": minute,
            "correction": correction,
            "items": sorted(items, key=lambda i: (i["quantity"], i["flag"])),
        }
        for (minute, sensor), items in sorted(grouped.items())
    ]


def hour_bodies(rows: Iterable[AggRow]) -> list[dict[str, Any]]:
    """Fold an hour's aggregate rows into one ``hour`` body per (sensor, hour).

    Each body says whether the hour is complete (:func:`cloud_sync.validity.hour_validity`:
    ``valid``, ``coverage``, ``clause``, per quantity ``validity``); an incomplete hour
    keeps its figures.
    """
    rows = list(rows)
    good = valid_minutes((r[0], r[1], r[2], r[3], r[4]) for r in rows)
    acc: dict[tuple[int, str], dict[tuple[str, str], list[float]]] = {}
    for sensor, quantity, flag, minute, count, lo, hi, s, e in rows:
        hour = minute // 3600 * 3600
        slot = acc.setdefault((hour, sensor), {})
        have = slot.get((quantity, flag))
        slot[(quantity, flag)] = (
            [count, lo, hi, s, e]
            if have is None
            else [have[0] + count, min(have[1], lo), max(have[2], hi), have[3] + s, have[4] + e]
        )
    return [
        {
            "type": "hour",
            "sensor_id": sensor,
            "hour": hour,
            "items": [
                item_of(q, f, int(v[0]), v[1], v[2], v[3], v[4])
                for (q, f), v in sorted(items.items())
            ],
            **hour_validity({q for q, _ in items}, good.get((sensor, hour), {})),
        }
        for (hour, sensor), items in sorted(acc.items())
    ]


_QUALITY = (
    "SELECT sensor_id, minute, quantity, refused, untrusted FROM minute_quality"
    " WHERE minute >= ? AND minute < ?"
)


async def annotate_quality(
    db: aiosqlite.Connection, bodies: list[dict[str, Any]], lo: int, hi: int, span: int
) -> None:
    """Add ``clock_untrusted`` and ``refused`` to the bodies of [lo, hi) that had any.

    ``span`` is 60 for minute bodies (keyed ``minute``), 3600 for hour bodies (``hour``).
    """
    if not bodies:
        return
    key_name = "minute" if span == 60 else "hour"
    by_key = {(b["sensor_id"], b[key_name]): b for b in bodies}
    async with db.execute(_QUALITY, (lo, hi)) as cursor:
        rows = await cursor.fetchall()
    for sensor, minute, quantity, refused, untrusted in rows:
        body = by_key.get((sensor, int(minute) // span * span))
        if body is None:
            continue
        if untrusted:
            body["clock_untrusted"] = body.get("clock_untrusted", 0) + int(untrusted)
        if refused:
            counts = body.setdefault("refused", {})
            counts[quantity] = counts.get(quantity, 0) + int(refused)


async def close_minutes(
    db: aiosqlite.Connection,
    *,
    now: float,
    minute_close_s: float,
    late: Sequence[tuple[str, int]],
) -> list[tuple[str, dict[str, Any]]]:
    """Close finished minutes (and hours); return their records and corrections for ``late``.

    ``late`` are the (sensor_id, minute) buckets this transaction changed; those already
    closed before it get a correction record. Returns (data class, body) pairs for the
    outbox to append in the same transaction.
    """
    closed_before = int(await read_meta(db, "minutes_closed_before") or 0)
    boundary = int((now - minute_close_s) // 60) * 60
    items: list[tuple[str, dict[str, Any]]] = []
    corrections = sorted({(m, s) for s, m in late if m < closed_before})
    for minute, sensor in corrections:
        async with db.execute(
            _SELECT + " WHERE sensor_id = ? AND minute = ?", (sensor, minute)
        ) as cursor:
            rows = [tuple(r) for r in await cursor.fetchall()]
        bodies = minute_bodies(rows, correction=True)
        await annotate_quality(db, bodies, minute, minute + 60, 60)
        items.extend(("minute", b) for b in bodies)
    if boundary > closed_before:
        async with db.execute(
            _SELECT + " WHERE minute >= ? AND minute < ?", (closed_before, boundary)
        ) as cursor:
            rows = [tuple(r) for r in await cursor.fetchall()]
        bodies = minute_bodies(rows)
        await annotate_quality(db, bodies, closed_before, boundary, 60)
        items.extend(("minute", b) for b in bodies)
        hours_before = int(
            await read_meta(db, "hours_closed_before") or closed_before // 3600 * 3600
        )
        hour_boundary = boundary // 3600 * 3600
        if hour_boundary > hours_before:
            async with db.execute(
                _SELECT + " WHERE minute >= ? AND minute < ?", (hours_before, hour_boundary)
            ) as cursor:
                hour_rows = [tuple(r) for r in await cursor.fetchall()]
            hours = hour_bodies(hour_rows)
            await annotate_quality(db, hours, hours_before, hour_boundary, 3600)
            items.extend(("minute", b) for b in hours)
            await write_meta(db, "hours_closed_before", str(hour_boundary))
        await write_meta(db, "minutes_closed_before", str(boundary))
    return items
