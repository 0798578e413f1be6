"""The console's pages: login, password, alert list, one alert, evidence, risk list."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from cloud_sync.regulator_console import accounts
from cloud_sync.regulator_console.alerts import (
    OPEN,
    STATES,
    Filters,
    alert_by_id,
    choices,
    count_alerts,
    list_alerts,
    minutes_around,
)
from cloud_sync.regulator_console.chart import chart_svg
from cloud_sync.regulator_console.push import pushes_of
from cloud_sync.regulator_console.risk import as_rows, gather, risk_csv, risk_list
from cloud_sync.regulator_console.state import (
    KEYS,
    ROLE,
    log,
    render,
    session_of,
    set_cookie,
    state_of,
)
from cloud_sync.regulator_console.trail import ACTIONS, attachment, steps_of

SHA256 = re.compile(r"[0-9a-f]{64}")
SEVERITIES = ("info", "warning", "alarm")
FACTS = (
    "standard", "clause", "profile", "quantity", "unit", "limit_min", "limit_max", "period",
    "window_value", "value", "peak", "peak_excess", "peak_excess_ratio", "duration_s",
    "window_s", "windows", "site", "location", "violation", "zone", "median_score",
)  # fmt: skip


def add_routes(app: web.Application) -> None:
    """The page routes (relative to the console's mount point)."""
    app.router.add_get("/", _home)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/password", password_page)
    app.router.add_post("/password", set_password)
    app.router.add_get("/alerts", alerts_page)
    app.router.add_get("/alerts/{alert:\\d+}", alert_page)
    app.router.add_get("/evidence/{sha256}", evidence)
    app.router.add_get("/attachments/{sha256}", attachment_file)
    app.router.add_get("/risk", risk_page)
    app.router.add_get("/risk.csv", risk_export)


async def _home(request: web.Request) -> web.StreamResponse:
    del request
    raise web.HTTPSeeOther("/regulator/alerts")


# -- login --------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.StreamResponse:
    """The login form, with a fresh anonymous session carrying its CSRF token."""
    session = KEYS.login_session(request, state_of(request).sessions.new, home="/regulator/alerts")
    response = render(request, "login.html")
    set_cookie(request, response, session)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """Check a login; on success replace the anonymous session with the regulator's."""
    state = state_of(request)
    old = session_of(request)
    assert old is not None  # the CSRF check needs a session
    form = await request.post()
    name = str(form.get("name", "")).strip()[:64]
    password = str(form.get("password", ""))
    wait = state.throttle.wait_s(name)
    if wait > 0:
        log.warning("regulator login refused name=%r address=%s reason=throttled", name,
                    request.remote)  # fmt: skip
        return render(request, "login.html", status=429,
                      error=f"Too many failed logins: try again in {wait:.0f} s.")  # fmt: skip
    found = accounts.stored(state.conn, name)
    async with state.hashing:
        ok = await asyncio.to_thread(
            accounts.password_matches, None if found is None else found[1], password
        )
    who = found[0] if found is not None and ok else None
    if who is None:
        state.throttle.failed(name)
        log.warning("regulator login failed name=%r address=%s", name, request.remote)
        return render(request, "login.html", status=401, error="Wrong account or password.")
    state.throttle.succeeded(name)
    log.info("regulator login name=%s role=%s address=%s", who.name, who.role, request.remote)
    state.sessions.drop(old.token)
    session = state.sessions.new(who.name)
    response = web.HTTPSeeOther("/regulator/password" if who.must_change else "/regulator/alerts")
    set_cookie(request, response, session)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session."""
    session = session_of(request)
    if session is not None:
        state_of(request).sessions.drop(session.token)
    raise web.HTTPSeeOther("/regulator/login")


async def password_page(request: web.Request) -> web.StreamResponse:
    """The form to choose one's own password."""
    return render(request, "password.html")


async def set_password(request: web.Request) -> web.StreamResponse:
    """Replace the password (the current one is checked); end the user's other sessions."""
    state, session = state_of(request), session_of(request)
    assert session is not None
    assert session.user is not None
    form = await request.post()
    current, new, again = (str(form.get(k, "")) for k in ("current", "new", "again"))
    if new != again:
        return render(request, "password.html", status=400, error="The new passwords differ.")
    found = accounts.stored(state.conn, session.user)
    async with state.hashing:
        ok = found is not None and await asyncio.to_thread(
            accounts.password_matches, found[1], current
        )
        if not ok:
            return render(request, "password.html", status=401,
                          error="The current password is wrong.")  # fmt: skip
        try:
            hashed = await asyncio.to_thread(accounts.new_password_hash, new)
        except accounts.AccountError as exc:
            return render(request, "password.html", status=400, error=f"{exc}.")
    accounts.store_password(state.conn, session.user, hashed)
    state.sessions.drop_user(session.user, keep=session.token)
    state.sessions.note(session, "Password changed.")
    log.info("regulator password changed name=%s", session.user)
    raise web.HTTPSeeOther("/regulator/alerts")


# -- alerts -------------------------------------------------------------------------------


def _time(text: str) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).astimezone().timestamp()
    except ValueError:
        raise web.HTTPBadRequest(text=f"not a date and time: {text[:40]!r}") from None


