"""Evidence snapshots on the wire (pure): MQTT chunks and their reassembly.

A snapshot travels over MQTT as chunks on ``<prefix>/<gateway>/up/evidence``; each
message is one line of JSON header, a newline, then the chunk's bytes::

    {"v":1,"sha256":"<64 hex>","size":81234,"chunk":0,"chunks":2,"event_id":"..."}\\n<bytes>

The receiver reassembles them with :class:`ChunkAssembler`: any order, duplicates
ignored, bounded memory, and the result is handed out only when its SHA-256 equals the
name, so a reassembly yields exactly the sender's bytes or is rejected with a reason.
docs/protocol.md ("Evidence") is the specification.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cloud_sync.errors import CloudSyncError

__all__ = [
    "CHUNK_BYTES",
    "MAX_CHUNKS",
    "MAX_HEADER_BYTES",
    "ChunkAssembler",
    "ChunkHeader",
    "EvidenceRejectedError",
    "chunk_messages",
    "parse_chunk",
]

CHUNK_BYTES = 60 * 1024
"""Bytes of image per MQTT message: with its header a message stays under 64 KiB, which
brokers configured like the site's (``message_size_limit 65536``) still accept."""
MAX_CHUNK_BYTES = 64 * 1024
"""Largest chunk a receiver takes (the header is not counted)."""
MAX_CHUNKS = 4096
"""Most chunks one snapshot may be cut into."""
MAX_HEADER_BYTES = 1024
"""A header line longer than this is refused unread."""

_SHA = re.compile(r"[0-9a-f]{64}")
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class EvidenceRejectedError(CloudSyncError):
    """An evidence upload (or one chunk of it) is refused; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "", *, sha256: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.sha256 = sha256
        """The snapshot refused, when the upload named it validly (a refusal can answer it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkHeader:
    """What a chunk says about itself and its snapshot."""

    sha256: str
    size: int
    chunk: int
    chunks: int
    event_id: str | None = None

    def encode(self) -> bytes:
        """The header line (without the newline)."""
        fields: dict[str, object] = {
            "v": 1,
            "sha256": self.sha256,
            "size": self.size,
            "chunk": self.chunk,
            "chunks": self.chunks,
        }
        if self.event_id is not None:
            fields["event_id"] = self.event_id
        return json.dumps(fields, separators=(",", ":")).encode("ascii")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_chunk(payload: bytes, *, max_bytes: int) -> tuple[ChunkHeader, bytes]:
    """Split one MQTT message into its header and bytes; raise EvidenceRejectedError if wrong."""
    newline = payload.find(b"\n", 0, MAX_HEADER_BYTES + 1)
    if newline < 0:
        raise EvidenceRejectedError("malformed", "no header line within 1024 bytes")
    try:
        fields = json.loads(payload[:newline])
    except (ValueError, RecursionError):
        raise EvidenceRejectedError("malformed", "header is not JSON") from None
    if not isinstance(fields, dict) or fields.get("v") != 1:
        raise EvidenceRejectedError("malformed", "header is not a v1 object")
    sha = fields.get("sha256")
    if not isinstance(sha, str) or _SHA.fullmatch(sha) is None:
        raise EvidenceRejectedError("malformed", "sha256 is not 64 lower-case hex digits")
    try:
        return _checked(sha, fields, payload[newline + 1 :], max_bytes)
    except EvidenceRejectedError as exc:
        exc.sha256 = sha  # named validly: the refusal can be answered for this snapshot
        raise


def _checked(
    sha: str, fields: dict[str, object], data: bytes, max_bytes: int
) -> tuple[ChunkHeader, bytes]:
    event_id = fields.get("event_id")
    size, chunk, chunks = (
        _int(fields.get("size")),
        _int(fields.get("chunk")),
        _int(fields.get("chunks")),
    )
    if event_id is not None and (
        not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id)
    ):
        raise EvidenceRejectedError("malformed", "event_id is not an identifier")
    if size is None or chunk is None or chunks is None:
        raise EvidenceRejectedError("malformed", "size, chunk and chunks must be integers")
    if not 1 <= size <= max_bytes:
        raise EvidenceRejectedError("too_large", f"size {size} not in 1..{max_bytes}")
    if not 1 <= chunks <= min(MAX_CHUNKS, size) or not 0 <= chunk < chunks:
        raise EvidenceRejectedError("malformed", f"chunk {chunk} of {chunks} for {size} bytes")
    if not 1 <= len(data) <= MAX_CHUNK_BYTES:
        raise EvidenceRejectedError("malformed", f"chunk of {len(data)} bytes")
    header = ChunkHeader(sha256=sha, size=size, chunk=chunk, chunks=chunks, event_id=event_id)
    return header, data


