"""Downlink commands from the cloud: validate, execute, answer, audit.

A command is JSON ``{"id": "...", "type": "ping"|"status"|"maintenance"|"config",
"args": {...}}`` on ``<prefix>/<gateway>/down/command``. The gateway answers on
``…/up/reply`` with ``{"id", "ok", "result"|"error"}`` and appends an audit record
(type ``command``) with the command and its outcome to the outbox, so the answer is
delivered durably even when the reply message is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cloud_sync.errors import CommandError

if TYPE_CHECKING:
    from cloud_sync.sync import CloudSync

log = logging.getLogger(__name__)

COMMAND_TYPES = ("ping", "status", "maintenance", "config")


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command."""

    id: str
    type: str
    args: dict[str, Any]


def parse_command(payload: bytes) -> Command:
    """Validate a command payload; raise CommandError saying what is wrong."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError("command must be a JSON object")
    cid, ctype, args = data.get("id"), data.get("type"), data.get("args", {})
    if not isinstance(cid, str) or not 1 <= len(cid) <= 64:
        raise CommandError("id must be a string of 1-64 characters")
    if ctype not in COMMAND_TYPES:
        raise CommandError(f"type must be one of {COMMAND_TYPES}")
    if not isinstance(args, dict):
        raise CommandError("args must be an object")
    if ctype == "maintenance" and (
        not isinstance(args.get("sensor_id"), str) or not isinstance(args.get("on"), bool)
    ):
        raise CommandError("maintenance needs args.sensor_id (string) and args.on (bool)")
    if ctype == "config" and not isinstance(args.get("config"), dict):
        raise CommandError("config needs args.config (the whole gateway config as an object)")
    return Command(cid, str(ctype), args)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (fsync + rename), keeping the old file as ``.bak``."""
    tmp = path.with_name(path.name + ".new")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if path.exists():
        os.replace(path, path.with_name(path.name + ".bak"))
    os.replace(tmp, path)


class CommandProcessor:
    """Executes commands one at a time, in arrival order."""

    def __init__(
        self,
        sync: CloudSync,
        *,
        config_path: Path | None = None,
        on_config_applied: Callable[[], None] | None = None,
    ) -> None:
        self.sync = sync
        self.config_path = config_path
        self.on_config_applied = on_config_applied
        self.reply: Callable[[dict[str, Any]], None] | None = None
        self._restart_after_reply = False
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=100)

    def submit(self, payload: bytes) -> None:
        """Queue a raw command (called on the event loop by the uplink)."""
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("command dropped reason=queue_full bytes=%d", len(payload))

    async def run(self, stop: asyncio.Event) -> None:
        """Process commands until ``stop``."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.5):
                    payload = await self._queue.get()
            except TimeoutError:
                continue
            await self.handle(payload)

    async def handle(self, payload: bytes) -> dict[str, Any]:
        """Execute one command; answer and audit it whatever the outcome."""
        received = time.time()
        try:
            command = parse_command(payload)
        except CommandError as exc:
            outcome: dict[str, Any] = {"id": None, "ok": False, "error": str(exc)}
            await self._finish(outcome, {"raw": payload[:512].decode("utf-8", "replace")}, received)
            return outcome
        try:
            result = await self._execute(command)
            outcome = {"id": command.id, "ok": True, "result": result}
        except CommandError as exc:
            outcome = {"id": command.id, "ok": False, "error": str(exc)}
        await self._finish(outcome, {"type": command.type, "args": command.args}, received)
        if self._restart_after_reply and self.on_config_applied is not None:
            # Only now: the audit record of the change is committed before the restart.
            self._restart_after_reply = False
            self.on_config_applied()
        return outcome

    async def _finish(
        self, outcome: dict[str, Any], command: dict[str, Any], received: float
    ) -> None:
        log.info("command handled id=%s ok=%s", outcome["id"], outcome["ok"])
        await self.sync.append_audit(
            {"type": "command", "received_at": received, "command": command, **outcome}
        )
        if self.reply is not None:
            self.reply(outcome)

    async def _execute(self, command: Command) -> dict[str, Any]:
        if command.type == "ping":
            return {"pong": time.time()}
        if command.type == "status":
            await self.sync.append_status("requested", {"command_id": command.id})
            return {"status": "appended to the outbox"}
        if command.type == "maintenance":
            return await self._maintenance(command)
        return await self._apply_config(command.args["config"], command.id)

    async def _maintenance(self, command: Command) -> dict[str, Any]:
        from edge.sensor_modes import request_mode

        sensor_id = str(command.args["sensor_id"])
        known = {s.id for s in getattr(self.sync.gateway_config, "sensors", [])}
        if known and sensor_id not in known:
            raise CommandError(f"unknown sensor {sensor_id!r}")
        mode = str(command.args.get("mode", "maintenance")) if command.args["on"] else "normal"
        if mode not in {"maintenance", "calibration", "normal"}:
            raise CommandError("mode must be maintenance or calibration")
        who = str(command.args.get("who") or f"cloud command {command.id}")
        why = str(command.args.get("why") or "remote command")
        # The same path as the technician's CLI: the gateway applies it within a second.
        await asyncio.to_thread(request_mode, self.sync.store.path, sensor_id, mode, who, why)
        return {"sensor_id": sensor_id, "mode": mode}

    async def _apply_config(self, raw: dict[str, Any], command_id: str) -> dict[str, Any]:
        from edge.config import GatewayConfig
        from edge.gateway import GatewaySetupError, build_sensor_monitors
        from edge.supervisor import mark_pending

        try:
            config = GatewayConfig.model_validate(raw)
            build_sensor_monitors(config)  # standard profiles resolve for every sensor
        except ValidationError as exc:
            raise CommandError(f"invalid config: {exc.error_count()} errors: {exc}") from None
        except GatewaySetupError as exc:
            raise CommandError(f"invalid config: {exc}") from None
        if config.gateway.id != self.sync.gateway_id:
            raise CommandError("config is for another gateway")
        if self.config_path is None:
            raise CommandError("this gateway was started without a config file path")
        import yaml

        text = yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
        timeout = (
            config.cloud.rollback_timeout_s if config.cloud else self.sync.cloud.rollback_timeout_s
        )
        try:
            await asyncio.to_thread(write_atomically, self.config_path, text)
            await asyncio.to_thread(mark_pending, self.config_path, command_id, timeout)
        except OSError as exc:
            raise CommandError(f"could not write the config file: {exc}") from None
        self._restart_after_reply = True
        return {"applied": True, "restart": True, "rollback_timeout_s": timeout}
