"""The regulator console as a receiver extension: a sub-application under ``/regulator/``.

Every request passes two gates: a page needs a logged-in session (one on its one-time
password reaches only the password form), and a POST needs its session's CSRF token
(urlencoded forms are checked here; the multipart handling form is checked by its
handler, which reads the token as the form's first field before anything else) and, when
the browser names one, this server as its origin. Responses forbid framing, foreign
scripts and caching. One worker task folds new records into the console's tables and
pushes due alarms to the webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from cloud_sync.receiver_extension import ReceiverContext
from cloud_sync.regulator_console import pages, steps
from cloud_sync.regulator_console.accounts import COOKIE, SessionStore, Throttle, account
from cloud_sync.regulator_console.alerts import pending, sync
from cloud_sync.regulator_console.config import RegulatorConsoleConfig
from cloud_sync.regulator_console.push import push_due, sleep_until_due
from cloud_sync.regulator_console.schema import ensure_schema
from cloud_sync.regulator_console.state import (
    KEYS,
    ROLE,
    STATE,
    ConsoleState,
    EvidenceReader,
    evidence_folder,
    state_of,
    template_environment,
)
from edge.web import headers_middleware, same_origin, security_headers

log = logging.getLogger("cloud_sync.regulator_console")

PREFIX = "/regulator"
PUBLIC = frozenset({"/regulator/login"})
PASSWORD_PATHS = frozenset({"/regulator/password", "/regulator/logout"})
HEADERS = security_headers(img_src="'self' data:")
WORKER_PERIOD_S = 1.0


@web.middleware
async def sessions_and_csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find the session; send the logged-out to the login; check POSTs' CSRF token."""
    state = state_of(request)
    session = KEYS.find_session(request, state.sessions.get, COOKIE)
    path = request.path
    if path.startswith(f"{PREFIX}/static/"):
        return await handler(request)
    if request.method == "POST":
        if not same_origin(request):
            log.warning("regulator POST refused path=%s reason=foreign Origin", path)
            raise web.HTTPForbidden(text="refused: the form comes from another site")
        if request.content_type != "multipart/form-data":
            token = (await request.post()).get("csrf")
            if session is None or not isinstance(token, str) or not session.csrf_ok(token):
                log.warning("regulator POST refused path=%s reason=CSRF check failed", path)
                raise web.HTTPForbidden(text="refused: the form's CSRF token is missing or wrong")
    if path in PUBLIC:
        return await handler(request)
    if session is None or session.user is None:
        if request.method == "GET":
            raise web.HTTPSeeOther(f"{PREFIX}/login")
        raise web.HTTPUnauthorized(text="log in first")
    who = account(state.conn, session.user)
    if who is None:  # the account was removed: its sessions die with it
        state.sessions.drop(session.token)
        raise web.HTTPSeeOther(f"{PREFIX}/login")
    if not who.must_change:
        request[ROLE] = who.role  # a one-time password shows no role, no menu
    elif path not in PASSWORD_PATHS:
        if request.method == "GET":
            raise web.HTTPSeeOther(f"{PREFIX}/password")
        raise web.HTTPForbidden(text="set your own password first")
    if pending(state.conn):
        # Fold what arrived since the worker's last round, so a page is never behind.
        sync(state.conn, state.targets)
        state.wake.set()
    return await handler(request)


async def _worker(state: ConsoleState) -> None:
    """Fold new records in (chunk by chunk, yielding between) and push due alarms."""
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                if sync(state.conn, state.targets):
                    await asyncio.sleep(0)  # let requests in between chunks of a catch-up
                    continue
                if state.config.webhooks:
                    await push_due(state.conn, http, state.config.webhooks)
            except Exception:
                # A broken round must not end the console: log it and try again next period.
                log.exception("regulator console worker round failed; retrying")
            await sleep_until_due(state.conn, state.wake, WORKER_PERIOD_S)


class RegulatorConsole:
    """The :class:`~cloud_sync.receiver_extension.ReceiverExtension` of the console."""

    def __init__(
        self,
        config: RegulatorConsoleConfig | None = None,
        *,
        evidence: EvidenceReader | None = None,
    ) -> None:
        self.config = config or RegulatorConsoleConfig()
        self._evidence = evidence
        self.state: ConsoleState | None = None

    def setup(self, app: web.Application, context: ReceiverContext) -> None:
        """Mount the console under ``/regulator/`` and start its worker with the app."""
        app.add_subapp(f"{PREFIX}/", self.build(context))
        # A bare /regulator (no slash) is where people type: send them in.
        app.router.add_get(PREFIX, _to_alerts)

    def build(self, context: ReceiverContext) -> web.Application:
        """The console's own aiohttp application (mounted by :meth:`setup`)."""
        db = context.db
        conn = db.conn
        ensure_schema(conn)
        evidence_dir = (
            Path(self.config.evidence_dir)
            if self.config.evidence_dir
            else context.data_dir / "evidence"
        )
        self.state = state = ConsoleState(
            config=self.config,
            conn=conn,
            data_dir=context.data_dir,
            sessions=SessionStore(conn, self.config.session_idle_s),
            throttle=Throttle(self.config.max_failed_logins, self.config.lockout_s),
            templates=template_environment(),
            verdict_of=lambda gateway: db.verify(gateway).as_dict(),
            evidence=self._evidence or evidence_folder(evidence_dir),
        )
        sub = web.Application(middlewares=[headers_middleware(HEADERS), sessions_and_csrf])
        sub[STATE] = state

        async def worker(_: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(_worker(state), name="offsite-cloud.regulator-worker")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        sub.cleanup_ctx.append(worker)
        pages.add_routes(sub)
        steps.add_routes(sub)
        sub.router.add_static("/static/", str(Path(__file__).with_name("static")))
        return sub

    def claims(self, suffix: str) -> bool:
        """The console takes no MQTT topics of its own."""
        del suffix
        return False

    async def handle_mqtt(self, gateway: str, suffix: str, payload: bytes) -> None:
        """Never called (:meth:`claims` is always False)."""
        del gateway, suffix, payload


async def _to_alerts(request: web.Request) -> web.StreamResponse:
    del request
    raise web.HTTPSeeOther(f"{PREFIX}/alerts")
