"""The seam between delivery policy and the network: one small protocol per uplink."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Protocol

from cloud_sync.config import UplinkTLSConfig
from cloud_sync.outbox import OutRecord


class Transport(Protocol):
    """One uplink. ``send`` returns the seqs its far end acknowledged."""

    name: str
    connected: bool

    async def connect(self) -> None:
        """Connect (or wait for the background reconnect); raise UplinkError on failure."""
        ...

    async def send(self, records: Sequence[OutRecord]) -> list[int]:
        """Deliver ``records``; return acknowledged seqs; raise UplinkError(acked=…) on failure."""
        ...

    async def close(self) -> None:
        """Disconnect and release resources."""
        ...


def client_ssl_context(tls: UplinkTLSConfig) -> ssl.SSLContext:
    """A verifying client TLS context, with the client certificate for mutual TLS."""
    context = ssl.create_default_context(cafile=None if tls.ca_file is None else str(tls.ca_file))
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context