def chunk_messages(
    data: bytes, *, event_id: str | None, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The MQTT payloads that carry ``data`` (named by its SHA-256), in order."""
    sha = hashlib.sha256(data).hexdigest()
    chunks = max(1, -(-len(data) // chunk_bytes))
    for n in range(chunks):
        header = ChunkHeader(sha256=sha, size=len(data), chunk=n, chunks=chunks, event_id=event_id)
        yield header.encode() + b"\n" + data[n * chunk_bytes : (n + 1) * chunk_bytes]


@dataclass(slots=True)
class _Partial:
    size: int
    chunks: int
    event_id: str | None
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)
    held: int = 0


@dataclass(frozen=True, slots=True)
class Assembled:
    """A whole snapshot whose SHA-256 matched its name."""

    sha256: str
    data: bytes
    event_id: str | None


class ChunkAssembler:
    """Reassembles the chunks of one gateway's snapshots within a memory budget.

    At most ``max_partials`` snapshots are in progress (the oldest is dropped for a new
    one: its sender gets no receipt and sends it again) and at most ``max_buffered`` bytes
    are held. Every refusal raises :class:`EvidenceRejectedError` and forgets the snapshot.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        max_partials: int = 4,
        max_buffered: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_partials = max_partials
        self.max_buffered = max_buffered if max_buffered is not None else 2 * max_bytes
        self._clock = clock
        self._partials: dict[str, _Partial] = {}
        self.dropped = 0

    @property
    def buffered(self) -> int:
        """Bytes held in unfinished snapshots."""
        return sum(p.held for p in self._partials.values())

    def in_progress(self) -> list[str]:
        """Hashes of the unfinished snapshots, oldest first."""
        return list(self._partials)

    def add(self, header: ChunkHeader, data: bytes) -> Assembled | None:
        """Take one chunk; the whole snapshot once its last chunk arrived, else None."""
        sha = header.sha256
        if header.size > self.max_bytes:
            raise EvidenceRejectedError("too_large", f"{header.size} bytes > {self.max_bytes}")
        partial = self._partials.get(sha)
        if partial is not None and (partial.size, partial.chunks) != (header.size, header.chunks):
            del self._partials[sha]
            raise EvidenceRejectedError(
                "inconsistent", "chunks of one snapshot disagree on size or count"
            )
        if partial is None:
            self._make_room(header.size)
            partial = self._partials[sha] = _Partial(
                header.size, header.chunks, header.event_id, self._clock()
            )
        if header.chunk in partial.parts:
            return None  # a duplicate (QoS 1 redelivery): the first copy stands
        if partial.held + len(data) > partial.size:
            del self._partials[sha]
            raise EvidenceRejectedError("size_mismatch", f"more than {partial.size} bytes")
        partial.parts[header.chunk] = data
        partial.held += len(data)
        if len(partial.parts) < partial.chunks:
            return None
        del self._partials[sha]
        whole = b"".join(partial.parts[n] for n in range(partial.chunks))
        if len(whole) != partial.size:
            raise EvidenceRejectedError(
                "size_mismatch", f"{len(whole)} bytes, header said {partial.size}"
            )
        if hashlib.sha256(whole).hexdigest() != sha:
            raise EvidenceRejectedError("hash_mismatch", "the bytes do not hash to the name")
        return Assembled(sha, whole, partial.event_id)

    def drop_oldest(self) -> bool:
        """Forget the oldest unfinished snapshot (its sender sends it again); False: none."""
        if not self._partials:
            return False
        del self._partials[next(iter(self._partials))]
        self.dropped += 1
        return True

    def _make_room(self, size: int) -> None:
        # Oldest first: a snapshot that stalled longest is the least likely to complete.
        while (
            len(self._partials) >= self.max_partials or self.buffered + size > self.max_buffered
        ) and self.drop_oldest():
            pass
