"""The seam between delivery policy and the network: one small protocol per uplink."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cloud_sync.outbox import OutRecord


class Transport(Protocol):
    """One uplink. ``send`` returns the seqs its far end acknowledged."""

    name: str
    connected: bool
    far_acks: int
    """Acknowledgements of real records received from the far end so far (PUBACK, HTTP 2xx,
    9014), never local ones: what proves that a new config reaches the cloud."""

    async def connect(self) -> None:
        """Connect (or wait for the background reconnect); raise UplinkError on failure."""
        ...

    async def send(self, records: Sequence[OutRecord]) -> list[int]:
        """Deliver ``records``; return acknowledged seqs; raise UplinkError(acked=…) on failure."""
        ...

    async def close(self) -> None:
        """Disconnect and release resources."""
        ...
