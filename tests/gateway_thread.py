"""The real gateway coroutine on its own event loop, in a thread (for in-process tests)."""

from __future__ import annotations

import asyncio
import threading

from mqtt_tools import wait_for

from edge.app.config import GatewayConfig
from edge.app.gateway import run_gateway


class GatewayThread:
    """Runs ``run_gateway(config)`` until closed; a crash is raised again by ``close()``."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            await run_gateway(self.config, self.stop_event)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by close()
            self.error = exc

    def start(self) -> None:
        """Start the gateway and wait until its loop runs."""
        self.thread.start()
        assert wait_for(lambda: self.stop_event is not None, 10)

    def close(self) -> None:
        """Stop the gateway cleanly; raise what it crashed with, if anything."""
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "gateway did not shut down"
        self.loop.close()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> GatewayThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
