"""Alerts derived from the receiver's records, incrementally, and the queries of the pages.

:func:`sync` reads admitted records after the console's cursor (``records.arrival``) and,
in one transaction per chunk with the cursor's advance, folds them into the console's
tables: every ``event`` body into ``reg_alerts`` (one row per gateway and ``event_id``;
records arrive out of order and more than once, so the highest ``seq`` decides the
lifecycle fields and the worst severity sticks), every ``minute`` body into ``reg_minutes``
(the chart), and evasion signals into ``reg_signals``. The first alarm-class record of an
event queues one webhook push per target in the same transaction, so a push is never
queued twice nor lost by a crash between the two.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloud_sync.regulator_console.push import push_payload
from cloud_sync.regulator_console.schema import (
    SEVERITY_RANK,
    count_daily,
    count_open,
    day_of,
)

CURSOR = "records"
CHUNK = 2000
"""Records folded per transaction: bounds how long one sync holds the writer."""
STATES = ("new", "acknowledged", "assigned", "rectified", "closed")
OPEN = "open"
"""The status filter's "not closed yet"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """What the alert list is narrowed to (empty: no narrowing)."""

    gateway: str = ""
    kind: str = ""
    min_severity: str = "warning"
    state: str = ""
    since: float | None = None
    until: float | None = None


