"""Evidence snapshots waiting for the cloud, in the gateway's SQLite (table ``evidence_uploads``).

A snapshot is queued in the same transaction as the violation event that names it (the
outbox's transaction hook calls :func:`enqueue`), so it cannot be forgotten by a crash.
The sync loop claims one at a time (:func:`claim`, skipping those another uplink is
sending), sends it, and records a receiver's confirmation
(:func:`confirm`) or a retry time (:func:`retry_later`). Only a confirmed snapshot counts
as delivered for the evidence quota (``cloud_sync.outbox_view.evidence_delivered``).
How the evidence quota borrows the outbox's room, and records a snapshot it had to delete
unconfirmed (an ``evidence_lost`` event, which also ends its upload row here), is
:mod:`cloud_sync.evidence_budget`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from cloud_sync.policy import PRIORITY, PROTECTED
from edge.events import Event

__all__ = [
    "LOST_KIND",
    "Upload",
    "carries_evidence",
    "claim",
    "confirm",
    "enqueue_from_events",
    "evidence_due",
    "retry_later",
    "uploads",
    "urgent_count",
]

log = logging.getLogger(__name__)

RETRY_MIN_S = 5.0
RETRY_MAX_S = 3600.0
"""A snapshot that failed is retried after 5 s, doubling up to an hour."""
LOST_KIND = "evidence_lost"
"""Kind of the event that records snapshots deleted before a receiver confirmed them."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A snapshot claimed for sending."""

    sha256: str
    event_id: str
    path: Path
    attempts: int


def carries_evidence(uplinks: Mapping[str, frozenset[str]]) -> bool:
    """Whether any uplink carries events, and with them their evidence snapshots."""
    return any(c in PROTECTED for classes in uplinks.values() for c in classes)


def _snapshot_of(event: Event) -> tuple[str, str] | None:
    sha, path = event.detail.get("snapshot_sha256"), event.detail.get("snapshot_path")
    if isinstance(sha, str) and isinstance(path, str) and len(sha) == 64:
        return sha, path
    return None


async def enqueue_from_events(
    db: aiosqlite.Connection, events: Iterable[tuple[int, Event]], now: float
) -> None:
    """Queue the snapshots the events name; end the uploads an ``evidence_lost`` names."""
    queued: list[tuple[str, str, str, float]] = []
    lost: list[tuple[float, str]] = []
    for _seq, event in events:
        snap = _snapshot_of(event)
        if snap is not None:
            queued.append((snap[0], event.event_id, snap[1], now))
        if event.kind == LOST_KIND:
            shas = event.detail.get("snapshots", [])
            lost.extend((now, s) for s in shas if isinstance(s, str))
    if queued:
        await db.executemany(
            "INSERT OR IGNORE INTO evidence_uploads (sha256, event_id, path, queued_at)"
            " VALUES (?, ?, ?, ?)",
            queued,
        )
    if lost:
        await db.executemany(
            "UPDATE evidence_uploads SET lost_at = ? WHERE sha256 = ? AND confirmed_at IS NULL",
            lost,
        )


async def urgent_count(db: aiosqlite.Connection, uplink: str, limit: int) -> int:
    """How many alarm and event records ``uplink`` still has to send (at most ``limit``).

    They go before evidence; evidence goes before status and minute records.
    """
    top = max(PRIORITY[c] for c in PROTECTED)
    async with db.execute(
        "SELECT count(*) FROM (SELECT 1 FROM outbox_pending WHERE uplink = ? AND priority <= ?"
        " LIMIT ?)",
        (uplink, top, limit),
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


def _not_busy(busy: Collection[str]) -> str:
    return f" AND sha256 NOT IN ({','.join('?' * len(busy))})"


async def evidence_due(db: aiosqlite.Connection, now: float, busy: Collection[str] = ()) -> bool:
    """Whether a snapshot is due for sending (and not being sent by another uplink)."""
    async with db.execute(
        "SELECT 1 FROM evidence_uploads WHERE confirmed_at IS NULL AND lost_at IS NULL"  # noqa: S608 - placeholders only
        " AND next_at <= ?" + _not_busy(busy) + " LIMIT 1",
        (now, *busy),
    ) as cursor:
        return await cursor.fetchone() is not None


async def claim(db: aiosqlite.Connection, now: float, busy: Collection[str] = ()) -> Upload | None:
    """The oldest snapshot due for sending and not ``busy`` (being sent by another uplink).

    Counts an attempt. The claim itself is not stored: after a restart every snapshot not
    confirmed is due again at once (or at its retry time).
    """
    async with db.execute(
        "SELECT sha256, event_id, path, attempts FROM evidence_uploads"  # noqa: S608 - placeholders only
        " WHERE confirmed_at IS NULL AND lost_at IS NULL AND next_at <= ?"
        + _not_busy(busy)
        + " ORDER BY next_at, queued_at LIMIT 1",
        (now, *busy),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    await db.execute(
        "UPDATE evidence_uploads SET attempts = attempts + 1 WHERE sha256 = ?", (row[0],)
    )
    return Upload(str(row[0]), str(row[1]), Path(row[2]), int(row[3]) + 1)


async def confirm(db: aiosqlite.Connection, sha256: str, by: str, now: float) -> bool:
    """A receiver confirmed holding the verified bytes: the snapshot is delivered.

    False when there was nothing to confirm (already confirmed, or not ours).
    """
    async with db.execute(
        "UPDATE evidence_uploads SET confirmed_at = ?, confirmed_by = ?, last_error = NULL"
        " WHERE sha256 = ? AND confirmed_at IS NULL",
        (now, by, sha256),
    ) as cursor:
        return cursor.rowcount > 0


async def retry_later(
    db: aiosqlite.Connection, upload: Upload, now: float, error: str, at_least: float = 0.0
) -> float:
    """Send ``upload`` again later (exponential backoff by attempts); return the delay."""
    backoff = RETRY_MIN_S * float(2 ** max(0, min(upload.attempts - 1, 20)))
    delay = max(at_least, min(RETRY_MAX_S, backoff))
    await db.execute(
        "UPDATE evidence_uploads SET next_at = ?, last_error = ?"
        " WHERE sha256 = ? AND confirmed_at IS NULL",
        (now + delay, error[:300], upload.sha256),
    )
    return delay


async def uploads(db: aiosqlite.Connection) -> dict[str, int]:
    """How many snapshots are pending, confirmed and lost (for status records)."""
    async with db.execute(
        "SELECT sum(confirmed_at IS NULL AND lost_at IS NULL), sum(confirmed_at IS NOT NULL),"
        " sum(lost_at IS NOT NULL) FROM evidence_uploads"
    ) as cursor:
        row = await cursor.fetchone()
    pending, confirmed, lost = row if row is not None else (0, 0, 0)
    return {"pending": pending or 0, "confirmed": confirmed or 0, "lost": lost or 0}
