"""Evidence chunks and their reassembly: exact bytes or a refusal, never anything else."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.evidence_wire import (
    MAX_HEADER_BYTES,
    ChunkAssembler,
    ChunkHeader,
    EvidenceRejectedError,
    chunk_messages,
    parse_chunk,
)

MAX = 4096


def _pieces(data: bytes, cuts: list[int]) -> list[tuple[ChunkHeader, bytes]]:
    """``data`` cut at the given offsets into chunks with their headers (any chunking)."""
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    parts = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    sha = hashlib.sha256(data).hexdigest()
    return [
        (ChunkHeader(sha256=sha, size=len(data), chunk=n, chunks=len(parts)), part)
        for n, part in enumerate(parts)
    ]


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=MAX),
    cuts=st.lists(st.integers(0, MAX), max_size=12),
    order=st.randoms(use_true_random=False),
    duplicates=st.lists(st.integers(0, 50), max_size=6),
)
def test_any_chunking_order_and_duplication_reassembles_exactly(data, cuts, order, duplicates):
    pieces = _pieces(data, cuts)
    sent = pieces + [pieces[d % len(pieces)] for d in duplicates]
    order.shuffle(sent)
    assembler = ChunkAssembler(max_bytes=MAX)
    results = [assembler.add(h, b) for h, b in sent]
    done = [r for r in results if r is not None]
    # exactly one completion, with exactly the sender's bytes; duplicates after it start a
    # new partial that never completes alone unless the snapshot is one chunk
    assert done
    assert all(r.data == data and r.sha256 == hashlib.sha256(data).hexdigest() for r in done)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(min_size=2, max_size=MAX),
    cuts=st.lists(st.integers(0, MAX), max_size=8),
    victim=st.integers(0, 100),
    flip=st.integers(0, 10_000),
    order=st.randoms(use_true_random=False),
)
def test_a_damaged_chunk_is_rejected_never_assembled(data, cuts, victim, flip, order):
    pieces = _pieces(data, cuts)
    n = victim % len(pieces)
    header, part = pieces[n]
    damaged = bytearray(part)
    damaged[flip % len(damaged)] ^= 0x01
    pieces[n] = (header, bytes(damaged))
    order.shuffle(pieces)
    assembler = ChunkAssembler(max_bytes=MAX)
    for h, b in pieces[:-1]:
        assert assembler.add(h, b) is None
    with pytest.raises(EvidenceRejectedError) as refused:
        assembler.add(*pieces[-1])
    assert refused.value.reason == "hash_mismatch"
    assert assembler.in_progress() == []


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=2 * MAX_HEADER_BYTES))
def test_parse_chunk_refuses_garbage_with_a_reason(payload):
    reasons: list[str] = []
    try:
        header, data = parse_chunk(payload, max_bytes=MAX)
    except EvidenceRejectedError as exc:
        reasons.append(exc.reason)
    else:
        assert 0 <= header.chunk < header.chunks
        assert data
    assert set(reasons) <= {"malformed", "too_large"}


@given(data=st.binary(min_size=1, max_size=MAX))
def test_chunk_messages_round_trip_through_parse(data):
    assembler = ChunkAssembler(max_bytes=MAX)
    out = None
    for message in chunk_messages(data, event_id="ev-1", chunk_bytes=1000):
        assert len(message) <= 1000 + MAX_HEADER_BYTES
        header, part = parse_chunk(message, max_bytes=MAX)
        assert header.event_id == "ev-1"
        out = assembler.add(header, part) or out
    assert out is not None
    assert (out.data, out.event_id) == (data, "ev-1")


def test_size_lies_and_oversize_are_refused():
    data = b"x" * 100
    sha = hashlib.sha256(data).hexdigest()
    assembler = ChunkAssembler(max_bytes=MAX)
    with pytest.raises(EvidenceRejectedError, match="too_large"):
        assembler.add(ChunkHeader(sha256=sha, size=MAX + 1, chunk=0, chunks=1), data)
    # more bytes than the header announced
    with pytest.raises(EvidenceRejectedError) as refused:
        assembler.add(ChunkHeader(sha256=sha, size=50, chunk=0, chunks=2), data)
    assert refused.value.reason == "size_mismatch"
    # chunks of one name that disagree on the count
    assembler.add(ChunkHeader(sha256=sha, size=100, chunk=0, chunks=2), data[:50])
    with pytest.raises(EvidenceRejectedError, match="inconsistent"):
        assembler.add(ChunkHeader(sha256=sha, size=100, chunk=1, chunks=3), data[50:])


def test_memory_stays_bounded_by_dropping_the_oldest_partial():
    assembler = ChunkAssembler(max_bytes=1000, max_partials=3, max_buffered=1500)
    for n in range(20):
        data = bytes([n]) * 1000
        sha = hashlib.sha256(data).hexdigest()
        assert (
            assembler.add(ChunkHeader(sha256=sha, size=1000, chunk=0, chunks=2), data[:500]) is None
        )
        assert assembler.buffered <= 1500
        assert len(assembler.in_progress()) <= 3
    assert assembler.dropped >= 17