def _number(value: Any, default: float | None = None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


def cursor_of(conn: sqlite3.Connection) -> int:
    """The arrival of the last record folded in."""
    row = conn.execute("SELECT arrival FROM reg_cursor WHERE name = ?", (CURSOR,)).fetchone()
    return 0 if row is None else int(row[0])


def pending(conn: sqlite3.Connection) -> bool:
    """Whether records arrived that are not folded in yet (one indexed lookup)."""
    row = conn.execute("SELECT max(arrival) FROM records").fetchone()
    return row[0] is not None and int(row[0]) > cursor_of(conn)


def sync(conn: sqlite3.Connection, targets: Sequence[str] = (), *, limit: int = CHUNK) -> int:
    """Fold up to ``limit`` new records in (one transaction); how many were read."""
    after = cursor_of(conn)
    rows = conn.execute(
        "SELECT arrival, gateway, seq, data_class, created_at, clock_synced, body FROM records"
        " WHERE arrival > ? ORDER BY arrival LIMIT ?",
        (after, limit),
    ).fetchall()
    if not rows:
        return 0
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for arrival, gateway, seq, data_class, created_at, clock_synced, body_text in rows:
            try:
                body = json.loads(body_text)
            except ValueError:
                continue  # the receiver stored it from valid JSON; nothing to fold
            if not isinstance(body, dict):
                continue
            if clock_synced == 0:
                _signal(conn, gateway, "clock_unsynced", 1, created_at)
            kind = body.get("type")
            if kind == "event":
                alert = _event(conn, arrival, gateway, seq, created_at, body)
                if data_class == "alarm" and alert is not None:
                    _queue_push(conn, alert, arrival, targets, now)
            elif kind == "minute":
                _minute(conn, gateway, seq, body)
            elif kind == "gap":
                records = body.get("records")
                _signal(conn, gateway, "gap_records", records if isinstance(records, int) else 1,
                        created_at)  # fmt: skip
            elif kind == "command" and body.get("refused"):
                _signal(conn, gateway, "refused_commands", 1, created_at)
        conn.execute(
            "INSERT INTO reg_cursor (name, arrival) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET arrival = excluded.arrival",
            (CURSOR, rows[-1][0]),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)


def sync_all(conn: sqlite3.Connection, targets: Sequence[str] = ()) -> int:
    """Fold in everything pending, chunk by chunk; how many records were read."""
    total = 0
    while n := sync(conn, targets):
        total += n
    return total


def _event(  # noqa: PLR0917 - one record's columns
    conn: sqlite3.Connection,
    arrival: int,
    gateway: str,
    seq: int,
    created_at: float | None,
    body: dict[str, Any],
) -> int | None:
    event_id = _text(body.get("event_id"))
    if event_id is None:
        return None
    raw = body.get("detail")
    detail: dict[str, Any] = raw if isinstance(raw, dict) else {}
    severity = str(body.get("severity"))
    severity = severity if severity in SEVERITY_RANK else "info"
    source = _text(body.get("source")) or ""
    started = _number(body.get("started_at"), created_at) or 0.0
    old = conn.execute(
        "SELECT sev_rank, started_at, state FROM reg_alerts WHERE gateway = ? AND event_id = ?",
        (gateway, event_id),
    ).fetchone()
    row = conn.execute(
        "INSERT INTO reg_alerts (gateway, event_id, kind, source, sensor, quantity, site,"
        " severity, sev_rank, event_status, started_at, ended_at, detail, first_seq, last_seq,"
        " first_arrival, last_arrival) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (gateway, event_id) DO UPDATE SET"
        "  severity = CASE WHEN excluded.sev_rank > sev_rank THEN excluded.severity"
        "   ELSE severity END,"
        "  sev_rank = max(sev_rank, excluded.sev_rank),"
        "  started_at = min(started_at, excluded.started_at),"
        "  event_status = CASE WHEN excluded.last_seq > last_seq THEN excluded.event_status"
        "   ELSE event_status END,"
        "  ended_at = CASE WHEN excluded.last_seq > last_seq THEN excluded.ended_at"
        "   ELSE ended_at END,"
        "  detail = CASE WHEN excluded.last_seq > last_seq THEN excluded.detail ELSE detail END,"
        "  last_seq = max(last_seq, excluded.last_seq),"
        "  first_seq = min(first_seq, excluded.first_seq),"
        "  last_arrival = excluded.last_arrival, records = records + 1"
        " RETURNING id, kind, sev_rank, started_at, state, site",
        (
            gateway, event_id, _text(body.get("kind")) or "?", source,
            _text(detail.get("sensor")) or source, _text(detail.get("quantity")),
            _text(detail.get("site")), severity, SEVERITY_RANK[severity],
            _text(body.get("status")) or "?", started, _number(body.get("ended_at")),
            json.dumps(detail, ensure_ascii=False), seq, seq, arrival, arrival,
        ),
    ).fetchone()  # fmt: skip
    alert, kind, rank, started, state, site = row
    _count(conn, gateway, old, (kind, rank, started, state))
    if site is not None and old is None:
        conn.execute(
            "INSERT INTO reg_sites (gateway, site) VALUES (?, ?)"
            " ON CONFLICT DO UPDATE SET site = excluded.site",
            (gateway, site),
        )
    return int(alert)


def _count(
    conn: sqlite3.Connection,
    gateway: str,
    old: tuple[int, float, str] | None,
    new: tuple[str, int, float, str],
) -> None:
    """Keep the risk list's per-day and open counts in step with one alert's change."""
    kind, rank, started, state = new
    if old is not None and (old[0], day_of(old[1])) == (rank, day_of(started)):
        return
    if old is not None:
        count_daily(conn, gateway, day_of(old[1]), kind, old[0], -1)
        if old[2] != "closed":
            count_open(conn, gateway, old[0], -1)
    count_daily(conn, gateway, day_of(started), kind, rank, 1)
    if state != "closed":
        count_open(conn, gateway, rank, 1)


def _queue_push(
    conn: sqlite3.Connection, alert: int, arrival: int, targets: Sequence[str], now: float
) -> None:
    if not targets:
        return
    payload = json.dumps(push_payload(alert_by_id(conn, alert) or {}), ensure_ascii=False)
    conn.executemany(
        "INSERT OR IGNORE INTO reg_push (alert, target, arrival, payload, next_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [(alert, target, arrival, payload, now) for target in targets],
    )


def _minute(conn: sqlite3.Connection, gateway: str, seq: int, body: dict[str, Any]) -> None:
    sensor, minute, items = body.get("sensor_id"), body.get("minute"), body.get("items")
    if not isinstance(sensor, str) or not isinstance(minute, int) or not isinstance(items, list):
        return
    # One value per quantity: the count-weighted mean over its flags (Leq for sound levels).
    folded: dict[str, list[Any]] = {}
    flagged = False
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("quantity"), str):
            continue
        raw = item.get("count")
        count = raw if isinstance(raw, int) else 0
        value = _number(item.get("leq"), _number(item.get("avg")))
        lo, hi = _number(item.get("min"), value), _number(item.get("max"), value)
        if value is None or lo is None or hi is None or count <= 0:
            continue
        flag = str(item.get("flag", "N"))[:1]
        flagged |= flag not in {"N", "T"}
        acc = folded.setdefault(item["quantity"], [0, 0.0, lo, hi, ""])
        acc[0] += count
        acc[1] += value * count
        acc[2], acc[3] = min(acc[2], lo), max(acc[3], hi)
        acc[4] += flag if flag not in acc[4] else ""
    conn.executemany(
        "INSERT INTO reg_minutes (gateway, sensor, quantity, minute, value, lo, hi, flags, seq)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = excluded.value,"
        " lo = excluded.lo, hi = excluded.hi, flags = excluded.flags, seq = excluded.seq"
        " WHERE excluded.seq > seq",
        [
            (gateway, sensor[:128], q[:64], minute, s / n, lo, hi, flags, seq)
            for q, (n, s, lo, hi, flags) in folded.items()
        ],
    )
    if flagged:
        # Minutes the site itself declared not normal (maintenance, calibration, fault…).
        _signal(conn, gateway, "flagged_minutes", 1, float(minute))


