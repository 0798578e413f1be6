"""The regulator console on a real aiohttp server over a real receiver database.

:class:`ConsoleServer` runs the console's extension on its own aiohttp application and
event loop (a thread), around a real :class:`ReceiverDB` file; records are signed by
:class:`cloud_forge.Signer` and admitted through ``ReceiverDB.ingest`` on that loop,
exactly as the receiver's intake does. The webhook service and the form-filling client
are in ``regulator_fakes.py``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cloud_forge import Signer
from mosquitto import free_port

sys.path.append(str(Path(__file__).parent))  # regulator_fakes, beside this file

from regulator_fakes import Browserless, Webhooks

from cloud_sync.chain import GENESIS
from cloud_sync.receiver_extension import Principal, ReceiverContext
from cloud_sync.receiver_store import ReceiverDB
from cloud_sync.regulator_console import RegulatorConsole, RegulatorConsoleConfig, add_user


class Gateway:
    """An honest gateway's records: one chain, signed, seq after seq."""

    def __init__(self, name: str) -> None:
        self.signer = Signer(name)
        self.name = name
        self.seq = 0
        self.prev = GENESIS

    def record(self, cls: str, body: dict[str, Any], created_at: float | None = None) -> dict:
        """The next record of the chain."""
        self.seq += 1
        record = self.signer.record(self.seq, self.prev, cls=cls, body=body, created_at=created_at)
        self.prev = record["hash"]
        return record

    def exceedance(
        self,
        *,
        value: float,
        limit: float = 2.0,
        severity: str = "alarm",
        status: str = "open",
        started_at: float | None = None,
        event_id: str | None = None,
        sensor: str = "fume-01",
        **extra: Any,
    ) -> dict:
        """An exceedance event record as the gateway's outbox makes it."""
        started = time.time() if started_at is None else started_at
        detail = {
            "sensor": sensor, "site": f"{self.name} kitchen", "quantity": "fume",
            "unit": "mg/m3", "limit_min": None, "limit_max": limit,
            "standard": "GB 18483-2001", "clause": "Table 2", "period": "any",
            "window_value": value, "peak": value, "window_s": 600, **extra,
        }  # fmt: skip
        body = {
            "type": "event", "seq": self.seq + 1, "event_id": event_id or str(uuid.uuid4()),
            "kind": "exceedance", "source": sensor, "severity": severity, "status": status,
            "started_at": started, "ended_at": None, "detail": detail,
        }  # fmt: skip
        # Made now (the chain's clock only moves forward), about an event that started then.
        return self.record("alarm" if severity == "alarm" else "event", body)

    def violation(self, snapshot_sha256: str, *, started_at: float | None = None) -> dict:
        """A kitchen violation (camera) with its evidence snapshot's hash."""
        started = time.time() if started_at is None else started_at
        body = {
            "type": "event", "seq": self.seq + 1, "event_id": str(uuid.uuid4()),
            "kind": "violation", "source": "cam-kitchen", "severity": "warning",
            "status": "open", "started_at": started, "ended_at": None,
            "detail": {"violation": "no_hat", "zone": "stove", "median_score": 0.81,
                       "snapshot_sha256": snapshot_sha256},
        }  # fmt: skip
        return self.record("event", body)

    def minutes(self, start: float, values: list[float], sensor: str = "fume-01") -> list[dict]:
        """One minute record per value, from the minute of ``start``."""
        first = int(start) // 60 * 60
        return [
            self.record(
                "minute",
                {
                    "type": "minute", "sensor_id": sensor, "minute": first + 60 * i,
                    "correction": False,
                    "items": [{"quantity": "fume", "flag": "N", "count": 6, "min": v - 0.1,
                               "max": v + 0.1, "avg": v}],
                },
                first + 60 * i + 70,
            )
            for i, v in enumerate(values)
        ]  # fmt: skip


