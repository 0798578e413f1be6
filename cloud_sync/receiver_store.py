"""The reference receiver's storage: registered keys, records, rejects, verified chains.

One SQLite file holds the gateways' registered public keys, the admitted records (each
distinct record once, in arrival order), the rejected ones with their reason, the
incremental verification state (:mod:`cloud_sync.receiver_verify`) and the responses of
HTTPS batches already processed (idempotency).

Every record goes through the same gate in :meth:`ReceiverDB.ingest`: the protocol schema
(:mod:`cloud_sync.record_schema`, with the gateway the transport vouches for), then the
gateway's registered key (none: rejected), the hash, the signature; only then is it stored
and checked against the chain. A rejected record is kept aside with its reason and never
enters a chain; nothing a sender puts in a record can raise out of :meth:`ingest`. The
key is the one in force at the record's seq (registered, or announced by an admitted
key-rotation record: :mod:`cloud_sync.receiver_rotation`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud_sync.chain import record_hash, verify_signature
from cloud_sync.errors import CloudSyncError
from cloud_sync.receiver_keys import KEYS_SCHEMA, KeyRegistrationError, KeyRegistry
from cloud_sync.receiver_queries import ReceiverQueries
from cloud_sync.receiver_rotation import flag_retired, take_back
from cloud_sync.receiver_verify import VERIFY_SCHEMA, ChainVerdict, admit, finding, verdict
from cloud_sync.record_schema import RecordResult, parse_batch, record_problem
from edge.errors import SetupError

__all__ = [
    "SCHEMA",
    "KeyRegistrationError",
    "ReceiverDB",
    "ReceiverDatabaseError",
    "RecordResult",
    "parse_batch",
]

# The receiver's logger name from before the split, so its log lines keep their tag.
log = logging.getLogger("cloud_sync.receiver")

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    arrival INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data_class TEXT NOT NULL,
    created_at REAL,
    clock_synced INTEGER,
    body TEXT NOT NULL,
    prev TEXT,
    hash TEXT NOT NULL,
    sig TEXT,
    resent INTEGER NOT NULL,
    via TEXT NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (gateway, seq, hash)
);
CREATE TABLE IF NOT EXISTS gateways (
    gateway TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejected (
    n INTEGER PRIMARY KEY,
    gateway TEXT,
    seq INTEGER,
    id TEXT,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    record TEXT NOT NULL,
    via TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rejected_gateway ON rejected (gateway, kind);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL
);
"""


class ReceiverDatabaseError(CloudSyncError, SetupError):
    """The receiver database cannot be used (written by another version)."""


MAX_KEPT_CHARS = 16384
"""A rejected record is kept up to this many characters of its JSON (enough to judge it)."""


