"""The handling trail of an alert (全过程留痕): append-only steps with who and when.

An alert moves ``new → acknowledged → assigned → rectified → closed``; a comment can be
added at any time, assigning again hands it to someone else, and an alert can be closed
from any state (a false alarm) but never reopened. :func:`next_state` is the whole rule
(pure); :func:`take_step` checks it and appends the step in one transaction with the
alert's cached state. ``reg_steps`` refuses UPDATE and DELETE (triggers), so the trail
can only grow. Attachments are stored by their SHA-256 beside the database, once.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_sync.errors import CloudSyncError
from cloud_sync.regulator_console.schema import count_open
from edge.files import write_once

ACTIONS = ("acknowledge", "assign", "comment", "rectified", "close")
MAX_COMMENT = 2000
MAX_NAME = 64
_FROM = {
    "acknowledge": {"new"},
    "assign": {"new", "acknowledged", "assigned", "rectified"},
    "rectified": {"acknowledged", "assigned"},
    "close": {"new", "acknowledged", "assigned", "rectified"},
}
_TO = {
    "acknowledge": "acknowledged",
    "assign": "assigned",
    "rectified": "rectified",
    "close": "closed",
}


class StepRefusedError(CloudSyncError):
    """A handling step that does not apply to the alert as it is (the reason says why)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What a regulator asks to do to an alert."""

    action: str
    who: str
    assignee: str | None = None
    comment: str | None = None
    attachment: str | None = None
    """SHA-256 of an attachment already stored (:func:`store_attachment`)."""


def next_state(state: str, step: Step) -> str:
    """The alert's state after ``step``; raise :class:`StepRefusedError` when it does not apply."""
    if step.action not in ACTIONS:
        raise StepRefusedError(f"unknown action {step.action!r}")
    if step.comment is not None and len(step.comment) > MAX_COMMENT:
        raise StepRefusedError(f"a comment has at most {MAX_COMMENT} characters")
    if step.action == "comment":
        if not (step.comment or "").strip():
            raise StepRefusedError("a comment needs text")
        return state
    if state not in _FROM[step.action]:
        verb = "mark rectified" if step.action == "rectified" else step.action
        raise StepRefusedError(f"cannot {verb} an alert that is {state}")
    if step.action == "assign" and not (step.assignee or "").strip():
        raise StepRefusedError("assign to whom? name the assignee")
    if step.action == "rectified" and step.attachment is None:
        raise StepRefusedError("marking rectified needs an attachment (photo, report)")
    return _TO[step.action]


def take_step(conn: sqlite3.Connection, alert: int, step: Step, *, now: float | None = None) -> str:
    """Append ``step`` to ``alert``'s trail and update its state (one transaction)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT state, gateway, sev_rank FROM reg_alerts WHERE id = ?", (alert,)
        ).fetchone()
        if row is None:
            raise StepRefusedError(f"no alert {alert}")
        after = next_state(str(row[0]), step)
        if after == "closed" and row[0] != "closed":
            count_open(conn, row[1], row[2], -1)
        assignee = (step.assignee or "").strip()[:MAX_NAME] or None
        conn.execute(
            "INSERT INTO reg_steps (alert, action, who, at, assignee, comment, attachment,"
            " state_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                alert, step.action, step.who, time.time() if now is None else now, assignee,
                (step.comment or "").strip() or None, step.attachment, after,
            ),
        )  # fmt: skip
        if step.action == "assign":
            conn.execute(
                "UPDATE reg_alerts SET state = ?, assignee = ? WHERE id = ?",
                (after, assignee, alert),
            )
        else:
            conn.execute("UPDATE reg_alerts SET state = ? WHERE id = ?", (after, alert))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return after


def steps_of(conn: sqlite3.Connection, alert: int) -> list[dict[str, Any]]:
    """The alert's trail, oldest first, with each attachment's name and size."""
    keys = ("n", "action", "who", "at", "assignee", "comment", "attachment", "state_after",
            "attachment_name", "attachment_size")  # fmt: skip
    return [
        dict(zip(keys, row, strict=True))
        for row in conn.execute(
            "SELECT s.n, s.action, s.who, s.at, s.assignee, s.comment, s.attachment,"
            " s.state_after, a.name, a.size FROM reg_steps s"
            " LEFT JOIN reg_attachments a ON a.sha256 = s.attachment"
            " WHERE s.alert = ? ORDER BY s.n",
            (alert,),
        )
    ]


def safe_name(name: str) -> str:
    """A file name fit to show and to offer as a download name."""
    base = re.sub(r"[^\w.\- ]", "_", os.path.basename(name))[:100].strip()
    return base or "attachment"


def store_attachment(
    conn: sqlite3.Connection, folder: Path, data: bytes, name: str, content_type: str
) -> str:
    """Keep ``data`` as ``folder/<sha256>`` (written once, fsynced) and record it."""
    digest = hashlib.sha256(data).hexdigest()
    write_once(folder / digest, data)
    conn.execute(
        "INSERT OR IGNORE INTO reg_attachments (sha256, name, content_type, size, stored_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (digest, safe_name(name), content_type[:100], len(data), time.time()),
    )
    return digest


def attachment(conn: sqlite3.Connection, digest: str) -> tuple[str, str] | None:
    """(name, content type) of a stored attachment."""
    row = conn.execute(
        "SELECT name, content_type FROM reg_attachments WHERE sha256 = ?", (digest,)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))
