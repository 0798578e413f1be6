"""Sending evidence snapshots over an uplink and recording the receivers' confirmations.

The delivery loop of :mod:`cloud_sync.sync` claims one snapshot due for upload and hands it
here. HTTPS confirms it in its response; over MQTT the snapshot is only sent, and the
receiver's signed receipt (verified by the uplink, queued by :meth:`EvidenceSender.take_receipt`)
confirms it later. A snapshot missing or damaged on disk becomes an ``evidence_lost`` event.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import aiosqlite

from cloud_sync.errors import UplinkError
from cloud_sync.evidence_queue import LOST_KIND, Upload, confirm, retry_later
from cloud_sync.evidence_receipt import EvidenceReceipt
from cloud_sync.evidence_wire import EvidenceRejectedError
from cloud_sync.transport import EvidenceTransport
from edge.events import Event, EventStatus, Severity
from edge.store import Store

__all__ = ["RECEIPT_WAIT_MIN_S", "EvidenceSender"]

log = logging.getLogger("cloud_sync.sync")

RECEIPT_WAIT_MIN_S = 5.0
"""A snapshot sent over MQTT is sent again if no signed receipt came within this (or the
uplink's ack_timeout_s, if longer), then after the usual doubling backoff."""


class EvidenceSender:
    """Sends claimed snapshots and records their confirmations; owned by the sync service."""

    def __init__(self, store: Store, uplinks: Sequence[Any]) -> None:
        self.store = store
        self.uplinks = uplinks
        self.confirmed = 0
        self.sending: set[str] = set()
        """Snapshots an uplink is sending now: no other uplink claims them meanwhile."""
        self._receipts: asyncio.Queue[EvidenceReceipt] = asyncio.Queue(maxsize=1000)

    async def send(self, transport: EvidenceTransport, upload: Upload, stop: asyncio.Event) -> None:
        """Send one snapshot; record the confirmation, or when to try again.

        A stop abandons the send at once (waiting for a receipt can take ``ack_timeout_s``):
        the snapshot stays unconfirmed and is sent again after the restart.
        """
        sending = asyncio.ensure_future(self._send_one(transport, upload))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sending, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if sending.done():
                sending.result()  # re-raise an UplinkError for the delivery loop's backoff
        finally:
            for task in (sending, stopping):
                task.cancel()
            await asyncio.wait({sending})  # its cleanup done; never raises its exception
            if not sending.cancelled():
                sending.exception()  # retrieved (re-raised above when it mattered)
            self.sending.discard(upload.sha256)

    async def _send_one(self, transport: EvidenceTransport, upload: Upload) -> None:
        name = getattr(transport, "name", "?")
        data = await asyncio.to_thread(_read_snapshot, upload)
        if data is None:
            await self._lost_before_upload(upload)
            return
        try:
            by = await transport.send_evidence(upload.sha256, data, event_id=upload.event_id)
        except (EvidenceRejectedError, UplinkError) as exc:
            error = str(exc)
            delay = await self.store.run(lambda db: retry_later(db, upload, time.time(), error))
            log.warning(
                "evidence not confirmed uplink=%s sha256=%s event=%s attempt=%d reason=%s"
                " retry_in_s=%.0f",
                name, upload.sha256, upload.event_id, upload.attempts, exc, delay,
            )  # fmt: skip
            if isinstance(exc, UplinkError) and not getattr(transport, "connected", True):
                raise  # the link is down: back off like any failed send
            return
        if by is None:  # sent; its signed receipt confirms it later (record_receipts)
            wait, note = self._receipt_wait(name), "sent, awaiting a signed receipt"
            await self.store.run(lambda db: retry_later(db, upload, time.time(), note, wait))
            log.info(
                "evidence sent uplink=%s sha256=%s event=%s bytes=%d attempt=%d"
                " awaiting_receipt=true",
                name, upload.sha256, upload.event_id, len(data), upload.attempts,
            )  # fmt: skip
            return
        confirmed_by = by
        await self.store.run(lambda db: confirm(db, upload.sha256, confirmed_by, time.time()))
        self.confirmed += 1
        log.info(
            "evidence delivered uplink=%s sha256=%s event=%s bytes=%d confirmed_by=%s",
            name, upload.sha256, upload.event_id, len(data), by,
        )  # fmt: skip

    def _receipt_wait(self, uplink: str) -> float:
        """How long a sent snapshot waits for its receipt before it is sent again."""
        config = next((u for u in self.uplinks if u.name == uplink), None)
        return max(RECEIPT_WAIT_MIN_S, float(getattr(config, "ack_timeout_s", 0.0)))

    def take_receipt(self, receipt: EvidenceReceipt) -> None:
        """A verified receipt from an uplink (on the event loop): queue it for the store."""
        try:
            self._receipts.put_nowait(receipt)
        except asyncio.QueueFull:
            # Dropped only for now: the snapshot is sent again and receipted again.
            log.warning("evidence receipt dropped reason=queue_full sha256=%s", receipt.sha256)

    async def record_receipts(self, stop: asyncio.Event) -> None:
        """Record verified receipts: a confirmed snapshot is delivered, a refusal logged."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.5):
                    receipt = await self._receipts.get()
            except TimeoutError:
                continue
            if not receipt.accepted:
                log.warning(
                    "evidence refused by the receiver sha256=%s reason=%s signed_by=%s",
                    receipt.sha256, receipt.reason, receipt.key.who,
                )  # fmt: skip
                continue
            if await self.store.run(partial(_confirm, receipt)):
                self.confirmed += 1
                log.info(
                    "evidence delivered sha256=%s confirmed_by=%s", receipt.sha256, receipt.key.who
                )

    async def _lost_before_upload(self, upload: Upload) -> None:
        log.error(
            "evidence snapshot missing or damaged before upload sha256=%s event=%s path=%s",
            upload.sha256, upload.event_id, upload.path,
        )  # fmt: skip
        await self.store.emit(
            Event(
                kind=LOST_KIND,
                source="evidence",
                severity=Severity.WARNING,
                status=EventStatus.INSTANT,
                started_at=time.time(),
                detail={"reason": "missing_or_damaged", "snapshots": [upload.sha256]},
            )
        )


async def _confirm(receipt: EvidenceReceipt, db: aiosqlite.Connection) -> bool:
    return await confirm(db, receipt.sha256, receipt.key.who, time.time())


def _read_snapshot(upload: Upload) -> bytes | None:
    """The snapshot's bytes if the file is there and still hashes to its name."""
    try:
        data = upload.path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == upload.sha256 else None
