"""The console's shared state and page rendering."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from cloud_sync.regulator_console.accounts import COOKIE, Session, SessionStore, Throttle
from cloud_sync.regulator_console.config import RegulatorConsoleConfig
from edge.web import ConsoleKeys, package_templates

log = logging.getLogger("cloud_sync.regulator_console")

EvidenceReader = Callable[[str], tuple[bytes, str] | None]
"""SHA-256 of a snapshot → (bytes, content type), or None when the receiver has none."""
_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


@dataclass(slots=True, kw_only=True)
class ConsoleState:
    """Everything the console's handlers share (one per running receiver)."""

    config: RegulatorConsoleConfig
    conn: sqlite3.Connection
    """The receiver's connection: single writer, used from the event loop only."""
    data_dir: Path
    sessions: SessionStore
    throttle: Throttle
    templates: jinja2.Environment
    verdict_of: Callable[[str], dict[str, Any]]
    evidence: EvidenceReader
    hashing: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    """Argon2 takes 64 MiB per check: a burst of logins waits instead of exhausting memory."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when new pushes may be due (the worker then does not wait out its period)."""

    @property
    def targets(self) -> list[str]:
        """Names of the configured webhooks."""
        return [w.name for w in self.config.webhooks]


KEYS = ConsoleKeys("regulator", ConsoleState, Session)
STATE = KEYS.state
SESSION = KEYS.session
ROLE = web.RequestKey("regulator_role", str)
"""The logged-in account's role, read from the database on every request."""
state_of = KEYS.state_of
session_of = KEYS.session_of


def evidence_folder(folder: Path) -> EvidenceReader:
    """Read snapshots stored as ``folder/<sha[:2]>/<sha256>.jpg`` (the receiver's evidence
    vault) or ``folder/<sha256>[.jpg|.png|.webp]``, checking their hash."""

    def read(digest: str) -> tuple[bytes, str] | None:
        candidates = [folder / digest[:2] / f"{digest}.jpg"]
        candidates += [folder / f"{digest}{suffix}" for suffix in ("", *_TYPES)]
        for path in candidates:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() != digest:
                log.warning("evidence file does not match its name path=%s", path)
                return None
            kind = _TYPES.get(path.suffix) or (
                "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
            )
            return data, kind
        return None

    return read


def _when(value: float | None) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _ago(value: float | None) -> str:
    if value is None:
        return "never"
    s = max(0, round(time.time() - value))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


def template_environment() -> jinja2.Environment:
    """The package's templates, HTML-escaped, failing loudly on a missing name."""
    return package_templates("cloud_sync.regulator_console", when=_when, ago=_ago)


def render(request: web.Request, name: str, *, status: int = 200, **context: Any) -> web.Response:
    """Render a page with the session's user, role, CSRF token and one-shot notice."""
    state = state_of(request)
    session = session_of(request)
    context.setdefault("error", None)
    html = state.templates.get_template(name).render(
        user=session.user if session is not None and ROLE in request else None,
        role=request.get(ROLE),
        csrf="" if session is None else session.csrf,
        notice=None if session is None else session.notice,
        **context,
    )
    return web.Response(text=html, content_type="text/html", status=status)


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, only for the console's paths, and
    Secure when the receiver serves HTTPS."""
    response.set_cookie(
        COOKIE,
        session.token,
        httponly=True,
        samesite="Strict",
        path="/regulator",
        secure=request.secure,
    )
