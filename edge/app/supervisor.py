"""Run the gateway from its config file; reload it safely.

SIGHUP (or :attr:`~edge.app.remote_config.Control.restart`) re-reads the file. A file
that does not validate is refused with every problem logged, and the running config
stays in force. A remote config change that does not even load is rolled back at once
(see ``edge.app.remote_config``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edge.app.config import GatewayConfig
from edge.app.config_file import load_usable
from edge.app.gateway import run_gateway
from edge.app.remote_config import Control, read_pending, roll_back
from edge.errors import SetupError
from edge.waits import wait_any

log = logging.getLogger(__name__)


async def supervise(
    config_path: Path, config: GatewayConfig, stop: asyncio.Event, reload: asyncio.Event
) -> None:
    """Run the gateway until ``stop``; restart it on ``reload`` or a remote config."""
    while not stop.is_set():
        control = Control(config_path=config_path)
        session_stop = asyncio.Event()

        async def relay(
            control: Control = control, session_stop: asyncio.Event = session_stop
        ) -> None:
            await wait_any(stop, reload, control.restart)
            session_stop.set()

        async with asyncio.TaskGroup() as tasks:
            relay_task = tasks.create_task(relay(), name="offsite-edge.supervisor.relay")
            await run_gateway(config, session_stop, control=control)
            relay_task.cancel()
        if stop.is_set():
            return
        reload.clear()
        try:
            config = await asyncio.to_thread(load_usable, config_path)
            log.info("config loaded file=%s", config_path)
        except SetupError as exc:
            log.error(
                "config refused file=%s; the running config stays in force:\n%s", config_path, exc
            )
            if read_pending(config_path) is not None and await asyncio.to_thread(
                roll_back, config_path
            ):
                log.warning("config rolled back file=%s reason=invalid", config_path)
