"""The console's HTTP server (aiohttp), run as one task of the gateway's TaskGroup.

Every request passes three gates, in order: the client's address must be on the LAN
(``console.allowed_networks``), a page needs a logged-in session (one still on its
one-time password reaches only the password form), and a POST needs its session's CSRF
token and, when the browser names one, this server as its origin. Responses forbid
framing, scripts from elsewhere and caching. A console that cannot listen (port taken)
logs why and leaves the gateway running.
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from edge.app.config import ConsoleConfig
from edge.app.console import calibrate_pages, camera_pages, commission_pages, pages
from edge.app.console.auth import COOKIE, LoginThrottle, Sessions, address_allowed
from edge.app.console.live import GatewayParts, LiveFeed
from edge.app.console.state import (
    KEYS,
    STATE,
    ConsoleState,
    log,
    state_of,
    template_environment,
)
from edge.app.console.users import users_path
from edge.web import headers_middleware, same_origin, security_headers

PUBLIC = frozenset({"/login"})
"""Paths served without a logged-in session (and /static/)."""
PASSWORD_PATHS = frozenset({"/password", "/logout"})
"""All a session on a one-time password may reach."""
HEADERS = security_headers()
MAX_FORM_BYTES = 16 * 1024


@web.middleware
async def lan_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse clients outside the allowed networks."""
    if not address_allowed(request.remote, state_of(request).networks):
        log.warning("console refused address=%s reason=not in allowed_networks", request.remote)
        raise web.HTTPForbidden(text="the console serves the site's LAN only")
    return await handler(request)


@web.middleware
async def sessions_and_csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find the session; send the logged-out to /login; check every POST's CSRF token."""
    state = state_of(request)
    session = KEYS.find_session(request, state.sessions.get, COOKIE)
    path = request.path
    if path.startswith("/static/"):
        return await handler(request)
    if request.method == "POST":
        form = await request.post()
        token = form.get("csrf")
        if (
            session is None
            or not isinstance(token, str)
            or not session.csrf_ok(token)
            or not same_origin(request)
        ):
            log.warning("console POST refused path=%s reason=CSRF check failed", path)
            raise web.HTTPForbidden(text="refused: the form's CSRF token is missing or wrong")
    if path in PUBLIC:
        return await handler(request)
    if session is None or session.user is None:
        if request.method == "GET" and path != "/live":
            raise web.HTTPSeeOther("/login")
        raise web.HTTPUnauthorized(text="log in first")
    if session.must_change and path not in PASSWORD_PATHS:
        if request.method == "GET" and path != "/live":
            raise web.HTTPSeeOther("/password")
        raise web.HTTPForbidden(text="set your own password first")
    return await handler(request)


async def _home(request: web.Request) -> web.StreamResponse:
    del request
    raise web.HTTPSeeOther("/sensors")


_KEPT: dict[tuple[Path, float, int, float], tuple[Sessions, LoginThrottle]] = {}


def _kept(users: Path, config: ConsoleConfig) -> tuple[Sessions, LoginThrottle]:
    """Sessions and failure counts for as long as the process runs with these settings.

    A reload (SIGHUP, a saved calibration, a remote config) restarts the gateway and its
    console in the same process: technicians stay logged in, and failures stay counted.
    """
    key = (users, config.session_idle_s, config.max_failed_logins, config.lockout_s)
    if key not in _KEPT:
        _KEPT[key] = (
            Sessions(config.session_idle_s),
            LoginThrottle(config.max_failed_logins, config.lockout_s),
        )
    return _KEPT[key]


def build_app(parts: GatewayParts, stop: asyncio.Event) -> web.Application:
    """The console's aiohttp application for a running gateway."""
    config = parts.config.console
    assert config is not None
    app = web.Application(
        middlewares=[lan_only, headers_middleware(HEADERS), sessions_and_csrf],
        client_max_size=MAX_FORM_BYTES,
    )
    users = users_path(parts.config)
    sessions, throttle = _kept(users, config)
    app[STATE] = ConsoleState(
        parts=parts,
        config=config,
        users=users,
        sessions=sessions,
        throttle=throttle,
        feed=LiveFeed(parts),
        templates=template_environment(),
        networks=[ipaddress.ip_network(n, strict=False) for n in config.allowed_networks],
        stop=stop,
        hashing=asyncio.Semaphore(2),
    )
    static = Path(__file__).with_name("static")
    app.router.add_get("/", _home)
    app.router.add_get("/login", pages.login_page)
    app.router.add_post("/login", pages.login)
    app.router.add_post("/logout", pages.logout)
    app.router.add_get("/password", pages.password_page)
    app.router.add_post("/password", pages.set_password)
    app.router.add_get("/sensors", pages.sensors_page)
    app.router.add_get("/sensors/{sensor_id}", pages.sensor_page)
    app.router.add_post("/sensors/{sensor_id}/mode", pages.set_mode)
    app.router.add_get("/sensors/{sensor_id}/calibrate", calibrate_pages.calibrate_page)
    app.router.add_post("/sensors/{sensor_id}/calibrate", calibrate_pages.calibrate)
    app.router.add_get("/commission", commission_pages.commission_page)
    app.router.add_get("/commission/new", commission_pages.new_sensor_page)
    app.router.add_post("/commission/new", commission_pages.new_sensor)
    app.router.add_post("/commission/preview", commission_pages.preview_fragment)
    app.router.add_get("/reloading", commission_pages.reloading_page)
    app.router.add_get("/cameras", camera_pages.cameras_page)
    app.router.add_get("/cameras/{camera_id}", camera_pages.camera_page)
    app.router.add_get("/cameras/{camera_id}/frame.jpg", camera_pages.camera_frame)
    app.router.add_get("/cameras/{camera_id}/state", camera_pages.camera_state)
    app.router.add_post("/cameras/{camera_id}/zones", camera_pages.edit_zone)
    app.router.add_get("/gateway", pages.gateway_page)
    app.router.add_get("/live", pages.live_stream)
    app.router.add_static("/static/", str(static))
    return app


async def run_console(parts: GatewayParts, stop: asyncio.Event) -> None:
    """Serve the console until ``stop`` is set; a console that cannot start only logs it."""
    config = parts.config.console
    assert config is not None
    runner = web.AppRunner(build_app(parts, stop), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            log.error("console disabled host=%s port=%d reason=%s", config.host, config.port, exc)
            await stop.wait()
            return
        log.info(
            "console listening url=http://%s:%d/ users_file=%s",
            config.host,
            config.port,
            users_path(parts.config),
        )
        await stop.wait()
    finally:
        await runner.cleanup()
