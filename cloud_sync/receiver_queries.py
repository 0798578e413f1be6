"""The reference receiver's read side: records, rejects, gateways, idempotent answers.

Plain queries over the receiver's SQLite (:class:`cloud_sync.receiver_store.ReceiverDB`
is a :class:`ReceiverQueries`); every page is bounded by its caller's ``limit``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

__all__ = ["ReceiverQueries"]


class ReceiverQueries:
    """Read-only questions to the receiver database (and the idempotency memory)."""

    conn: sqlite3.Connection

    def records(
        self,
        *,
        gateway: str | None = None,
        data_class: str | None = None,
        body_type: str | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Admitted records in arrival order, filtered (rejected ones: :meth:`rejected`)."""
        sql = (
            "SELECT arrival, id, gateway, seq, data_class, created_at, clock_synced, body, prev,"
            " hash, sig, resent, received_at FROM records WHERE arrival > ?"
        )
        params: list[Any] = [after]
        for column, value in (("gateway", gateway), ("data_class", data_class)):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
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

    def rejected(
        self, *, gateway: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Rejected records with their reason, in arrival order."""
        sql = (
            "SELECT n, gateway, seq, id, kind, reason, record, via, received_at FROM rejected"
            " WHERE n > ?"
        )
        params: list[Any] = [after]
        if gateway:
            sql += " AND gateway = ?"
            params.append(gateway)
        sql += " ORDER BY n LIMIT ?"
        params.append(limit)
        keys = ("n", "gateway", "seq", "id", "kind", "reason", "record", "via", "received_at")
        return [dict(zip(keys, row, strict=True)) for row in self.conn.execute(sql, params)]

    def gateways(self) -> list[dict[str, Any]]:
        """Per gateway: last seen, record, duplicate and rejected counts, key registered."""
        rows = self.conn.execute(
            "SELECT g.gateway, g.last_seen, g.duplicates, coalesce(c.records, 0),"
            " k.public_key IS NOT NULL FROM gateways g"
            " LEFT JOIN chain_state c ON c.gateway = g.gateway"
            " LEFT JOIN keys k ON k.gateway = g.gateway ORDER BY g.gateway"
        ).fetchall()
        return [
            {
                "gateway": gateway,
                "last_seen": last_seen,
                "records": records,
                "duplicates": dups,
                "rejected": sum(self._rejected_counts(gateway).values()),
                "key_source": "registered" if registered else None,
            }
            for gateway, last_seen, dups, records, registered in rows
        ]

    def _rejected_counts(self, gateway: str) -> dict[str, int]:
        return {
            str(kind): int(n)
            for kind, n in self.conn.execute(
                "SELECT kind, count(*) FROM rejected WHERE gateway = ? GROUP BY kind", (gateway,)
            )
        }

    def gateway_names(self) -> list[str]:
        """Every gateway that sent something or has a key."""
        return [
            str(g)
            for (g,) in self.conn.execute(
                "SELECT gateway FROM gateways UNION SELECT gateway FROM keys ORDER BY 1"
            )
        ]

    def idempotent_response(self, key: str) -> str | None:
        """The stored response of an already processed batch."""
        row = self.conn.execute("SELECT response FROM idempotency WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def remember(self, key: str, response: str) -> None:
        """Store a batch response under its idempotency key."""
        self.conn.execute(
            "INSERT OR IGNORE INTO idempotency (key, response) VALUES (?, ?)", (key, response)
        )
