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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cloud_sync.errors import CommandError

log = logging.getLogger(__name__)


class SensorModes(Protocol):
    """Where a maintenance command goes (``sensors.modes.ModeDesk``)."""

    async def set_sensor_mode(self, sensor_id: str, mode: str, who: str, why: str) -> None:
        """Request a sensor mode; raise ValueError for an unknown sensor or mode."""
        ...


class ConfigChanges(Protocol):
    """Where a config command goes (``edge.app.remote_config``)."""

    async def apply(self, config: dict[str, Any], command_id: str) -> dict[str, Any]:
        """Validate and install a new config, pending confirmation; raise ValueError if refused."""
        ...

    def restart(self) -> None:
        """Restart the gateway on the installed config."""
        ...


Audit = Callable[[dict[str, Any]], Awaitable[None]]
StatusRequest = Callable[[str, dict[str, Any]], Awaitable[None]]

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


class CommandProcessor:
    """Executes commands one at a time, in arrival order."""

    def __init__(
        self,
        audit: Audit,
        status: StatusRequest,
        *,
        modes: SensorModes | None = None,
        configs: ConfigChanges | None = None,
    ) -> None:
        self._audit = audit
        self._status = status
        self._modes = modes
        self._configs = configs
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
        if self._restart_after_reply and self._configs is not None:
            # Only now: the audit record of the change is committed before the restart.
            self._restart_after_reply = False
            self._configs.restart()
        return outcome

    async def _finish(
        self, outcome: dict[str, Any], command: dict[str, Any], received: float
    ) -> None:
        log.info("command handled id=%s ok=%s", outcome["id"], outcome["ok"])
        await self._audit(
            {"type": "command", "received_at": received, "command": command, **outcome}
        )
        if self.reply is not None:
            self.reply(outcome)

    async def _execute(self, command: Command) -> dict[str, Any]:
        if command.type == "ping":
            return {"pong": time.time()}
        if command.type == "status":
            await self._status("requested", {"command_id": command.id})
            return {"status": "appended to the outbox"}
        if command.type == "maintenance":
            return await self._maintenance(command)
        return await self._apply_config(command.args["config"], command.id)

    async def _maintenance(self, command: Command) -> dict[str, Any]:
        if self._modes is None:
            raise CommandError("this gateway takes no maintenance commands")
        sensor_id = str(command.args["sensor_id"])
        mode = str(command.args.get("mode", "maintenance")) if command.args["on"] else "normal"
        if mode not in {"maintenance", "calibration", "normal"}:
            raise CommandError("mode must be maintenance or calibration")
        who = str(command.args.get("who") or f"cloud command {command.id}")
        why = str(command.args.get("why") or "remote command")
        try:
            await self._modes.set_sensor_mode(sensor_id, mode, who, why)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return {"sensor_id": sensor_id, "mode": mode}

    async def _apply_config(self, raw: dict[str, Any], command_id: str) -> dict[str, Any]:
        if self._configs is None:
            raise CommandError("this gateway was started without a config file path")
        try:
            result = await self._configs.apply(raw, command_id)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self._restart_after_reply = True
        return result
