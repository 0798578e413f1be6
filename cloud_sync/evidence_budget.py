"""The evidence quota's share of the outbox's disk budget, and its record of lost evidence.

The evidence quota (``vision.evidence``) and the outbox quota share one disk. When
snapshots no receiver confirmed yet exceed the evidence quota, :func:`lend` lets the
outbox give up budget (its free room, then delivered records, then undelivered minute and
status data, evicted with a gap record, :data:`cloud_sync.policy.EVICTION_ORDER`) before
any unconfirmed snapshot is deleted; undelivered alarms and events are never given up. A
snapshot that must go anyway is recorded by an ``evidence_lost`` event
(:meth:`EvidenceBudget.lost`), which also ends its upload row
(:func:`cloud_sync.evidence_queue.enqueue_from_events`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import aiosqlite

from cloud_sync.evidence_queue import LOST_KIND
from cloud_sync.policy import EVICTION_ORDER
from edge.clock import clock_synchronised
from edge.counters import read_counter
from edge.events import Event, EventStatus, Severity

if TYPE_CHECKING:
    from cloud_sync.outbox import Outbox
    from edge.store import Store

__all__ = ["EvidenceBudget", "lend"]

log = logging.getLogger(__name__)


async def lend(
    db: aiosqlite.Connection, outbox: Outbox, want: int, now: float, clock_synced: bool | None
) -> int:
    """Let unconfirmed evidence use up to ``want`` bytes of the outbox's budget; return the loan.

    The outbox can give up its free budget and everything it may evict (delivered records,
    undelivered minute and status data); undelivered alarms and events stay. It then keeps
    to its quota minus the loan at once, leaving gap records for what it evicted.
    """
    classes = ",".join(f"'{c}'" for c in EVICTION_ORDER)
    async with db.execute(
        "SELECT coalesce(sum(size), 0) FROM outbox"  # noqa: S608 - constant class names only
        f" WHERE NOT (delivered_at IS NULL AND data_class NOT IN ({classes}))"
    ) as cursor:
        row = await cursor.fetchone()
    evictable = int(row[0]) if row is not None else 0
    used = await read_counter(db, "outbox_bytes")
    # Everything but what must stay (undelivered alarms and events): evidence outranks
    # routine data, so the whole rest of the budget may go to it.
    available = outbox.settings.quota_bytes - (used - evictable)
    loan = max(0, min(want, available))
    if loan != outbox.evidence_loan:
        log.info("outbox lends to unconfirmed evidence bytes=%d wanted=%d", loan, want)
    outbox.evidence_loan = loan
    await outbox.enforce_quota(db, now, clock_synced)
    return loan


class EvidenceBudget:
    """The evidence quota's two questions to the outbox, asked from the snapshot worker thread.

    :meth:`borrow` and :meth:`lost` block the calling thread (never the event loop) until
    the store's writer answered on ``loop``.
    """

    def __init__(
        self, store: Store, outbox: Outbox, loop: asyncio.AbstractEventLoop, timeout_s: float = 30.0
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.loop = loop
        self.timeout_s = timeout_s

    def _call(self, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise

    def borrow(self, want: int) -> int | None:
        """Bytes the outbox lends to unconfirmed evidence (None: it could not say now)."""
        outbox = self.outbox

        async def op(db: aiosqlite.Connection) -> int:
            return await lend(db, outbox, want, time.time(), clock_synchronised())

        try:
            return int(self._call(self.store.run(op)))
        except Exception as exc:  # noqa: BLE001 - a store that is closing: decide later
            log.warning("evidence quota could not ask the outbox reason=%s", exc)
            return None

    def lost(self, snapshots: Sequence[Mapping[str, Any]]) -> None:
        """Record snapshots deleted before any receiver confirmed them (``evidence_lost``)."""
        event = Event(
            kind=LOST_KIND,
            source="evidence",
            severity=Severity.WARNING,
            status=EventStatus.INSTANT,
            started_at=time.time(),
            detail={
                "reason": "quota",
                "snapshots": [str(s["sha256"]) for s in snapshots],
                "bytes": sum(int(s.get("size", 0)) for s in snapshots),
            },
        )
        try:
            self._call(self.store.emit(event))
        except Exception as exc:  # noqa: BLE001 - logged with everything a technician needs
            log.error(
                "evidence lost but not recorded snapshots=%s reason=%s",
                ",".join(str(s["sha256"]) for s in snapshots),
                exc,
            )
