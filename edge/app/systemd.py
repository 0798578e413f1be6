"""Telling systemd how the gateway is (``Type=notify``, ``WatchdogSec=``).

The protocol is one datagram of ``KEY=value`` lines to the socket systemd names in
``$NOTIFY_SOCKET`` (see sd_notify(3)); outside systemd the variable is unset and every call
here does nothing. The watchdog is fed from the event loop itself, so a loop that is stuck
(a blocking call, a deadlock) stops feeding it and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from edge.waits import wait_any

log = logging.getLogger(__name__)


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=..."``) to systemd; False outside it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError as exc:
        log.warning("systemd notification failed socket=%s reason=%s", address, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """How often to feed systemd's watchdog (half of ``WatchdogSec``), or None if unset."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.1)
    except ValueError:
        return None


async def serve(stop: asyncio.Event) -> None:
    """Feed the watchdog every half period until ``stop``, then say ``STOPPING=1``."""
    interval = watchdog_interval()
    while interval is not None and not stop.is_set():
        notify("WATCHDOG=1")
        await wait_any(stop, at_most=interval)
    await stop.wait()
    notify("STOPPING=1", "STATUS=stopping: committing and closing the database")