def _signal(
    conn: sqlite3.Connection, gateway: str, signal: str, count: int, at: float | None
) -> None:
    conn.execute(
        "INSERT INTO reg_signals (gateway, signal, count, last_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET count = count + excluded.count,"
        " last_at = max(coalesce(last_at, 0), coalesce(excluded.last_at, 0))",
        (gateway, signal, max(0, count), at),
    )


# -- queries ------------------------------------------------------------------------------

_COLUMNS = (
    "id, gateway, event_id, kind, source, sensor, quantity, site, severity, event_status,"
    " state, assignee, started_at, ended_at, detail, first_seq, last_seq, records"
)
_KEYS = tuple(c.strip() for c in _COLUMNS.split(","))


def _row(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(_KEYS, row, strict=True))
    out["detail"] = json.loads(out["detail"])
    return out


def alert_by_id(conn: sqlite3.Connection, alert: int) -> dict[str, Any] | None:
    """One alert with its latest detail."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM reg_alerts WHERE id = ?", (alert,)).fetchone()  # noqa: S608
    return None if row is None else _row(row)


def _where(filters: Filters) -> tuple[str, list[Any]]:
    clauses = ["sev_rank >= ?"]
    params: list[Any] = [SEVERITY_RANK.get(filters.min_severity, 0)]
    if filters.state == OPEN:
        clauses.append("state != 'closed'")
    elif filters.state:
        clauses.append("state = ?")
        params.append(filters.state)
    for column, value in (("gateway", filters.gateway), ("kind", filters.kind)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if filters.since is not None:
        clauses.append("started_at >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("started_at < ?")
        params.append(filters.until)
    return " AND ".join(clauses), params


def list_alerts(
    conn: sqlite3.Connection, filters: Filters, *, before: tuple[float, int] | None, limit: int
) -> list[dict[str, Any]]:
    """One page of alerts, newest first; ``before`` is the (started_at, id) keyset cursor."""
    where, params = _where(filters)
    if before is not None:
        where += " AND (started_at < ? OR (started_at = ? AND id < ?))"
        params += [before[0], before[0], before[1]]
    sql = (
        f"SELECT {_COLUMNS} FROM reg_alerts WHERE {where}"  # noqa: S608 - placeholders only
        " ORDER BY started_at DESC, id DESC LIMIT ?"
    )
    return [_row(r) for r in conn.execute(sql, [*params, limit])]


def count_alerts(conn: sqlite3.Connection, filters: Filters, cap: int = 10_000) -> int:
    """How many alerts match, counted up to ``cap`` (+1 means "more than cap")."""
    where, params = _where(filters)
    sql = f"SELECT count(*) FROM (SELECT 1 FROM reg_alerts WHERE {where} LIMIT ?)"  # noqa: S608
    return int(conn.execute(sql, [*params, cap + 1]).fetchone()[0])


def choices(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """The gateways and kinds the filter menus offer."""
    return {"gateways": _distinct(conn, "gateway"), "kinds": _distinct(conn, "kind")}


def _distinct(conn: sqlite3.Connection, column: str) -> list[str]:
    # A skip scan: one index seek per distinct value, not a pass over every alert.
    sql = (
        f"WITH RECURSIVE v(x) AS (SELECT min({column}) FROM reg_alerts UNION ALL"  # noqa: S608
        f" SELECT (SELECT min({column}) FROM reg_alerts WHERE {column} > v.x) FROM v"
        " WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL"
    )
    return [str(x) for (x,) in conn.execute(sql)]


def minutes_around(
    conn: sqlite3.Connection, alert: dict[str, Any], *, margin_s: float = 1800.0
) -> list[tuple[int, float, float, float, str]]:
    """(minute, value, min, max, flags) of the alert's sensor and quantity around the event."""
    if not alert.get("quantity"):
        return []
    start = float(alert["started_at"]) - margin_s
    end = float(alert["ended_at"] or alert["started_at"]) + margin_s
    return [
        (int(m), float(v), float(lo), float(hi), str(f))
        for m, v, lo, hi, f in conn.execute(
            "SELECT minute, value, lo, hi, flags FROM reg_minutes WHERE gateway = ? AND"
            " sensor = ? AND quantity = ? AND minute >= ? AND minute <= ? ORDER BY minute"
            " LIMIT 1000",
            (alert["gateway"], alert["sensor"], alert["quantity"], int(start), int(end)),
        )
    ]
