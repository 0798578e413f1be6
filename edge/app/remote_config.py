"""A config sent by a cloud command: validate, install, then confirm or roll back.

The new config is validated exactly as ``config check`` and ``run`` validate a file, then
written atomically (the previous file kept as ``.bak``) with a *pending* marker beside it,
and the gateway restarts on it. After the restart the cloud must acknowledge a record sent
under the new config (MQTT PUBACK, HTTP 2xx, HJ 212 9014: an application-level round trip,
not a TCP connect) within the marker's timeout; then the change is confirmed, otherwise the
previous file is restored and the gateway restarts with it. Both outcomes are audit
events. A file that cannot even be loaded at restart is rolled back by the supervisor at
once. The regulator keys are commissioning: a remote config that changes them is refused.

:class:`RemoteConfig` is what cloud sync's command processor calls
(``cloud_sync.commands.ConfigChanges``); nothing in cloud_sync imports the gateway.
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
from typing import Any

import yaml
from pydantic import ValidationError

from edge.app.config import GatewayConfig
from edge.app.config_file import load_config
from edge.app.preflight import check_usable
from edge.errors import SetupError
from edge.events import Event, EventStatus, Severity
from edge.store import Store
from edge.waits import wait_any

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Control:
    """What the supervisor and one run of the gateway share."""

    config_path: Path
    restart: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to make the gateway stop so the supervisor reloads the config file."""


def pending_path(config_path: Path) -> Path:
    """The marker of a remote config change not yet confirmed."""
    return config_path.with_name(config_path.name + ".pending")


def backup_path(config_path: Path) -> Path:
    """The config file in force before the last remote change."""
    return config_path.with_name(config_path.name + ".bak")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (fsync + rename), keeping the old file as ``.bak``."""
    tmp = path.with_name(path.name + ".new")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if path.exists():
        os.replace(path, backup_path(path))
    os.replace(tmp, path)


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


class RemoteConfig:
    """Installs configs sent by cloud commands (``cloud_sync.commands.ConfigChanges``)."""

    def __init__(self, control: Control, gateway_id: str, rollback_timeout_s: float) -> None:
        self._control = control
        self._gateway_id = gateway_id
        self._rollback_timeout_s = rollback_timeout_s

    async def apply(self, config: dict[str, Any], command_id: str) -> dict[str, Any]:
        """Validate, write and mark pending; raise ValueError saying why it is refused."""
        try:
            new = GatewayConfig.model_validate(config)
            check_usable(new)
        except ValidationError as exc:
            raise ValueError(f"invalid config: {exc.error_count()} errors: {exc}") from None
        except SetupError as exc:
            raise ValueError(f"invalid config: {exc}") from None
        if new.gateway.id != self._gateway_id:
            raise ValueError("config is for another gateway")
        current = await asyncio.to_thread(_regulator_keys_in, self._control.config_path)
        if _regulator_keys(new) != current:
            raise ValueError("regulator keys are set at commissioning, not by a remote config")
        text = yaml.safe_dump(new.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
        timeout = new.cloud.rollback_timeout_s if new.cloud else self._rollback_timeout_s
        path = self._control.config_path
        try:
            await asyncio.to_thread(write_atomically, path, text)
            await asyncio.to_thread(mark_pending, path, command_id, timeout)
        except OSError as exc:
            raise ValueError(f"could not write the config file: {exc}") from None
        return {"applied": True, "restart": True, "rollback_timeout_s": timeout}

    def restart(self) -> None:
        """Restart the gateway on the installed file."""
        self._control.restart.set()


def _regulator_keys(config: GatewayConfig) -> list[tuple[str, str]]:
    keys = config.cloud.regulator_keys if config.cloud else []
    return sorted((k.name, k.public_key) for k in keys)


def _regulator_keys_in(path: Path) -> list[tuple[str, str]]:
    """The regulator keys of the config file in force (commissioned)."""
    try:
        return _regulator_keys(load_config(path))
    except SetupError as exc:
        raise ValueError(f"the config in force cannot be read: {exc}") from None


async def confirm_or_roll_back(
    store: Store, control: Control, acknowledged: asyncio.Event, stop: asyncio.Event
) -> None:
    """After a remote config change: confirm it once the cloud acknowledges a record sent
    under it (``CloudSync.acknowledged``), else roll back."""
    pending = read_pending(control.config_path)
    if pending is None:
        return
    timeout = float(str(pending.get("timeout_s", 60.0)))
    detail = {"command_id": pending.get("command_id"), "file": str(control.config_path)}
    # A record of the trial itself: something every uplink carrying events can have
    # acknowledged, even when nothing else happens on the site.
    await store.emit(_config_event("config_trial", Severity.INFO, control, detail))
    await wait_any(acknowledged, stop, at_most=timeout)
    if stop.is_set() and not acknowledged.is_set():
        return  # stopped before the verdict: decide after the next start
    if acknowledged.is_set():
        await asyncio.to_thread(confirm, control.config_path)
        kind, severity = "config_confirmed", Severity.INFO
        log.info("config confirmed file=%s", control.config_path)
    else:
        restored = await asyncio.to_thread(roll_back, control.config_path)
        kind, severity = "config_rolled_back", Severity.WARNING
        detail |= {
            "reason": f"the cloud acknowledged no record within {timeout:g} s",
            "restored": restored,
        }
        log.warning("config rolled back file=%s timeout_s=%g", control.config_path, timeout)
        control.restart.set()
    await store.emit(_config_event(kind, severity, control, detail))


def _config_event(kind: str, severity: Severity, control: Control, detail: dict[str, Any]) -> Event:
    return Event(
        kind=kind,
        source=control.config_path.name,
        severity=severity,
        status=EventStatus.INSTANT,
        started_at=time.time(),
        detail=detail,
    )
