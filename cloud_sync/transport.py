"""The seam between delivery policy and the network: one small protocol per uplink."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class EvidenceTransport(Protocol):
    """An uplink that also carries evidence snapshots (MQTT chunks, HTTPS PUT)."""

    async def send_evidence(self, sha256: str, data: bytes, *, event_id: str) -> str | None:
        """Deliver one snapshot; return who confirmed holding its verified bytes.

        None: sent, and a trustworthy confirmation may come later (MQTT: a signed receipt).
        Raise ``EvidenceRejectedError`` when the receiver refused it (with its reason) and
        UplinkError when it could not be sent: the snapshot stays unconfirmed.
        """
        ...
