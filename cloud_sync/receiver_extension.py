"""What a part of the reference receiver beyond the record API plugs into.

The receiver (:mod:`cloud_sync.receiver`) owns the database, the HTTP(S) server (aiohttp)
and the MQTT intake. An extension (evidence snapshots, the regulator console) adds routes
to the one aiohttp application and may claim MQTT uplink topics of its own; it never opens
its own listener or broker connection. The receiver calls :meth:`ReceiverExtension.setup`
once before it starts serving, and :meth:`ReceiverExtension.handle_mqtt` from its single
writer task for every message whose topic the extension claimed, *before* that message
is acknowledged (so an extension's commit happens before PUBACK, like a record's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from cloud_sync.receiver_store import ReceiverDB

__all__ = ["Principal", "ReceiverContext", "ReceiverExtension"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an authenticated API request comes from.

    ``api``: the operator's token (or a client certificate); ``gateway``: one gateway's own
    token (``gateway`` names it) and it may only act for that gateway.
    """

    kind: Literal["api", "gateway"]
    gateway: str | None = None


@dataclass(frozen=True, slots=True)
class ReceiverContext:
    """What the receiver hands an extension at setup."""

    db: ReceiverDB
    """The receiver's database (single writer: call it from the event loop only)."""
    data_dir: Path
    """A directory beside the database that belongs to the extensions (created)."""
    authorize: Callable[[web.Request], Principal | None]
    """Bearer-token / client-certificate check of a request; ``None`` means refuse (401)."""
    topic_prefix: str
    """MQTT topic prefix (``offsite``): uplink topics are ``<prefix>/<gateway>/up/<suffix>``."""
    publish: Callable[[str, bytes], object] | None = None
    """Publish at QoS 1 with the receiver's MQTT client (e.g. a receipt); None: no broker."""


class ReceiverExtension(Protocol):
    """A part of the receiver with its own routes and, optionally, MQTT uplink topics."""

    def setup(self, app: web.Application, context: ReceiverContext) -> None:
        """Add routes (and ``on_cleanup`` hooks) to ``app``; called once before serving."""

    def claims(self, suffix: str) -> bool:
        """Whether an uplink message ``<prefix>/<gateway>/up/<suffix>`` is this extension's."""

    async def handle_mqtt(self, gateway: str, suffix: str, payload: bytes) -> None:
        """Take one claimed message; return once it is committed (then it is acknowledged).

        An invalid message is recorded as rejected by the extension and returns normally
        (acknowledged, never redelivered); an exception means "not committed, redeliver".
        """
