"""Pushing immediate alarms to webhooks: the payloads (pure) and the durable push queue.

A push is a row of ``reg_push``, queued in the same transaction that folds the alarm's
first record in (:mod:`.alerts`). :func:`push_due` POSTs every due row; a 2xx answer
(and, for DingTalk/WeCom robots, ``errcode`` 0) marks it pushed and it is never sent
again; anything else counts an attempt and schedules the next one with exponential
backoff and jitter, until ``max_attempts``, when the row is parked as failed with its last
error (a dead letter, shown on the alert's page). A crash between a robot's 200 and our
commit sends that one alarm again on restart (at least once, as for records).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

    from cloud_sync.regulator_console.config import WebhookConfig

log = logging.getLogger("cloud_sync.regulator_console")

BATCH = 20
"""Due pushes taken per round."""


def push_payload(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The generic JSON form of an alarm (what a ``json`` webhook receives)."""
    detail = alert.get("detail") or {}
    return {
        "type": "offsite-edge.alarm",
        "alert": alert.get("id"),
        "path": f"/regulator/alerts/{alert.get('id')}",
        "gateway": alert.get("gateway"),
        "event_id": alert.get("event_id"),
        "kind": alert.get("kind"),
        "source": alert.get("source"),
        "site": alert.get("site"),
        "severity": alert.get("severity"),
        "status": alert.get("event_status"),
        "started_at": alert.get("started_at"),
        "quantity": alert.get("quantity"),
        "unit": detail.get("unit"),
        "value": detail.get("window_value", detail.get("value")),
        "peak": detail.get("peak"),
        "limit_min": detail.get("limit_min"),
        "limit_max": detail.get("limit_max"),
        "standard": detail.get("standard"),
        "clause": detail.get("clause"),
        "period": detail.get("period"),
        "snapshot_sha256": detail.get("snapshot_sha256"),
    }


def alarm_text(payload: Mapping[str, Any]) -> str:
    """A one-paragraph alarm for a chat robot (plain text, no markup)."""
    when = payload.get("started_at")
    stamp = (
        datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if isinstance(when, int | float)
        else "?"
    )
    lines = [
        f"[offsite-edge 报警 alarm] {payload.get('kind')} at {payload.get('gateway')}"
        f" / {payload.get('source')}" + (f" ({payload['site']})" if payload.get("site") else ""),
        f"time: {stamp}",
    ]
    if payload.get("quantity"):
        limit = payload.get("limit_max", payload.get("limit_min"))
        lines.append(
            f"{payload['quantity']}: {payload.get('value')} {payload.get('unit') or ''}"
            f" (limit {limit}; {payload.get('standard') or '?'} {payload.get('clause') or ''})"
        )
    if payload.get("snapshot_sha256"):
        lines.append(f"evidence: {payload['snapshot_sha256']}")
    lines.append(f"alert: {payload.get('path')}")
    return "\n".join(lines)


def request_body(fmt: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """What is POSTed to a target of format ``fmt``."""
    if fmt in {"dingtalk", "wecom"}:
        return {"msgtype": "text", "text": {"content": alarm_text(payload)}}
    return dict(payload)


def backoff_s(attempts: int, initial_s: float, max_s: float) -> float:
    """Wait after ``attempts`` failures: doubling, capped, with jitter in its upper half."""
    ceiling = min(max_s, initial_s * 2.0 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def answer_problem(fmt: str, status: int, text: str) -> str | None:
    """Why a target's answer is not a success (None: pushed)."""
    if not 200 <= status < 300:
        return f"HTTP {status}: {text[:200]}"
    if fmt in {"dingtalk", "wecom"}:
        try:
            code = json.loads(text).get("errcode", 0)
        except (ValueError, AttributeError):
            return f"not a robot's JSON answer: {text[:200]}"
        if code != 0:
            return f"errcode {code}: {text[:200]}"
    return None


async def push_due(
    conn: sqlite3.Connection,
    http: aiohttp.ClientSession,
    webhooks: Sequence[WebhookConfig],
    *,
    now: float | None = None,
) -> int:
    """POST every due push once; how many succeeded."""
    import aiohttp

    now = time.time() if now is None else now
    by_name = {w.name: w for w in webhooks}
    due = conn.execute(
        "SELECT n, target, payload, attempts FROM reg_push WHERE pushed_at IS NULL AND"
        " failed_at IS NULL AND next_at <= ? ORDER BY next_at LIMIT ?",
        (now, BATCH),
    ).fetchall()
    pushed = 0
    for n, target, payload, tried in due:
        hook = by_name.get(target)
        if hook is None:
            continue  # a target since removed from the config: kept, not sent
        body = request_body(hook.format, json.loads(payload))
        try:
            async with http.post(
                hook.url, json=body, timeout=aiohttp.ClientTimeout(total=hook.timeout_s)
            ) as response:
                problem = answer_problem(hook.format, response.status, await response.text())
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"[:300]
        done_at = time.time()
        if problem is None:
            conn.execute(
                "UPDATE reg_push SET pushed_at = ?, attempts = attempts + 1, last_error = NULL"
                " WHERE n = ? AND pushed_at IS NULL",
                (done_at, n),
            )
            log.info("alarm pushed target=%s push=%d attempts=%d", target, n, tried + 1)
            pushed += 1
            continue
        attempts = tried + 1
        if attempts >= hook.max_attempts:
            conn.execute(
                "UPDATE reg_push SET attempts = ?, failed_at = ?, last_error = ? WHERE n = ?",
                (attempts, done_at, problem, n),
            )
            log.error(
                "alarm push given up target=%s push=%d attempts=%d reason=%s; check the "
                "webhook URL and the robot's security settings",
                target, n, attempts, problem,
            )  # fmt: skip
            continue
        wait = backoff_s(attempts, hook.backoff_initial_s, hook.backoff_max_s)
        conn.execute(
            "UPDATE reg_push SET attempts = ?, next_at = ?, last_error = ? WHERE n = ?",
            (attempts, done_at + wait, problem, n),
        )
        log.warning(
            "alarm push failed target=%s push=%d attempt=%d retry_in_s=%.1f reason=%s",
            target, n, attempts, wait, problem,
        )  # fmt: skip
    return pushed


def pushes_of(conn: sqlite3.Connection, alert: int) -> list[dict[str, Any]]:
    """The push state of one alert per target."""
    keys = ("target", "attempts", "pushed_at", "failed_at", "last_error", "next_at")
    return [
        dict(zip(keys, row, strict=True))
        for row in conn.execute(
            "SELECT target, attempts, pushed_at, failed_at, last_error, next_at FROM reg_push"
            " WHERE alert = ? ORDER BY target",
            (alert,),
        )
    ]


async def sleep_until_due(conn: sqlite3.Connection, wake: asyncio.Event, most_s: float) -> None:
    """Wait until the next push is due, ``wake`` is set, or ``most_s`` passed."""
    row = conn.execute(
        "SELECT min(next_at) FROM reg_push WHERE pushed_at IS NULL AND failed_at IS NULL"
    ).fetchone()
    wait = most_s if row[0] is None else max(0.0, min(most_s, float(row[0]) - time.time()))
    try:
        async with asyncio.timeout(wait):
            await wake.wait()
    except TimeoutError:
        pass
    wake.clear()
