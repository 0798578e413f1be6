"""Run the gateway from its config file; reload it safely; roll a remote change back.

* SIGHUP (or :attr:`Control.restart`) re-reads the file. A file that does not validate is
  refused with every problem logged, and the running config stays in force.
* A config applied by a cloud command is written atomically (the previous file kept as
  ``.bak``) with a *pending* marker beside it. After the restart the gateway must reach an
  uplink within the marker's timeout; then the change is confirmed, otherwise the previous
  file is restored and the gateway restarts with it. Both outcomes are audit events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.config import GatewayConfig
from edge.config_file import ConfigError, load_config
from edge.waits import wait_any

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Control:
    """What the supervisor and a running gateway share."""

    config_path: Path
    restart: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to make the gateway stop so the supervisor reloads the config file."""


def pending_path(config_path: Path) -> Path:
    """The marker of a remote config change not yet confirmed."""
    return config_path.with_name(config_path.name + ".pending")


def backup_path(config_path: Path) -> Path:
    """The config file in force before the last remote change."""
    return config_path.with_name(config_path.name + ".bak")


def mark_pending(config_path: Path, command_id: str, timeout_s: float) -> None:
    """Record that the file holds an unconfirmed remote change (atomically)."""
    marker = pending_path(config_path)
    tmp = marker.with_name(marker.name + ".new")
    tmp.write_text(
        json.dumps({"command_id": command_id, "applied_at": time.time(), "timeout_s": timeout_s}),
        encoding="utf-8",
    )
    os.replace(tmp, marker)


def read_pending(config_path: Path) -> dict[str, object] | None:
    """The pending marker, if a remote change awaits confirmation."""
    try:
        data = json.loads(pending_path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def confirm(config_path: Path) -> None:
    """The new config reached the cloud: forget the marker."""
    with contextlib.suppress(FileNotFoundError):
        pending_path(config_path).unlink()


def roll_back(config_path: Path) -> bool:
    """Restore the previous config file; return False when there is none to restore."""
    backup = backup_path(config_path)
    if not backup.exists():
        confirm(config_path)
        return False
    os.replace(backup, config_path)
    confirm(config_path)
    return True


def _load_usable(path: Path) -> GatewayConfig:
    from edge.gateway import build_sensor_monitors

    config = load_config(path)
    build_sensor_monitors(config)  # profile errors are config errors too
    return config


async def supervise(
    config_path: Path, config: GatewayConfig, stop: asyncio.Event, reload: asyncio.Event
) -> None:
    """Run the gateway until ``stop``; restart it on ``reload`` or a remote config."""
    from edge.gateway import GatewaySetupError, run_gateway

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
            config = await asyncio.to_thread(_load_usable, config_path)
            log.info("config loaded file=%s", config_path)
        except (ConfigError, GatewaySetupError) as exc:
            log.error(
                "config refused file=%s; the running config stays in force:\n%s", config_path, exc
            )
            if read_pending(config_path) is not None and await asyncio.to_thread(
                roll_back, config_path
            ):
                log.warning("config rolled back file=%s reason=invalid", config_path)
