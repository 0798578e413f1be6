"""What the two web consoles share: the gateway's (``edge.app.console``) and the
regulator's (``cloud_sync.regulator_console``).

Security headers on every response (no framing, no foreign scripts, no caching), the
same-origin check of a POST, the rule a new password must pass, the typed keys of a
console's state and session, and the template environment. Only the consoles import
this module (it imports aiohttp and jinja2, which the rest of the floor does not need).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

MIN_PASSWORD = 10
MAX_PASSWORD = 256
"""Longer passwords are refused: hashing is costly and a megabyte password is an attack."""


class BrowserSession(Protocol):
    """What the shared code reads of a console's session."""

    @property
    def user(self) -> str | None:
        """The logged-in account, None while anonymous."""
        ...


StateT = TypeVar("StateT")
SessionT = TypeVar("SessionT", bound=BrowserSession)


def security_headers(*, img_src: str | None = None) -> dict[str, str]:
    """Headers that keep pages out of frames, caches and other sites' scripts.

    ``img_src`` widens the Content-Security-Policy's images beyond the default
    ``'self'`` (the regulator's charts use ``'self' data:``).
    """
    policy = ["default-src 'self'"]
    if img_src is not None:
        policy.append(f"img-src {img_src}")
    policy += ["frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"]
    return {
        "Content-Security-Policy": "; ".join(policy),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def headers_middleware(headers: Mapping[str, str]) -> Middleware:
    """A middleware putting ``headers`` on every response, error responses included."""

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    return add_headers


def same_origin(request: web.Request) -> bool:
    """False when the browser names another site as the request's origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not every client sends it; the CSRF token still decides
    return urlsplit(origin).netloc == request.host


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD:
        return f"the password must have at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"the password must have at most {MAX_PASSWORD} characters"
    return None


class ConsoleKeys(Generic[StateT, SessionT]):
    """The typed keys of a console's shared state (on its app) and a request's session."""

    def __init__(self, name: str, state: type[StateT], session: type[SessionT]) -> None:
        self.state = web.AppKey(f"{name}_state", state)
        self.session = web.RequestKey(f"{name}_session", session)

    def state_of(self, request: web.Request) -> StateT:
        """The console state of the (sub-)application serving ``request``."""
        return request.config_dict[self.state]

    def session_of(self, request: web.Request) -> SessionT | None:
        """The request's session, when its cookie names a live one."""
        return request.get(self.session)

    def find_session(
        self, request: web.Request, lookup: Callable[[str | None], SessionT | None], cookie: str
    ) -> SessionT | None:
        """The live session the request's ``cookie`` names (``lookup`` decides), set on
        the request for the handlers; None for none."""
        session = lookup(request.cookies.get(cookie))
        if session is not None:
            request[self.session] = session
        return session

    def login_session(
        self, request: web.Request, new: Callable[[], SessionT], *, home: str
    ) -> SessionT:
        """The anonymous session a login form posts with: the request's own, or ``new()``
        set on the request (so the page renders its CSRF token). A logged-in session is
        sent on to ``home``."""
        session = self.session_of(request)
        if session is not None and session.user is not None:
            raise web.HTTPSeeOther(home)
        if session is None:
            session = new()
            request[self.session] = session
        return session


def number(value: object) -> str:
    """A template filter: a number in at most six significant digits, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.6g}"
    return str(value)


def package_templates(package: str, **filters: Callable[..., Any]) -> jinja2.Environment:
    """``package``'s templates, HTML-escaped, failing loudly on a missing name; filters
    ``num`` (:func:`number`) and ``filters``."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(num=number, **filters)
    return env