async def _health(request: web.Request) -> web.Response:
    del request
    return web.json_response({"ok": True})


class ConsoleServer:
    """The console on its own aiohttp app and loop (a thread), over a receiver DB file."""

    def __init__(self, tmp_path: Path, config: RegulatorConsoleConfig | None = None) -> None:
        self.db_path = tmp_path / "cloud.db"
        self.data_dir = tmp_path / "extensions"
        self.data_dir.mkdir(exist_ok=True)
        self.config = config or RegulatorConsoleConfig()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gateways: dict[str, Gateway] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.db: ReceiverDB | None = None
        self.console: RegulatorConsole | None = None
        self._runner: web.AppRunner | None = None

    def gateway(self, name: str) -> Gateway:
        """A gateway whose key the receiver has registered."""
        if name not in self.gateways:
            self.gateways[name] = Gateway(name)
            self.call(lambda: self._db.register(name, self.gateways[name].signer.public_hex))
        return self.gateways[name]

    @property
    def _db(self) -> ReceiverDB:
        assert self.db is not None
        return self.db

    def start(self) -> ConsoleServer:
        """Open the DB, mount the console, serve."""
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self.db = ReceiverDB(self.db_path)
        app = web.Application()
        app.router.add_get("/health", _health)
        context = ReceiverContext(
            db=self.db,
            data_dir=self.data_dir,
            authorize=lambda _: Principal("api"),
            topic_prefix="offsite",
        )
        self.console = RegulatorConsole(self.config)
        self.console.setup(app, context)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop; its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a plain function on the server's loop (the DB's single writer)."""

        async def wrapped() -> Any:
            return fn()

        return self.run(wrapped())

    def ingest(self, gateway: str, records: list[dict]) -> None:
        """Admit records as the receiver's intake does; each must be accepted."""
        results = self.call(lambda: self._db.ingest(records, "mqtt", gateway=gateway))
        assert all(r.status == "accepted" for r in results), results

    def sql(self, query: str, *params: Any) -> list[tuple]:
        """A read of the receiver DB, on the loop."""
        return self.call(lambda: self._db.conn.execute(query, params).fetchall())

    def user(self, role: str = "handling", prefix: str = "reg") -> tuple[str, str]:
        """A new account and its one-time password."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        return name, add_user(self.db_path, name, role)

    def close(self) -> None:
        """Stop serving and close the DB (once)."""
        if self.loop.is_closed():
            return

        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self.db is not None:
                self.db.close()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleServer]:
    """A running console over an empty receiver DB."""
    server = ConsoleServer(tmp_path).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def client(console: ConsoleServer) -> Callable[[], Browserless]:
    """Make a new cookie-keeping client of the console (a browser without JavaScript)."""
    return lambda: Browserless(console.url)


@pytest.fixture
def make_console(tmp_path: Path) -> Iterator[Callable[..., tuple[ConsoleServer, Browserless]]]:
    """Start a console with a given config (each in its own folder); closed at the end."""
    servers: list[ConsoleServer] = []

    def make(**config: Any) -> tuple[ConsoleServer, Browserless]:
        folder = tmp_path / f"console-{len(servers)}"
        folder.mkdir()
        server = ConsoleServer(folder, RegulatorConsoleConfig.model_validate(config)).start()
        servers.append(server)
        return server, Browserless(server.url)

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def new_gateway() -> Callable[[str], Gateway]:
    """Make an honest gateway's record signer (its key is new)."""
    return Gateway


@pytest.fixture
def webhooks() -> Iterator[Callable[..., Webhooks]]:
    """Start webhook endpoints that fail their first ``fail_json``/``fail_robot`` calls."""
    started: list[Webhooks] = []

    def make(fail_json: int = 0, fail_robot: int = 0) -> Webhooks:
        hooks = Webhooks(fail_json, fail_robot).start()
        started.append(hooks)
        return hooks

    yield make
    for hooks in started:
        hooks.stop()
