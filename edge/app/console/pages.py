"""The console's pages: login, password, sensors, one sensor, gateway, live stream."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from edge.app.console import users
from edge.app.console.auth import COOKIE, LoginThrottle, Session
from edge.app.console.live import (
    FLAGS,
    current_mode,
    gateway_facts,
    running_facts,
    sensor_records,
    unrouted_dead_letters,
)
from edge.app.console.state import (
    KEYS,
    ConsoleState,
    audit,
    log,
    render,
    session_of,
    set_cookie,
    state_of,
)
from edge.app.status import printable
from edge.events import Severity
from edge.waits import wait_any
from edge.web import MIN_PASSWORD, password_problem
from sensors.config import SensorConfig
from sensors.modes import Mode

MAX_STREAMS = 32
"""Open live streams at once; more get 503 (each costs a task and a socket)."""
STREAM_EVERY_S = 1.0
MAX_WHY = 200


async def login_page(request: web.Request) -> web.StreamResponse:
    """The login form, with a fresh anonymous session carrying its CSRF token."""
    session = KEYS.login_session(request, state_of(request).sessions.new, home="/sensors")
    response = render(request, "login.html")
    set_cookie(response, session)
    return response


def technician(request: web.Request) -> tuple[Session, str]:
    """The logged-in session and its technician (the middleware lets only those through)."""
    session = session_of(request)
    if session is None or session.user is None:
        raise web.HTTPUnauthorized(text="log in first")
    return session, session.user


async def _verify(state: ConsoleState, name: str, password: str) -> users.Account | None:
    async with state.hashing:
        return await asyncio.to_thread(users.verify, state.users, name, password)


async def login(request: web.Request) -> web.StreamResponse:
    """Check a login; on success replace the anonymous session with the technician's."""
    state = state_of(request)
    old = session_of(request)
    assert old is not None  # the CSRF check needs a session
    form = await request.post()
    # Whatever was typed goes into logs and the audit chain: printable and short.
    name = printable(str(form.get("name", "")).strip(), 64)
    password = str(form.get("password", ""))
    keys = LoginThrottle.keys(name, request.remote or "?")
    wait = state.throttle.wait_s(keys)
    if wait > 0:
        log.warning(
            "console login refused name=%r address=%s reason=throttled", name, request.remote
        )
        return render(
            request,
            "login.html",
            status=429,
            error=f"Too many failed logins: try again in {wait:.0f} s.",
        )
    try:
        account = await _verify(state, name, password)
    except users.UsersFileError as exc:
        log.error("console login impossible reason=%s", exc)
        return render(request, "login.html", status=500, error=f"Logins are impossible: {exc}")
    if account is None:
        if state.throttle.failed(keys):
            await audit(
                request,
                "console_login_locked",
                name,
                severity=Severity.WARNING,
                failures=state.config.max_failed_logins,
                window_s=state.config.lockout_s,
            )
        log.warning("console login failed name=%r address=%s", name, request.remote)
        return render(request, "login.html", status=401, error="Wrong account or password.")
    state.throttle.succeeded(name)
    await audit(request, "console_login", account.name, one_time=account.must_change)
    state.sessions.drop(old.token)
    session = state.sessions.new(account.name, must_change=account.must_change)
    response = web.HTTPSeeOther("/password" if account.must_change else "/sensors")
    set_cookie(response, session)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session."""
    session = session_of(request)
    if session is not None:
        state_of(request).sessions.drop(session.token)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


async def password_page(request: web.Request) -> web.StreamResponse:
    """The form to choose a password (forced after a one-time password)."""
    technician(request)
    return _password_form(request, None)


def _password_form(request: web.Request, error: str | None, status: int = 200) -> web.Response:
    session = session_of(request)
    assert session is not None
    return render(
        request,
        "password.html",
        status=status,
        error=error,
        must_change=session.must_change,
        min_length=MIN_PASSWORD,
        account=session.user,
    )


async def set_password(request: web.Request) -> web.StreamResponse:
    """Check the current password, store the new one, end the account's other sessions."""
    state = state_of(request)
    session, user = technician(request)
    form = await request.post()
    current, new, again = (str(form.get(k, "")) for k in ("current", "new", "again"))
    keys = LoginThrottle.keys(user, request.remote or "?")
    if state.throttle.wait_s(keys) > 0:
        return _password_form(request, "Too many failed attempts: try again later.", 429)
    if new != again:
        return _password_form(request, "The new passwords differ.", 400)
    problem = password_problem(new)
    if problem is None and new == current:
        problem = "the new password must differ from the current one"
    if problem is not None:
        return _password_form(request, problem[0].upper() + problem[1:] + ".", 400)
    if await _verify(state, user, current) is None:
        state.throttle.failed(keys)
        return _password_form(request, "The current password is wrong.", 401)
    async with state.hashing:
        await asyncio.to_thread(users.set_password, state.users, user, new)
    await audit(request, "console_password_changed", user)
    session.must_change = False
    state.sessions.drop_user(user, keep=session.token)
    session.notice = "Password set."
    raise web.HTTPSeeOther("/sensors")