class ReceiverDB(ReceiverQueries):
    """The receiver's SQLite: ingest here, queries in :mod:`cloud_sync.receiver_queries`."""

    def __init__(
        self,
        path: Path | str,
        trust: Mapping[str, str] | None = None,
        *,
        clock_tolerance_s: float = 300.0,
    ) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        (version,) = self.conn.execute("PRAGMA user_version").fetchone()
        old = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'records'").fetchone()
        if version != SCHEMA_VERSION and (version or old):
            self.conn.close()
            raise ReceiverDatabaseError(
                f"{path}: a receiver database of another version ({version}); start with a new --db"
            )
        self.conn.executescript(SCHEMA + KEYS_SCHEMA + VERIFY_SCHEMA)
        self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.clock_tolerance_s = clock_tolerance_s
        self.keys = KeyRegistry(self.conn)
        for gateway, key in (trust or {}).items():
            self.register(gateway, key)

    def register(self, gateway: str, key_hex: str, *, replace: bool = False) -> bool:
        """Register ``gateway``'s public key (see :meth:`KeyRegistry.register`)."""
        return self.keys.register(gateway, key_hex, replace=replace)

    def key_of(self, gateway: str, seq: int | None = None) -> Ed25519PublicKey | None:
        """The key of ``gateway`` (at ``seq``; ``None``: not registered)."""
        return self.keys.key_of(gateway, seq)

    def issue_token(self, gateway: str) -> str:
        """A new HTTPS token for ``gateway`` (see :meth:`KeyRegistry.issue_token`)."""
        return self.keys.issue_token(gateway)

    def has_token(self, gateway: str) -> bool:
        """Whether ``gateway`` has an HTTPS token."""
        return self.keys.has_token(gateway)

    def gateway_of_token(self, token: str) -> str | None:
        """The gateway an HTTPS token belongs to (``None``: none)."""
        return self.keys.gateway_of_token(token)

    # -- ingest -------------------------------------------------------------------------

    def ingest(
        self, records: Sequence[Any], via: str, *, gateway: str | None = None
    ) -> list[RecordResult]:
        """Check and store records (one transaction); what became of each, in order.

        ``gateway``: the gateway the transport vouches for (MQTT topic, HTTPS batch);
        every record must name it.
        """
        return self.ingest_batches([(gateway, records)], via)[0]

    def ingest_batches(
        self, batches: Sequence[tuple[str | None, Sequence[Any]]], via: str
    ) -> list[list[RecordResult]]:
        """:meth:`ingest` for several (gateway, records) batches in one transaction."""
        now = time.time()
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            results = [
                [self._one(cur, record, via, gateway, now) for record in records]
                for gateway, records in batches
            ]
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return results

    def _one(
        self, cur: sqlite3.Cursor, r: Any, via: str, gateway: str | None, now: float
    ) -> RecordResult:
        problem = record_problem(r, gateway=gateway)
        rid = r.get("id") if isinstance(r, Mapping) else None
        if problem:
            kind = "gateway_mismatch" if problem.startswith("gateway: record says") else "schema"
            return self._reject(cur, r, kind, problem, via=via, now=now)
        key = self.key_of(r["gateway"], r["seq"])
        if key is None:
            return self._reject(
                cur, r, "unregistered", "gateway has no registered key", via=via, now=now
            )
        try:
            digest = record_hash(r)
        except ValueError:  # NaN/Infinity somewhere in the body: no canonical form
            return self._reject(
                cur, r, "schema", "body: not canonical JSON (NaN)", via=via, now=now
            )
        if digest != r["hash"]:
            finding(cur, r["gateway"], "bad_hash", r["seq"], id=rid)
            return self._reject(
                cur, r, "bad_hash", "hash does not match the record", via=via, now=now
            )
        if not verify_signature(key, digest, r["sig"]):
            finding(cur, r["gateway"], "bad_signature", r["seq"], id=rid)
            reason = "signature does not verify with the gateway's key at this seq"
            return self._reject(cur, r, "bad_signature", reason, via=via, now=now)
        held = cur.execute(
            "SELECT count(*), sum(hash = ?) FROM records WHERE gateway = ? AND seq = ?",
            (digest, r["gateway"], r["seq"]),
        ).fetchone()
        self._seen(cur, r["gateway"], now, duplicate=bool(held[1]))
        if held[1]:
            return RecordResult(rid, "duplicate")
        cur.execute(
            "INSERT INTO records (id, gateway, seq, data_class, created_at, clock_synced, body,"
            " prev, hash, sig, resent, via, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?)",
            (
                rid, r["gateway"], r["seq"], r["class"], r["created_at"],
                None if r.get("clock_synced") is None else int(r["clock_synced"]),
                json.dumps(r["body"], ensure_ascii=False), r["prev"], digest, r["sig"],
                int(bool(r.get("resent"))), via, now,
            ),
        )  # fmt: skip
        admit(cur, r, first_at_seq=held[0] == 0, clock_tolerance_s=self.clock_tolerance_s)
        if r["body"]["type"] == "key_rotation" and not held[0]:
            # Only the first record at a seq may rotate: a second one is an equivocation
            # (reported), never a way to swap the key under records already held.
            self._rotated(cur, r, now)
        if held[0]:
            log.warning(
                "equivocation gateway=%s seq=%d id=%s: a second, validly signed record",
                r["gateway"], r["seq"], rid,
            )  # fmt: skip
        return RecordResult(rid, "accepted")

    def _rotated(self, cur: sqlite3.Cursor, r: Mapping[str, Any], now: float) -> None:
        gateway, seq = str(r["gateway"]), int(r["seq"])
        key_hex = str(r["body"]["new_public_key"])
        if not self.keys.rotate(gateway, seq, key_hex, str(r["id"]), float(r["created_at"])):
            return  # already rotated at this seq (the same record taken back twice)
        if flag_retired(cur, self.keys, gateway, seq):
            log.warning(
                "records signed with a retired key gateway=%s rotation_seq=%d", gateway, seq
            )
        for record, via in take_back(cur, self.keys, gateway, seq):
            self._one(cur, record, via, gateway, now)

    def reject_message(self, gateway: str | None, reason: str, payload: bytes, via: str) -> None:
        """Keep aside a whole message that is not a record batch, with the reason."""
        text = payload[:MAX_KEPT_CHARS].decode("utf-8", "replace")
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            self._reject(
                cur,
                {"gateway": gateway, "message": text},
                "schema",
                reason,
                via=via,
                now=time.time(),
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def _seen(self, cur: sqlite3.Cursor, gateway: str, now: float, *, duplicate: bool) -> None:
        cur.execute(
            "INSERT INTO gateways (gateway, last_seen, duplicates) VALUES (?, ?, ?)"
            " ON CONFLICT (gateway) DO UPDATE SET last_seen = excluded.last_seen,"
            " duplicates = duplicates + excluded.duplicates",
            (gateway, now, int(duplicate)),
        )

    def _reject(
        self, cur: sqlite3.Cursor, r: Any, kind: str, reason: str, *, via: str, now: float
    ) -> RecordResult:
        fields = r if isinstance(r, Mapping) else {}
        gateway = fields.get("gateway") if isinstance(fields.get("gateway"), str) else None
        seq = fields.get("seq") if isinstance(fields.get("seq"), int) else None
        rid = fields.get("id") if isinstance(fields.get("id"), str) else None
        try:
            kept = json.dumps(r, ensure_ascii=False, default=str)[:MAX_KEPT_CHARS]
        except ValueError:  # NaN or a circular value: keep its repr, the reason says why
            kept = repr(r)[:MAX_KEPT_CHARS]
        if seq is not None and not -(2**63) <= seq < 2**63:
            seq = None
        cur.execute(
            "INSERT INTO rejected (gateway, seq, id, kind, reason, record, via, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (gateway, seq, rid, kind, reason, kept, via, now),
        )
        if kind != "schema" and gateway is not None and len(gateway) <= 128:
            self._seen(cur, gateway, now, duplicate=False)
        log.warning(
            "record rejected gateway=%s seq=%s id=%s via=%s kind=%s reason=%s",
            gateway, seq, rid, via, kind, reason,
        )  # fmt: skip
        return RecordResult(rid, "rejected", f"{kind}: {reason}")

    def verify(self, gateway: str) -> ChainVerdict:
        """The verdict on ``gateway``'s chain, from the incrementally kept state."""
        return verdict(
            self.conn,
            gateway,
            registered=self.key_of(gateway) is not None,
            rejected=self._rejected_counts(gateway),
            rotations=self.keys.rotations(gateway),
        )

    def close(self) -> None:
        """Close the database."""
        self.conn.close()
