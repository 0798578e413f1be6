"""The consoles' shared web pieces: headers on every response, origin check, password rule."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from edge.web import MAX_PASSWORD, MIN_PASSWORD, headers_middleware, password_problem, same_origin
from edge.web import security_headers as make_headers

BASE_CSP = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"


def test_the_policy_forbids_frames_foreign_scripts_and_caching() -> None:
    headers = make_headers()
    assert headers == {
        "Content-Security-Policy": BASE_CSP,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
    widened = make_headers(img_src="'self' data:")["Content-Security-Policy"]
    assert widened == (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    )


async def _fetch_all(paths: list[str], origin: str | None) -> dict[str, tuple[int, dict[str, str]]]:
    async def ok(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and not same_origin(request):
            raise web.HTTPForbidden(text="foreign origin")
        return web.Response(text="ok")

    async def refused(request: web.Request) -> web.StreamResponse:
        raise web.HTTPForbidden(text="no")

    app = web.Application(middlewares=[headers_middleware(make_headers())])
    app.router.add_get("/ok", ok)
    app.router.add_post("/ok", ok)
    app.router.add_get("/refused", refused)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    out: dict[str, tuple[int, dict[str, str]]] = {}
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            for path in paths:
                method, _, where = path.partition(" ")
                named = f"http://127.0.0.1:{port}" if origin == "self" else origin
                extra = {} if named is None else {"Origin": named}
                async with client.request(
                    method, f"http://127.0.0.1:{port}{where}", headers=extra
                ) as response:
                    out[path] = (response.status, dict(response.headers))
    finally:
        await runner.cleanup()
    return out


def test_every_response_carries_the_headers_errors_included() -> None:
    seen = asyncio.run(_fetch_all(["GET /ok", "GET /refused", "GET /missing"], None))
    assert [seen[p][0] for p in ("GET /ok", "GET /refused", "GET /missing")] == [200, 403, 404]
    for _, headers in seen.values():
        assert headers["Content-Security-Policy"] == BASE_CSP
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store"


def test_a_post_from_another_site_is_refused_its_own_or_unnamed_is_not() -> None:
    foreign = asyncio.run(_fetch_all(["POST /ok"], "http://evil.example"))
    assert foreign["POST /ok"][0] == 403
    unnamed = asyncio.run(_fetch_all(["POST /ok"], None))
    assert unnamed["POST /ok"][0] == 200
    own = asyncio.run(_fetch_all(["POST /ok"], "self"))
    assert own["POST /ok"][0] == 200


def test_password_rule_bounds() -> None:
    assert password_problem("x" * (MIN_PASSWORD - 1)) is not None
    assert password_problem("x" * MIN_PASSWORD) is None
    assert password_problem("x" * MAX_PASSWORD) is None
    assert "at most" in (password_problem("x" * (MAX_PASSWORD + 1)) or "")
