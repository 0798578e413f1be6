"""Downlink commands from the cloud: verify, execute, answer, audit.

A command acts only inside a signed envelope (:mod:`cloud_sync.envelope`, docs/protocol.md
"Signed commands") on ``<prefix>/<gateway>/down/command``: signed by a regulator key the
gateway was commissioned with, for this gateway, not expired, never seen before (the id is
consumed in the store before the command runs, :mod:`cloud_sync.command_ids`). Everything
else is refused with a reason code. The gateway answers on ``…/up/reply`` with
``{"id", "ok", "result"|"error"[, "refused"]}`` and appends an audit record (type
``command``) with the command, its issuer and its outcome, or the refusal and its reason,
to the outbox: signed into the chain and delivered even when the reply is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from cloud_sync.envelope import MAX_ENVELOPE_BYTES, SignedCommand, TrustedKey, open_envelope
from cloud_sync.errors import CommandError, CommandRefusedError

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
Consume = Callable[[SignedCommand], Awaitable[None]]
"""Marks a verified command's id as used in the store; raises CommandRefusedError on replay."""

REFUSALS_PER_MINUTE = 60
"""Refusals recorded one by one per minute; beyond, they are counted into the next record
so that a flood of junk cannot fill the outbox and evict real data."""
RAW_KEPT = 256


class CommandProcessor:
    """Verifies and executes commands one at a time, in arrival order."""

    def __init__(
        self,
        audit: Audit,
        status: StatusRequest,
        *,
        gateway_id: str,
        keys: Mapping[str, TrustedKey],
        consume: Consume,
        modes: SensorModes | None = None,
        configs: ConfigChanges | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self._monotonic = monotonic
        self._status = status
        self._gateway_id = gateway_id
        self._keys = dict(keys)
        self._consume = consume
        self._modes = modes
        self._configs = configs
        self.reply: Callable[[dict[str, Any]], None] | None = None
        self._restart_after_reply = False
        self._queue: asyncio.Queue[tuple[bytes, int, str]] = asyncio.Queue(maxsize=100)
        self._window_start = monotonic()
        self._window_count = 0
        self._suppressed = 0

    def submit(self, payload: bytes) -> None:
        """Queue a raw command (called on the event loop by the uplink)."""
        # An oversized payload is refused unread: keep one byte over the limit, not all of
        # it, with the size and digest of the whole (what a refusal reports).
        received = (payload[: MAX_ENVELOPE_BYTES + 1], len(payload), _digest(payload))
        try:
            self._queue.put_nowait(received)
        except asyncio.QueueFull:
            log.warning("command dropped reason=queue_full bytes=%d", len(payload))

    async def run(self, stop: asyncio.Event) -> None:
        """Process commands until ``stop``."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.5):
                    payload, size, digest = await self._queue.get()
            except TimeoutError:
                continue
            await self.handle(payload, size=size, digest=digest)

    async def handle(
        self, payload: bytes, *, size: int | None = None, digest: str | None = None
    ) -> dict[str, Any]:
        """Verify and execute one command; answer and audit it whatever the outcome.

        ``size`` and ``digest`` describe the payload as received when ``payload`` was cut.
        """
        received = time.time()
        try:
            # In a worker thread: parsing a large hostile payload must not stall the loop.
            command = await asyncio.to_thread(
                open_envelope, payload, gateway_id=self._gateway_id, keys=self._keys, now=received
            )
            await self._consume(command)
        except CommandRefusedError as exc:
            size = len(payload) if size is None else size
            return await self._refuse(payload, size, digest or _digest(payload), exc, received)
        try:
            result = await self._execute(command)
            outcome: dict[str, Any] = {"id": command.id, "ok": True, "result": result}
        except CommandError as exc:
            outcome = {"id": command.id, "ok": False, "error": str(exc)}
        log.info(
            "command handled id=%s type=%s who=%s ok=%s",
            command.id,
            command.type,
            command.key.who,
            outcome["ok"],
        )
        await self._audit(
            {
                "type": "command",
                "received_at": received,
                "command": {"type": command.type, "args": command.args},
                "who": command.key.who,
                "key": command.key.public_hex,
                "issued_at": command.issued_at,
                "expires_at": command.expires_at,
                **outcome,
            }
        )
        if self.reply is not None:
            self.reply(outcome)
        if self._restart_after_reply and self._configs is not None:
            # Only now: the audit record of the change is committed before the restart.
            self._restart_after_reply = False
            self._configs.restart()
        return outcome

    async def _refuse(
        self, payload: bytes, size: int, digest: str, exc: CommandRefusedError, received: float
    ) -> dict[str, Any]:
        outcome: dict[str, Any] = {
            "id": exc.command_id,
            "ok": False,
            "refused": exc.reason,
            "error": str(exc),
            # Lets the sender match a refusal that has no verified id to what it sent.
            "payload_sha256": digest,
        }
        if self._count_refusal():
            log.warning(
                "command refused id=%s reason=%s bytes=%d: %s",
                exc.command_id,
                exc.reason,
                size,
                exc,
            )
            await self._audit(
                {
                    "type": "command",
                    "received_at": received,
                    "command": {"raw": payload[:RAW_KEPT].decode("utf-8", "replace")},
                    "payload_bytes": size,
                    "suppressed_before": self._take_suppressed(),
                    **outcome,
                }
            )
        if self.reply is not None:
            self.reply(outcome)
        return outcome

    def _count_refusal(self) -> bool:
        """Whether this refusal gets its own record (else it is counted as suppressed)."""
        now = self._monotonic()
        if now - self._window_start >= 60.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count <= REFUSALS_PER_MINUTE:
            return True
        self._suppressed += 1
        return False

    def _take_suppressed(self) -> int:
        count, self._suppressed = self._suppressed, 0
        return count

    async def _execute(self, command: SignedCommand) -> dict[str, Any]:
        if command.type == "ping":
            return {"pong": time.time()}
        if command.type == "status":
            await self._status("requested", {"command_id": command.id})
            return {"status": "appended to the outbox"}
        if command.type == "maintenance":
            return await self._maintenance(command)
        return await self._apply_config(command.args["config"], command.id)

    async def _maintenance(self, command: SignedCommand) -> dict[str, Any]:
        if self._modes is None:
            raise CommandError("this gateway takes no maintenance commands")
        sensor_id = str(command.args["sensor_id"])
        mode = str(command.args.get("mode", "maintenance")) if command.args["on"] else "normal"
        if mode not in {"maintenance", "calibration", "normal"}:
            raise CommandError("mode must be maintenance or calibration")
        # Who is the key that signed, never a name the command claims for itself.
        who = f"{command.key.who} command {command.id}"
        why = str(command.args.get("why") or "remote command")[:200]
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


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()
