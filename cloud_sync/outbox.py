"""The outbox: records waiting for the cloud, in the gateway's SQLite (litequeue verbs).

Every method takes the store's connection and runs inside the store writer's current
transaction, so a record enters the outbox atomically with whatever created it, and a
delivery is marked in the same commit that other data rides in. Nothing here commits.

It is the store's transaction hook (:meth:`Outbox.in_transaction`): every commit that
writes events also appends their records, closes finished minutes into minute records
and enforces the quota, in the same transaction. Tables (see ``edge.schema``):

- ``outbox``: one row per record, ``seq`` = the gateway's sequence number, with the chain
  columns ``prev``/``hash``/``sig``, a ``size`` for the quota and ``delivered_at``.
- ``outbox_pending``: one row per (uplink, record) still to deliver, keyed by send
  priority so that :meth:`Outbox.pop` hands out alarms first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.chain import GENESIS, canonical_json, record_hash, sign_hash
from cloud_sync.config import ALL_CLASSES, OutboxConfig
from cloud_sync.daily_rates import RatesSetup, close_days
from cloud_sync.evidence_queue import carries_evidence, enqueue_from_events
from cloud_sync.minutes import close_minutes
from cloud_sync.policy import EVICTION_ORDER, PRIORITY, Candidate, gap_body, plan_eviction
from edge.counters import bump_counter, read_counter, read_meta, reserve_seqs, write_meta
from edge.events import Event, Severity
from edge.ids import new_id
from edge.store import Written

log = logging.getLogger(__name__)

ROW_OVERHEAD = 320
"""Bytes counted per row on top of its body: ids, hashes, signature, index entries."""


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to append: its seq is already reserved from the ``seq`` counter."""

    seq: int
    data_class: str
    created_at: float
    clock_synced: bool | None
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record handed to an uplink, with its wire form (one JSON object)."""

    seq: int
    id: str
    data_class: str
    created_at: float
    resent: bool
    body: Mapping[str, Any]
    wire: str


@dataclass(slots=True)
class Outbox:
    """The outbox of one gateway: chain, delivery state per uplink, quota, TTL, pruning."""

    gateway_id: str
    key: Ed25519PrivateKey | None = None
    uplinks: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """uplink name → data classes it carries."""
    settings: OutboxConfig = field(default_factory=OutboxConfig)
    evicted_total: int = 0
    rates: RatesSetup | None = None
    """Sensors whose daily data rates go out as ``rates`` records (``daily_rates``)."""
    evidence_loan: int = 0
    """Bytes of the quota lent to unconfirmed evidence snapshots (``evidence_budget.lend``)."""
    _over_quota_said: bool = False

    # -- put ---------------------------------------------------------------------------
    async def put(self, db: aiosqlite.Connection, records: Sequence[NewRecord]) -> list[str]:
        """Append sealed records and their pending rows; return their ids."""
        if not records:
            return []
        prev = await read_meta(db, "chain_head") or GENESIS
        rows: list[tuple[Any, ...]] = []
        pending: list[tuple[str, int, int]] = []
        ids: list[str] = []
        added = 0
        for rec in records:
            body_text = canonical_json(rec.body).decode("utf-8")
            # Hash what the receiver will parse: the stored text, not the producer's objects.
            envelope = {
                "gateway": self.gateway_id,
                "seq": rec.seq,
                "id": new_id(),
                "class": rec.data_class,
                "created_at": rec.created_at,
                "clock_synced": rec.clock_synced,
                "body": json.loads(body_text),
                "prev": prev,
            }
            digest = record_hash(envelope)
            sig = None if self.key is None else sign_hash(self.key, digest)
            size = len(body_text) + ROW_OVERHEAD
            added += size
            synced = None if rec.clock_synced is None else int(rec.clock_synced)
            rows.append(
                (
                    rec.seq,
                    envelope["id"],
                    rec.data_class,
                    rec.created_at,
                    synced,
                    body_text,
                    prev,
                    digest,
                    sig,
                    size,
                )
            )
            ids.append(str(envelope["id"]))
            priority = PRIORITY[rec.data_class]
            pending.extend(
                (name, priority, rec.seq)
                for name, classes in self.uplinks.items()
                if rec.data_class in classes
            )
            prev = digest
        await db.executemany(
            "INSERT INTO outbox (seq, id, data_class, created_at, clock_synced, body, prev,"
            " hash, sig, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if pending:
            await db.executemany(
                "INSERT INTO outbox_pending (uplink, priority, seq) VALUES (?, ?, ?)", pending
            )
        await write_meta(db, "chain_head", prev)
        await bump_counter(db, "outbox_bytes", added)
        return ids

    async def put_bodies(
        self,
        db: aiosqlite.Connection,
        items: Sequence[tuple[str, Mapping[str, Any]]],
        now: float,
        clock_synced: bool | None,
    ) -> list[int]:
        """Reserve seqs and append (data_class, body) records; return their seqs."""
        if not items:
            return []
        first = await reserve_seqs(db, len(items))
        records = [
            NewRecord(first + i, cls, now, clock_synced, {**body, "seq": first + i})
            for i, (cls, body) in enumerate(items)
        ]
        await self.put(db, records)
        return [r.seq for r in records]

    # -- the store's transaction hook ------------------------------------------------------
    async def in_transaction(self, db: aiosqlite.Connection, written: Written) -> None:
        """Append the commit's event records, close finished minutes, keep to the quota."""
        if written.events and carries_evidence(self.uplinks):
            # A violation's snapshot is queued for upload in the same commit as its event.
            await enqueue_from_events(db, written.events, written.now)
        if written.events:
            await self.put(
                db,
                [
                    NewRecord(
                        seq,
                        event_data_class(event),
                        written.now,
                        written.clock_synced,
                        # Through JSON and back: what is hashed is what the receiver parses.
                        json.loads(
                            json.dumps(event_body(event, seq), ensure_ascii=False, default=str)
                        ),
                    )
                    for seq, event in written.events
                ],
            )
        minutes = await close_minutes(
            db, now=written.now, minute_close_s=self.settings.minute_close_s, late=written.minutes
        )
        if self.rates is not None:
            minutes += await close_days(
                db, self.rates, now=written.now, clock_synced=written.clock_synced
            )
        await self.put_bodies(db, minutes, written.now, written.clock_synced)
        await self.enforce_quota(db, written.now, written.clock_synced)

    # -- pop / done --------------------------------------------------------------------
    async def pop(self, db: aiosqlite.Connection, uplink: str, limit: int) -> list[OutRecord]:
        """The next ``limit`` pending records of ``uplink``, alarms first, then by seq.

        Each pop counts an attempt, so a record handed out again (after a failure or a
        restart) is marked ``resent``.
        """
        async with db.execute(
            "SELECT o.seq, o.id, o.data_class, o.created_at, o.clock_synced, o.body, o.prev,"
            " o.hash, o.sig, p.attempts, p.priority FROM outbox_pending p"
            " JOIN outbox o ON o.seq = p.seq WHERE p.uplink = ?"
            " ORDER BY p.priority, p.seq LIMIT ?",
            (uplink, limit),
        ) as cursor:
            rows = list(await cursor.fetchall())
        if not rows:
            return []
        await db.executemany(
            "UPDATE outbox_pending SET attempts = attempts + 1"
            " WHERE uplink = ? AND priority = ? AND seq = ?",
            [(uplink, row[10], row[0]) for row in rows],
        )
        dumps = json.dumps
        gateway = dumps(self.gateway_id)
        out = []
        for seq, rid, cls, created, synced, body, prev, digest, sig, attempts, _ in rows:
            clock = "null" if synced is None else ("true" if synced else "false")
            # Splice the stored canonical body instead of re-serialising it: cheaper, and
            # byte-identical to what was hashed.
            wire = (
                f'{{"gateway":{gateway},"seq":{seq},"id":"{rid}","class":"{cls}",'
                f'"created_at":{dumps(created)},"clock_synced":{clock},"prev":"{prev}",'
                f'"hash":"{digest}","sig":{dumps(sig)},"resent":{"true" if attempts else "false"},'
                f'"body":{body}}}'
            )
            out.append(OutRecord(seq, rid, cls, created, attempts > 0, json.loads(body), wire))
        return out

    async def done(
        self, db: aiosqlite.Connection, uplink: str, seqs: Sequence[int], now: float
    ) -> None:
        """Mark records acknowledged by ``uplink``; fully delivered ones get delivered_at."""
        if not seqs:
            return
        await db.executemany(
            "DELETE FROM outbox_pending WHERE uplink = ? AND seq = ?", [(uplink, s) for s in seqs]
        )
        await db.executemany(
            "UPDATE outbox SET delivered_at = ? WHERE seq = ? AND delivered_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.seq = outbox.seq)",
            [(now, s) for s in seqs],
        )

    async def backlog(self, db: aiosqlite.Connection) -> dict[str, dict[str, int]]:
        """Pending records per uplink and data class."""
        by_priority = {v: k for k, v in PRIORITY.items()}
        out: dict[str, dict[str, int]] = {}
        async with db.execute(
            "SELECT uplink, priority, count(*) FROM outbox_pending GROUP BY uplink, priority"
        ) as cursor:
            for uplink, priority, count in await cursor.fetchall():
                out.setdefault(uplink, {})[by_priority[priority]] = count
        return out

    # -- quota, TTL, retention -----------------------------------------------------------
    async def enforce_quota(
        self, db: aiosqlite.Connection, now: float, clock_synced: bool | None
    ) -> int:
        """Evict down to 90 % of the quota if over it; return how many rows were evicted."""
        used = await read_counter(db, "outbox_bytes")
        quota = self.settings.quota_bytes - self.evidence_loan
        if used <= quota:
            self._over_quota_said = False
            return 0
        # Hysteresis: free 10 % more than needed so that we do not evict on every commit.
        excess = used - int(quota * 0.9)
        candidates: list[Candidate] = []
        gathered = 0
        async with db.execute(
            "SELECT seq, data_class, size FROM outbox WHERE delivered_at IS NOT NULL"
            " ORDER BY delivered_at, seq LIMIT 5000"
        ) as cursor:
            for seq, cls, size in await cursor.fetchall():
                candidates.append(Candidate(seq, cls, size, True))
                gathered += size
        for cls in EVICTION_ORDER:
            if gathered >= excess:
                break
            async with db.execute(
                "SELECT seq, size FROM outbox WHERE data_class = ? AND delivered_at IS NULL"
                " ORDER BY seq LIMIT 20000",
                (cls,),
            ) as cursor:
                for seq, size in await cursor.fetchall():
                    candidates.append(Candidate(seq, cls, size, False))
                    gathered += size
        chosen = plan_eviction(candidates, excess)
        await self._evict(db, chosen, "quota", now, clock_synced)
        if sum(c.size for c in chosen) < excess and not self._over_quota_said:
            # Only undelivered alarms and events are left: they outrank the disk budget.
            self._over_quota_said = True
            log.warning(
                "outbox over quota bytes=%d quota=%d reason=only undelivered alarms and events "
                "are left and they are never evicted; check the uplink",
                used - sum(c.size for c in chosen),
                quota,
            )
        return len(chosen)

    async def expire(self, db: aiosqlite.Connection, now: float, clock_synced: bool | None) -> int:
        """Evict undelivered records older than their class's TTL (with a gap record)."""
        total = 0
        for cls, ttl in self.settings.ttl_s.items():
            async with db.execute(
                "SELECT seq, size FROM outbox WHERE data_class = ? AND delivered_at IS NULL"
                " AND created_at < ? ORDER BY seq LIMIT 20000",
                (cls, now - ttl),
            ) as cursor:
                chosen = [Candidate(s, cls, z, False) for s, z in await cursor.fetchall()]
            await self._evict(db, chosen, "ttl", now, clock_synced)
            total += len(chosen)
        return total

    async def prune(self, db: aiosqlite.Connection, now: float) -> int:
        """Delete records delivered longer ago than the retention time."""
        cutoff = now - self.settings.retention_s
        async with db.execute(
            "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ? RETURNING size",
            (cutoff,),
        ) as cursor:
            sizes = [row[0] for row in await cursor.fetchall()]
        if sizes:
            await bump_counter(db, "outbox_bytes", -sum(sizes))
        return len(sizes)

    async def _evict(
        self,
        db: aiosqlite.Connection,
        chosen: Sequence[Candidate],
        reason: str,
        now: float,
        clock_synced: bool | None,
    ) -> None:
        if not chosen:
            return
        seqs = [c.seq for c in chosen]
        lost = [c for c in chosen if not c.delivered]
        meta: dict[int, tuple[str, str, float]] = {}
        if lost:
            for start in range(0, len(lost), 500):
                part = [c.seq for c in lost[start : start + 500]]
                marks = ",".join("?" * len(part))
                async with db.execute(
                    f"SELECT seq, prev, hash, created_at FROM outbox WHERE seq IN ({marks})",  # noqa: S608 - placeholders only
                    part,
                ) as cursor:
                    for seq, prev, digest, created in await cursor.fetchall():
                        meta[seq] = (prev, digest, created)
        await db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
        await db.executemany("DELETE FROM outbox_pending WHERE seq = ?", [(s,) for s in seqs])
        await bump_counter(db, "outbox_bytes", -sum(c.size for c in chosen))
        self.evicted_total += len(lost)
        if not lost:
            return
        body = gap_body(reason, lost, meta)
        log.warning(
            "outbox evicted reason=%s records=%d classes=%s ranges=%d",
            reason,
            len(lost),
            ",".join(f"{k}:{v}" for k, v in sorted(body["counts"].items())),
            len(body["ranges"]),
        )
        await self.put_bodies(db, [("event", body)], now, clock_synced)


def wire_batch(gateway_id: str, records: Sequence[OutRecord]) -> bytes:
    """The JSON payload carrying several records (MQTT message, HTTPS body)."""
    head = json.dumps(gateway_id)
    return f'{{"gateway":{head},"records":[{",".join(r.wire for r in records)}]}}'.encode()


def classes_of(names: Sequence[str] | None) -> frozenset[str]:
    """Data classes an uplink carries (all when not restricted)."""
    return frozenset(names or ALL_CLASSES)


def event_data_class(event: Event) -> str:
    """Outbox data class of an event: alarms travel first."""
    return "alarm" if event.severity is Severity.ALARM else "event"


def event_body(event: Event, seq: int) -> dict[str, Any]:
    """The JSON form of an event change, as stored in the outbox and sent to the cloud."""
    return {
        "type": "event",
        "seq": seq,
        "event_id": event.event_id,
        "kind": event.kind,
        "source": event.source,
        "severity": str(event.severity),
        "status": str(event.status),
        "started_at": event.started_at,
        "ended_at": event.ended_at,
        "detail": dict(event.detail),
    }
