"""Fakes of the regulator console's tests: a webhook service and a browser without JavaScript.

:class:`Webhooks` is a real HTTP service (aiohttp, its own loop and thread) with a
generic JSON endpoint and a DingTalk-like robot, each failing its first calls as told.
:class:`Browserless` is a cookie-keeping HTTP client that fills in the CSRF token like a
browser submitting the page's form.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import TYPE_CHECKING

from aiohttp import web
from mosquitto import free_port

if TYPE_CHECKING:
    from conftest import ConsoleServer


class Webhooks:
    """Two real HTTP endpoints: a generic JSON one and a DingTalk-like robot."""

    def __init__(self, fail_json: int, fail_robot: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: dict[str, list[dict]] = {"json": [], "robot": []}
        self.fail = {"json": fail_json, "robot": fail_robot}
        self.runner: web.AppRunner | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _json(self, request: web.Request) -> web.Response:
        self.received["json"].append(await request.json())
        if len(self.received["json"]) <= self.fail["json"]:
            return web.Response(status=503, text="busy")
        return web.json_response({"ok": True})

    async def _robot(self, request: web.Request) -> web.Response:
        self.received["robot"].append(await request.json())
        if len(self.received["robot"]) <= self.fail["robot"]:
            # Robots answer 200 with an error code when they refuse (rate limit here).
            return web.json_response({"errcode": 130101, "errmsg": "send too fast"})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def start(self) -> Webhooks:
        """Serve on a loop of its own (a thread), like a service elsewhere."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)
        return self

    def stop(self) -> None:
        """Stop serving."""
        asyncio.run_coroutine_threadsafe(self._cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._json)
        app.router.add_post("/robot/send", self._robot)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _cleanup(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browserless:
    """A cookie-keeping client that submits forms with the page's CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = ""

    def request(
        self, method: str, path: str, data: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, str, str]:
        """(status, final URL, body text); the CSRF token of the page is remembered."""
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=headers or {})  # fmt: skip
        try:
            with self.opener.open(req, timeout=30) as response:
                status, url, text = (
                    response.status,
                    response.url,
                    response.read().decode("utf-8", "surrogateescape"),
                )
        except urllib.error.HTTPError as exc:
            status, url, text = exc.code, exc.url, exc.read().decode(errors="replace")
        if found := CSRF.search(text):
            self.csrf = found[1]
        return status, url, text

    def get(self, path: str) -> tuple[int, str, str]:
        """GET a page."""
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str], *, csrf: bool = True) -> tuple[int, str, str]:
        """POST an urlencoded form (with the CSRF token unless told not to)."""
        body = {"csrf": self.csrf, **fields} if csrf else fields
        data = urllib.parse.urlencode(body).encode()
        return self.request("POST", path, data,
                            {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip

    def step(
        self,
        alert: int,
        action: str,
        *,
        file: tuple[str, bytes] | None = None,
        csrf: str | None = None,
        **fields: str,
    ) -> tuple[int, str, str]:
        """POST the multipart handling form of an alert (CSRF token first, as a browser)."""
        boundary = uuid.uuid4().hex
        parts = [("csrf", self.csrf if csrf is None else csrf), ("action", action),
                 *fields.items()]  # fmt: skip
        chunks = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in parts
        ]
        if file is not None:
            chunks.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="attachment"; '
                f'filename="{file[0]}"\r\nContent-Type: image/png\r\n\r\n'.encode()
                + file[1]
                + b"\r\n"
            )
        chunks.append(f"--{boundary}--\r\n".encode())
        return self.request(
            "POST",
            f"/regulator/alerts/{alert}/steps",
            b"".join(chunks),
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    def login(self, name: str, password: str) -> tuple[int, str, str]:
        """Open the login page and log in."""
        self.get("/regulator/login")
        return self.post("/regulator/login", {"name": name, "password": password})

    def ready(self, server: ConsoleServer, role: str = "handling") -> str:
        """Log in as a new account of ``role`` and set its own password; its name."""
        name, one_time = server.user(role)
        status, url, _ = self.login(name, one_time)
        assert url.endswith("/regulator/password"), (status, url)
        password = f"own-{name}-secret"
        status, url, _ = self.post(
            "/regulator/password", {"current": one_time, "new": password, "again": password}
        )
        assert url.endswith("/regulator/alerts"), (status, url)
        return name
