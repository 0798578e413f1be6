"""The receiver's extension hook: an extension's routes and MQTT topics, with a real broker.

A throwaway extension adds a route (authorised with the receiver's own check) and claims
``up/probe/...`` topics, answering each on ``down/probe`` through the receiver's client. A
message it fails on is left unacknowledged and comes back on the next session; messages
it took are acknowledged and never come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiohttp import web
from cloud_forge import Signer, batch
from mqtt_tools import publish_all
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.receiver import Receiver, ReceiverConfig
from cloud_sync.receiver_extension import ReceiverContext

from .conftest import TOKEN, wait_for

pytestmark = pytest.mark.timeout(120)


class Probe:
    """An extension that stores claimed payloads in its data directory."""

    def __init__(self) -> None:
        self.context: ReceiverContext | None = None
        self.handled: list[tuple[str, str, bytes]] = []
        self.refuse: set[bytes] = set()
        """Payloads whose first delivery raises (not committed)."""

    def setup(self, app: web.Application, context: ReceiverContext) -> None:
        self.context = context

        async def whoami(request: web.Request) -> web.StreamResponse:
            principal = context.authorize(request)
            if principal is None:
                return web.json_response({"error": "who are you"}, status=401)
            return web.json_response({"kind": principal.kind, "gateway": principal.gateway})

        app.router.add_get("/probe/whoami", whoami)

    def claims(self, suffix: str) -> bool:
        return suffix.startswith("probe/")

    async def handle_mqtt(self, gateway: str, suffix: str, payload: bytes) -> None:
        if payload in self.refuse:
            self.refuse.discard(payload)
            raise RuntimeError("disk full (simulated)")
        assert self.context is not None
        (self.context.data_dir / f"{len(self.handled)}.bin").write_bytes(payload)
        self.handled.append((gateway, suffix, payload))
        assert self.context.publish is not None
        self.context.publish(f"offsite/{gateway}/down/probe", b"took " + payload)


@contextlib.asynccontextmanager
async def receiver_with(tmp_path: Path, port: int, probe: Probe) -> AsyncIterator[Receiver]:
    """A receiver with ``probe`` plugged in, subscribed to the broker on ``port``."""
    config = ReceiverConfig(
        db=tmp_path / "cloud.db", mqtt_host="127.0.0.1", mqtt_port=port, token=TOKEN
    )
    receiver = Receiver(config, extensions=[probe])
    stop = asyncio.Event()
    task = asyncio.create_task(receiver.run(stop))
    await asyncio.wait_for(receiver.ready.wait(), 20)
    try:
        yield receiver
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def get(port: int, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextlib.contextmanager
def answers_on(port: int, topic: str) -> Any:
    """Collect the payloads published on ``topic`` while inside."""
    got: list[bytes] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-probe-answers")
    client.on_message = lambda c, u, m: got.append(bytes(m.payload))
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_connect = lambda c, *args: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        yield got
    finally:
        client.disconnect()
        client.loop_stop()


def test_extension_route_uses_the_receivers_authorisation(tmp_path: Path, mosquitto_factory):
    asyncio.run(_route(tmp_path, mosquitto_factory().port))


async def _route(tmp_path: Path, port: int) -> None:
    probe = Probe()
    async with receiver_with(tmp_path, port, probe) as receiver:
        assert probe.context is not None
        assert probe.context.data_dir == tmp_path / "cloud-data"
        assert probe.context.data_dir.is_dir()
        assert probe.context.topic_prefix == "offsite"
        receiver.db.register("gw-ext", Signer("gw-ext").public_hex)
        gateway_token = receiver.db.issue_token("gw-ext")
        http = receiver.http_port
        answers = await asyncio.gather(
            asyncio.to_thread(get, http, "/probe/whoami", None),
            asyncio.to_thread(get, http, "/probe/whoami", "guess"),
            asyncio.to_thread(get, http, "/probe/whoami", TOKEN),
            asyncio.to_thread(get, http, "/probe/whoami", gateway_token),
            asyncio.to_thread(get, http, "/health", None),
        )
        assert answers[0][0] == answers[1][0] == 401
        assert answers[2] == (200, {"kind": "api", "gateway": None})
        assert answers[3] == (200, {"kind": "gateway", "gateway": "gw-ext"})
        assert answers[4] == (200, {"ok": True, "mqtt": "subscribed"})


def test_claimed_messages_are_acknowledged_only_after_the_extension_took_them(
    tmp_path: Path, mosquitto_factory
):
    asyncio.run(_mqtt(tmp_path, mosquitto_factory().port))


async def _mqtt(tmp_path: Path, port: int) -> None:
    gateway = Signer("gw-ext")
    records = gateway.chain(2)
    probe = Probe()
    probe.refuse.add(b"chunk-2")
    messages = [
        ("offsite/gw-ext/up/probe/1", b"chunk-1"),
        ("offsite/gw-ext/up/event", batch("gw-ext", records)),
        ("offsite/gw-ext/up/probe/2", b"chunk-2"),
        ("offsite/gw-ext/up/probe/3", b"chunk-3"),
    ]
    with answers_on(port, "offsite/gw-ext/down/probe") as answers:
        async with receiver_with(tmp_path, port, probe) as receiver:
            receiver.db.register("gw-ext", gateway.public_hex)
            await asyncio.to_thread(publish_all, "127.0.0.1", port, messages)
            await wait_for(lambda: len(answers) == 2 and receiver.db.records(limit=10) != [])
            assert answers == [b"took chunk-1", b"took chunk-3"]
            _first_session(receiver, probe)
    # The same persistent session: only the message the extension failed on comes back,
    # before the sentinel published after the restart.
    async with receiver_with(tmp_path, port, probe) as receiver:
        await asyncio.to_thread(
            publish_all, "127.0.0.1", port, [("offsite/gw-ext/up/probe/4", b"sentinel")]
        )
        await wait_for(lambda: b"sentinel" in [h[2] for h in probe.handled])
        assert [h[2] for h in probe.handled] == [b"chunk-1", b"chunk-3", b"chunk-2", b"sentinel"]
        assert (probe.context.data_dir / "2.bin").read_bytes() == b"chunk-2"  # type: ignore[union-attr]
        assert len(receiver.db.records(limit=10)) == 2


def _first_session(receiver: Receiver, probe: Probe) -> None:
    assert [h[2] for h in probe.handled] == [b"chunk-1", b"chunk-3"]
    assert probe.handled[0][:2] == ("gw-ext", "probe/1")
    # Claimed messages are the extension's: none became a record or a rejected one.
    assert len(receiver.db.records(limit=10)) == 2
    assert receiver.db.rejected() == []
