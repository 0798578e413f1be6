"""Read-only questions about the outbox, asked beside the running gateway.

Status views ask for the backlog and the last delivery, the demo for the event changes
recorded so far, the evidence quota whether a receiver confirmed holding a snapshot. Each
opens the database read-only (``edge.readonly``); only the writer changes the outbox.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from cloud_sync.policy import PRIORITY
from edge.readonly import connect_read_only

_CLASS_BY_PRIORITY = {priority: name for name, priority in PRIORITY.items()}


def backlog(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Records not yet acknowledged, per uplink and data class."""
    out: dict[str, dict[str, int]] = {}
    for uplink, priority, count in db.execute(
        "SELECT uplink, priority, count(*) FROM outbox_pending GROUP BY 1, 2"
    ):
        out.setdefault(uplink, {})[_CLASS_BY_PRIORITY.get(priority, "?")] = count
    return out


def oldest_pending(db: sqlite3.Connection) -> dict[str, dict[str, float]]:
    """When the oldest record not yet acknowledged was created, per uplink and data class."""
    out: dict[str, dict[str, float]] = {}
    # The inner query walks the primary key (uplink, priority, seq); one outbox row per group.
    for uplink, priority, created_at in db.execute(
        "SELECT p.uplink, p.priority, o.created_at FROM (SELECT uplink, priority, min(seq) AS seq"
        " FROM outbox_pending GROUP BY 1, 2) p JOIN outbox o ON o.seq = p.seq"
    ):
        out.setdefault(uplink, {})[_CLASS_BY_PRIORITY.get(priority, "?")] = float(created_at)
    return out


def last_delivered_at(db: sqlite3.Connection) -> float | None:
    """When the newest fully delivered record was acknowledged (None: never)."""
    row = db.execute("SELECT max(delivered_at) FROM outbox").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def recent_events(path: Path, *, after_seq: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """Event changes (open, update, close) after sequence number ``after_seq``, in order.

    Read from the outbox, which keeps every change, while ``events`` keeps the latest state.
    """
    with closing(connect_read_only(path)) as db:
        return [
            json.loads(r["body"])
            for r in db.execute(
                "SELECT body FROM outbox WHERE seq > ? AND json_extract(body, '$.type') = 'event'"
                " ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
        ]


def evidence_delivered(db_path: Path) -> Callable[[str], bool]:
    """Whether a receiver confirmed holding a snapshot's verified bytes (see evidence_queue).

    The evidence quota deletes confirmed snapshots first and keeps unconfirmed ones as long
    as the outbox can lend it room. Delivery of the violation *event* is not enough: the
    record carries only the hash, the picture is what the regulator needs. Asked only when
    the quota is exceeded, one read-only connection per question.
    """

    def delivered(sha256: str) -> bool:
        try:
            with closing(connect_read_only(db_path)) as db:
                row = db.execute(
                    "SELECT 1 FROM evidence_uploads WHERE sha256 = ? AND confirmed_at IS NOT NULL",
                    (sha256,),
                ).fetchone()
        except (sqlite3.Error, FileNotFoundError):
            return False
        return row is not None

    return delivered
