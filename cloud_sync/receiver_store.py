"""The reference receiver's storage: every record once, and each gateway's chain verified.

One SQLite file holds the records (deduplicated by id, in arrival order), a row per
gateway (last seen, duplicate count, the key it announced) and the responses of HTTPS
batches already processed (idempotency). :func:`parse_batch` reads the uplink batch
format both intakes (MQTT and HTTPS) hand to :meth:`ReceiverDB.ingest`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cloud_sync.chain import ChainReport, public_key_from_hex, verify_chain

__all__ = ["REQUIRED", "SCHEMA", "ReceiverDB", "parse_batch"]

# The receiver's logger name from before the split, so its log lines keep their tag.
log = logging.getLogger("cloud_sync.receiver")

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    arrival INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data_class TEXT NOT NULL,
    created_at REAL,
    clock_synced INTEGER,
    body TEXT NOT NULL,
    prev TEXT,
    hash TEXT,
    sig TEXT,
    resent INTEGER NOT NULL,
    via TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_gateway_seq ON records (gateway, seq);
CREATE TABLE IF NOT EXISTS gateways (
    gateway TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0,
    public_key TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL
);
"""

REQUIRED = ("gateway", "seq", "id", "class", "body")


class ReceiverDB:
    """The receiver's SQLite: records deduplicated by id."""

    def __init__(self, path: Path | str, trust: Mapping[str, str] | None = None) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)
        self.trust = dict(trust or {})

    def ingest(self, records: Sequence[Mapping[str, Any]], via: str) -> tuple[int, int]:
        """Store records (one transaction); return (new, duplicates)."""
        now = time.time()
        new = dup = 0
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for r in records:
                if any(k not in r for k in REQUIRED):
                    log.warning("record rejected reason=missing_fields via=%s", via)
                    continue
                cur.execute(
                    "INSERT OR IGNORE INTO records (id, gateway, seq, data_class, created_at,"
                    " clock_synced, body, prev, hash, sig, resent, via, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r["id"],
                        r["gateway"],
                        int(r["seq"]),
                        r["class"],
                        r.get("created_at"),
                        r.get("clock_synced"),
                        json.dumps(r["body"], ensure_ascii=False),
                        r.get("prev"),
                        r.get("hash"),
                        r.get("sig"),
                        int(bool(r.get("resent"))),
                        via,
                        now,
                    ),
                )
                inserted = cur.rowcount == 1
                new += inserted
                dup += not inserted
                key = r["body"].get("public_key") if isinstance(r["body"], dict) else None
                cur.execute(
                    "INSERT INTO gateways (gateway, last_seen, duplicates, public_key)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (gateway) DO UPDATE SET"
                    " last_seen = excluded.last_seen,"
                    " duplicates = duplicates + excluded.duplicates,"
                    " public_key = coalesce(public_key, excluded.public_key)",
                    (r["gateway"], now, int(not inserted), key),
                )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return new, dup

    def records(
        self,
        *,
        gateway: str | None = None,
        data_class: str | None = None,
        body_type: str | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Records in arrival order, filtered."""
        sql = (
            "SELECT arrival, id, gateway, seq, data_class, created_at, clock_synced, body, prev,"
            " hash, sig, resent, received_at FROM records WHERE arrival > ?"
        )
        params: list[Any] = [after]
        if gateway:
            sql += " AND gateway = ?"
            params.append(gateway)
        if data_class:
            sql += " AND data_class = ?"
            params.append(data_class)
        if body_type:
            sql += " AND json_extract(body, '$.type') = ?"
            params.append(body_type)
        sql += " ORDER BY arrival LIMIT ?"
        params.append(limit)
        return [
            {
                "arrival": row[0],
                "id": row[1],
                "gateway": row[2],
                "seq": row[3],
                "class": row[4],
                "created_at": row[5],
                "clock_synced": None if row[6] is None else bool(row[6]),
                "body": json.loads(row[7]),
                "prev": row[8],
                "hash": row[9],
                "sig": row[10],
                "resent": bool(row[11]),
                "received_at": row[12],
            }
            for row in self.conn.execute(sql, params)
        ]

    def gateways(self) -> list[dict[str, Any]]:
        """Per-gateway last seen, counts and key source."""
        out = []
        for gateway, last_seen, dups, key in self.conn.execute(
            "SELECT gateway, last_seen, duplicates, public_key FROM gateways ORDER BY gateway"
        ):
            (count,) = self.conn.execute(
                "SELECT count(*) FROM records WHERE gateway = ?", (gateway,)
            ).fetchone()
            out.append(
                {
                    "gateway": gateway,
                    "last_seen": last_seen,
                    "records": count,
                    "duplicates": dups,
                    "key_source": "configured"
                    if gateway in self.trust
                    else ("tofu" if key else None),
                }
            )
        return out

    def verify(self, gateway: str) -> ChainReport:
        """Verify a gateway's chain with its configured key, else the key it announced."""
        row = self.conn.execute(
            "SELECT public_key FROM gateways WHERE gateway = ?", (gateway,)
        ).fetchone()
        key_hex = self.trust.get(gateway) or (row[0] if row else None)
        key = public_key_from_hex(key_hex) if key_hex else None
        records = [
            {
                "gateway": gateway,
                "seq": r[0],
                "id": r[1],
                "class": r[2],
                "created_at": r[3],
                "clock_synced": None if r[4] is None else bool(r[4]),
                "body": json.loads(r[5]),
                "prev": r[6],
                "hash": r[7],
                "sig": r[8],
            }
            for r in self.conn.execute(
                "SELECT seq, id, data_class, created_at, clock_synced, body, prev, hash, sig"
                " FROM records WHERE gateway = ? ORDER BY seq",
                (gateway,),
            )
        ]
        return verify_chain(records, key)

    def idempotent_response(self, key: str) -> str | None:
        """The stored response of an already processed batch."""
        row = self.conn.execute("SELECT response FROM idempotency WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def remember(self, key: str, response: str) -> None:
        """Store a batch response under its idempotency key."""
        self.conn.execute(
            "INSERT OR IGNORE INTO idempotency (key, response) VALUES (?, ?)", (key, response)
        )

    def close(self) -> None:
        """Close the database."""
        self.conn.close()


def parse_batch(payload: bytes) -> list[dict[str, Any]]:
    """Records of an uplink message/body (``{"gateway", "records": [...]}``)."""
    data = json.loads(payload)
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ValueError("payload has no records list")
    return [r for r in records if isinstance(r, dict)]
