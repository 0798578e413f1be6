"""The console's shared state, page rendering and audit records."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from edge.app.config import ConsoleConfig
from edge.app.console.auth import COOKIE, LoginThrottle, Network, Session, Sessions
from edge.app.console.live import GatewayParts, LiveFeed
from edge.events import Event, EventStatus, Severity
from edge.web import ConsoleKeys, package_templates

log = logging.getLogger("edge.app.console")

AUDIT_SOURCE = "console"


@dataclass(slots=True, kw_only=True)
class ConsoleState:
    """Everything the console's handlers share (one per running console)."""

    parts: GatewayParts
    config: ConsoleConfig
    users: Path
    sessions: Sessions
    throttle: LoginThrottle
    feed: LiveFeed
    templates: jinja2.Environment
    networks: list[Network]
    stop: asyncio.Event
    hashing: asyncio.Semaphore
    """Argon2 takes 64 MiB per check: a burst of logins waits instead of exhausting memory."""
    streams: int = 0


KEYS = ConsoleKeys("console", ConsoleState, Session)
STATE = KEYS.state
SESSION = KEYS.session
"""Request key of the request's :class:`~edge.app.console.auth.Session`, when it has one."""
state_of = KEYS.state_of
session_of = KEYS.session_of


def _iso(value: float | None) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(value).astimezone().isoformat("T", "seconds")


def _ago(value: float | None) -> str:
    return "never" if value is None else f"{max(0, round(time.time() - value))} s ago"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def template_environment() -> jinja2.Environment:
    """Templates shipped in the package, HTML-escaped, failing loudly on a missing name."""
    return package_templates("edge.app.console", iso=_iso, ago=_ago, duration=_duration)


def render(request: web.Request, name: str, *, status: int = 200, **context: Any) -> web.Response:
    """Render a page with the session's user, CSRF token and one-shot notice."""
    state = state_of(request)
    session = session_of(request)
    notice = None
    if session is not None:
        notice, session.notice = session.notice, None
    context.setdefault("error", None)
    html = state.templates.get_template(name).render(
        gateway_id=state.parts.config.gateway.id,
        user=None if session is None or session.must_change else session.user,
        csrf="" if session is None else session.csrf,
        notice=notice,
        **context,
    )
    return web.Response(text=html, content_type="text/html", status=status)


def set_cookie(response: web.StreamResponse, session: Session) -> None:
    """The session cookie: HttpOnly and SameSite=Strict (no script or other site sends it)."""
    response.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", path="/")


async def audit(
    request: web.Request,
    kind: str,
    user: str,
    *,
    severity: Severity = Severity.INFO,
    **detail: Any,
) -> None:
    """Commit a console action to the signed event chain under the technician's name."""
    event = Event(
        kind=kind,
        source=AUDIT_SOURCE,
        severity=severity,
        status=EventStatus.INSTANT,
        started_at=time.time(),
        detail={"who": user, "address": request.remote, **detail},
    )
    await state_of(request).parts.store.emit(event)
    log.info("%s who=%s address=%s", kind, user, request.remote)