async def sensors_page(request: web.Request) -> web.StreamResponse:
    """Every sensor: live readings, health, mode, last seen, dead letters."""
    state = state_of(request)
    snapshot = await state.feed.snapshot()
    unrouted = await asyncio.to_thread(unrouted_dead_letters, state.parts.config.store.path)
    return render(
        request,
        "sensors.html",
        sensors=state.parts.config.sensors,
        snapshot=snapshot,
        unrouted=unrouted,
    )


def sensor_of(state: ConsoleState, sensor_id: str) -> SensorConfig:
    for sensor in state.parts.config.sensors:
        if sensor.id == sensor_id:
            return sensor
    raise web.HTTPNotFound(text=f"no sensor {sensor_id!r} is configured")


async def sensor_page(request: web.Request) -> web.StreamResponse:
    """One sensor: live readings, health, flags, mode form, open events, dead letters."""
    state = state_of(request)
    sensor = sensor_of(state, request.match_info["sensor_id"])
    sensor_id = request.match_info["sensor_id"]
    snapshot = await state.feed.snapshot()
    records = await asyncio.to_thread(sensor_records, state.parts.config.store.path, sensor_id)
    return render(
        request,
        "sensor.html",
        s=sensor,
        live=snapshot[sensor_id],
        records=records,
        flags=FLAGS,
        max_s=sensor.health.maintenance_max_s,
        decoder=sensor.decoder.model_dump(mode="json"),
    )


async def set_mode(request: web.Request) -> web.StreamResponse:
    """Ask the gateway for maintenance/calibration on or off, as the logged-in technician."""
    state = state_of(request)
    session, user = technician(request)
    sensor_id = request.match_info["sensor_id"]
    sensor_of(state, sensor_id)
    form = await request.post()
    mode, why = str(form.get("mode", "")), " ".join(str(form.get("why", "")).split())
    target = f"/sensors/{sensor_id}"
    current = current_mode(state.parts, sensor_id)
    if mode not in {m.value for m in Mode}:
        session.notice = f"Unknown mode {mode[:20]!r}."
    elif not why or len(why) > MAX_WHY:
        session.notice = f"A reason of 1 to {MAX_WHY} characters is required."
    elif mode == Mode.NORMAL and current == Mode.NORMAL:
        session.notice = f"{sensor_id} is already in normal mode."
    else:
        await state.parts.desk.set_sensor_mode(sensor_id, mode, user, why)
        log.info("console mode request sensor=%s mode=%s who=%s", sensor_id, mode, user)
        session.notice = (
            f"{mode} requested for {sensor_id} by {user}; the gateway applies and "
            "records it within a second."
        )
    raise web.HTTPSeeOther(target)


async def gateway_page(request: web.Request) -> web.StreamResponse:
    """Connections, backlog, clock, version and digests."""
    parts = state_of(request).parts
    facts = {**await asyncio.to_thread(gateway_facts, parts), **running_facts(parts)}
    return render(request, "gateway.html", g=facts)


async def live_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every sensor's live state once a second until the page closes."""
    state = state_of(request)
    session, _ = technician(request)
    if state.streams >= MAX_STREAMS:
        raise web.HTTPServiceUnavailable(text="too many live pages open")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    state.streams += 1
    try:
        # A page left open does not keep its session alive: the stream ends with it.
        while not state.stop.is_set() and state.sessions.alive(session.token):
            data = {"now": time.time(), "sensors": await state.feed.snapshot()}
            message = f"event: sensors\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
            await response.write(message.encode())
            await wait_any(state.stop, at_most=STREAM_EVERY_S)
    except ConnectionError:
        pass  # the page was closed
    finally:
        state.streams -= 1
    return response