def filters_of(query: Any) -> Filters:
    """The list's filters from a query string (unknown values: 400)."""
    severity = query.get("severity", "warning")
    state = query.get("state", "")
    if severity not in SEVERITIES or (state and state not in (*STATES, OPEN)):
        raise web.HTTPBadRequest(text="unknown severity or state")
    return Filters(
        gateway=query.get("gateway", "")[:128],
        kind=query.get("kind", "")[:64],
        min_severity=severity,
        state=state,
        since=_time(query.get("since", "")),
        until=_time(query.get("until", "")),
    )


async def alerts_page(request: web.Request) -> web.StreamResponse:
    """Alerts across gateways, filtered, newest first, one keyset page at a time."""
    state = state_of(request)
    filters = filters_of(request.query)
    before = None
    if "before" in request.query:
        m = re.fullmatch(r"([0-9.]+)_(\d+)", request.query["before"])
        if m is None:
            raise web.HTTPBadRequest(text="bad page cursor")
        before = (float(m[1]), int(m[2]))
    size = state.config.page_size
    rows = list_alerts(state.conn, filters, before=before, limit=size + 1)
    more = rows[size]["started_at"] if len(rows) > size else None
    rows = rows[:size]
    query = {k: v for k, v in request.query.items() if k != "before"}
    next_page = None
    if more is not None:
        last = rows[-1]
        next_page = {**query, "before": f"{last['started_at']!r}_{last['id']}"}
    menus = choices(state.conn)
    return render(
        request,
        "alerts.html",
        alerts=rows,
        total=count_alerts(state.conn, filters),
        query=query,
        next_page=next_page,
        severities=SEVERITIES,
        states=(OPEN, *STATES),
        gateways=menus["gateways"],
        kinds=menus["kinds"],
    )


async def alert_page(request: web.Request) -> web.StreamResponse:
    """One alert: its facts, evidence, chart, chain verdict, pushes and handling trail."""
    state = state_of(request)
    alert = alert_by_id(state.conn, int(request.match_info["alert"]))
    if alert is None:
        raise web.HTTPNotFound(text="no such alert")
    detail = alert["detail"]
    limits = [v for v in (detail.get("limit_min"), detail.get("limit_max"))
              if isinstance(v, int | float) and not isinstance(v, bool)]  # fmt: skip
    points = minutes_around(state.conn, alert)
    # An event still open is shaded up to the last minute the receiver holds.
    last = points[-1][0] + 60.0 if points else alert["started_at"]
    chart = chart_svg(
        points,
        start=alert["started_at"],
        end=alert["ended_at"] or max(alert["started_at"], last),
        limits=limits,
        unit=str(detail.get("unit") or ""),
        label=f"{alert['quantity']} of {alert['sensor']} around the event",
    )
    snapshot = detail.get("snapshot_sha256")
    snapshot = snapshot if isinstance(snapshot, str) and SHA256.fullmatch(snapshot) else None
    return render(
        request,
        "alert.html",
        alert=alert,
        facts=[(k, detail[k]) for k in FACTS if detail.get(k) is not None],
        detail_json=json.dumps(detail, ensure_ascii=False, indent=2, sort_keys=True),
        chart=chart,
        snapshot=snapshot,
        snapshot_held=snapshot is not None and state.evidence(snapshot) is not None,
        verdict=state.verdict_of(alert["gateway"]),
        steps=steps_of(state.conn, alert["id"]),
        pushes=pushes_of(state.conn, alert["id"]),
        actions=ACTIONS,
        can_handle=request.get(ROLE) == "handling",
        max_attachment=state.config.max_attachment_bytes,
    )


async def evidence(request: web.Request) -> web.StreamResponse:
    """An evidence snapshot by its SHA-256 (checked against the bytes served)."""
    digest = request.match_info["sha256"]
    if not SHA256.fullmatch(digest):
        raise web.HTTPNotFound(text="not a SHA-256")
    found = state_of(request).evidence(digest)
    if found is None:
        raise web.HTTPNotFound(text="the receiver holds no snapshot with this hash (yet)")
    data, content_type = found
    return web.Response(body=data, content_type=content_type)


async def attachment_file(request: web.Request) -> web.StreamResponse:
    """A rectification attachment, offered as a download (never rendered inline)."""
    state = state_of(request)
    digest = request.match_info["sha256"]
    meta = attachment(state.conn, digest) if SHA256.fullmatch(digest) else None
    if meta is None:
        raise web.HTTPNotFound(text="no such attachment")
    name, _ = meta
    return web.FileResponse(
        state.data_dir / "attachments" / digest,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


# -- risk ---------------------------------------------------------------------------------


def _risks(request: web.Request) -> list[Any]:
    state = state_of(request)
    facts = gather(
        state.conn,
        lambda g: str(state.verdict_of(g)["verdict"]),
        offline_after_s=state.config.offline_after_s,
    )
    return risk_list(facts, state.config.grades)


async def risk_page(request: web.Request) -> web.StreamResponse:
    """Gateways in inspection-priority order, each score explained by its factors."""
    return render(request, "risk.html", risks=as_rows(_risks(request)))


async def risk_export(request: web.Request) -> web.StreamResponse:
    """The risk list as CSV."""
    return web.Response(
        text=risk_csv(_risks(request)),
        content_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="risk-list.csv"'},
    )
