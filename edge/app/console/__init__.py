"""The technician console: a small web UI on the site's LAN, served by the gateway.

Off unless the config has a ``console:`` section. Technicians log in with accounts made
by ``offsite-edge console add-user`` (:mod:`.users`), see live readings, health, data
flags, open events and dead letters per sensor, the gateway's connections, backlog,
clock and digests (:mod:`.live`), and put a sensor into maintenance or calibration under
their own name; they commission a sensor from the messages of an unknown topic
(:mod:`.commission`) and draw a camera's zones on its last frame (:mod:`.camera_view`,
:mod:`.zones`). A change to the config file is checked as ``config check`` checks a file,
shown as a diff, written and reloaded (:mod:`.config_save`, :mod:`.edits`); every action
is an event in the signed chain. Server-rendered pages (:mod:`.pages` and the ``*_pages``
modules), an aiohttp server (:mod:`.server`), sessions and CSRF (:mod:`.auth`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this package too: keep its import light
    from edge.app.console.live import GatewayParts

__all__ = ["run_console"]

log = logging.getLogger(__name__)


async def run_console(parts: GatewayParts, stop: asyncio.Event) -> None:
    """Serve the console until ``stop``; without the ``console`` extra, only log why not."""
    try:
        from edge.app.console.server import run_console as serve
    except ImportError as exc:
        log.error(
            "console disabled reason=%s; install it with pip install 'offsite-edge[console]'",
            exc,
        )
        await stop.wait()
        return
    try:
        await serve(parts, stop)
    except Exception:
        # The console is an accessory: its failure must not stop readings being stored.
        log.exception("console failed; the gateway goes on without it")
        await stop.wait()
