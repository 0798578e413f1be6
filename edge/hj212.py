"""HJ 212-2017 frame codec: CRC, parsing and building (pure functions, no I/O).

Shared by the sensors' HJ 212 decoder and the HJ 212 uplink to provincial platforms.

A frame is ``##`` + 4-digit data-segment length + data segment + 4 hex CRC + ``\\r\\n``.
The length counts bytes of the UTF-8 data segment; the CRC covers the data segment only
(HJ 212-2017 §6.3 and Appendix A). See ``shared/reference/standards.md`` §1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edge.errors import OffsiteEdgeError

MAX_DATA_SEGMENT = 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")


class FrameError(OffsiteEdgeError, ValueError):
    """A frame that does not follow HJ 212-2017; the message says which rule it breaks."""


def crc16(data: bytes) -> int:
    """Return the HJ 212 CRC of ``data`` (Appendix A; note: not CRC-16/MODBUS)."""
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ byte
        for _ in range(8):
            lsb = reg & 1
            reg >>= 1
            if lsb:
                reg ^= 0xA001
    return reg


@dataclass(frozen=True, slots=True, kw_only=True)
class Hj212Message:
    """A parsed data segment.

    ``header`` holds the fields outside CP (QN, ST, CN, PW, MN, Flag, PNUM, PNO);
    ``cp`` holds the CP items as ``{"DataTime": "...", "LA-Rtd": "50.1", "LA-Flag": "N"}``.
    Values stay strings: what they mean depends on the pollutant code.
    """

    header: Mapping[str, str]
    cp: Mapping[str, str] = field(default_factory=dict)

    @property
    def cn(self) -> str:
        """The command code, e.g. ``2011`` for real-time data."""
        return self.header.get("CN", "")

    @property
    def mn(self) -> str:
        """The monitoring point (device) number."""
        return self.header.get("MN", "")


def parse_frame(raw: bytes) -> Hj212Message:
    """Parse one complete frame, checking header, length and CRC (hex case-insensitive)."""
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    if not raw.startswith(b"##"):
        raise FrameError("frame does not start with '##'")
    if len(raw) < 10:
        raise FrameError("frame shorter than header, length and CRC")
    length_field = raw[2:6]
    if not length_field.isdigit():
        raise FrameError(f"length field {length_field!r} is not 4 decimal digits")
    declared = int(length_field)
    data, crc_field = raw[6:-4], raw[-4:]
    if declared != len(data):
        raise FrameError(f"length field says {declared} bytes, data segment has {len(data)}")
    if declared > MAX_DATA_SEGMENT:
        raise FrameError(f"data segment of {declared} bytes exceeds {MAX_DATA_SEGMENT}")
    # int(…, 16) alone would also take " 1f", "0x1f" and "1_f".
    if not all(c in _HEX for c in crc_field):
        raise FrameError(f"CRC field {crc_field!r} is not hexadecimal (4 digits)")
    received_crc = int(crc_field, 16)
    computed = crc16(data)
    if received_crc != computed:
        raise FrameError(f"CRC mismatch: frame has {crc_field.decode()}, computed {computed:04X}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"data segment is not UTF-8: {exc.reason}") from None
    return parse_data_segment(text)


def parse_data_segment(text: str) -> Hj212Message:
    """Parse ``QN=…;ST=…;…;CP=&&…&&`` into header fields and CP items."""
    cp_start = text.find("CP=&&")
    if cp_start < 0:
        raise FrameError("data segment has no CP=&&…&& field")
    cp_end = text.rfind("&&")
    if cp_end < cp_start + 5:
        raise FrameError("CP field is not closed with '&&'")
    header: dict[str, str] = {}
    for part in text[:cp_start].split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise FrameError(f"header field {part[:40]!r} is not KEY=value")
        if key in header:
            raise FrameError(f"header field {key[:20]!r} appears twice")
        header[key] = value
    cp: dict[str, str] = {}
    # Items are separated by ';', fields of one item by ','; we flatten both, since every
    # key carries its pollutant code (``LA-Rtd``, ``LA-Flag``).
    for item in text[cp_start + 5 : cp_end].replace(";", ",").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FrameError(f"CP item {item[:40]!r} is not KEY=value")
        # Which of two values would be the reading is a guess: refuse the frame instead.
        if key in cp:
            raise FrameError(f"CP item {key[:20]!r} appears twice")
        cp[key] = value
    return Hj212Message(header=header, cp=cp)


def build_data_segment(header: Mapping[str, str], cp: Mapping[str, str]) -> str:
    """Format header fields and CP items as a data segment (CP items separated by ';')."""
    head = ";".join(f"{key}={value}" for key, value in header.items())
    body = ";".join(f"{key}={value}" for key, value in cp.items())
    return f"{head};CP=&&{body}&&"


def build_frame(data_segment: str) -> bytes:
    """Wrap a data segment into a complete frame with length, CRC and CRLF."""
    data = data_segment.encode("utf-8")
    if len(data) > MAX_DATA_SEGMENT:
        raise FrameError(f"data segment of {len(data)} bytes exceeds {MAX_DATA_SEGMENT}")
    return b"##%04d%s%04X\r\n" % (len(data), data, crc16(data))


# --- split packets (HJ 212-2017 §6.3.2: Flag D bit, PNUM/PNO) -------------------------

MAX_PACKETS = 9999  # PNUM is N4 (Table 3: 9 characters with "PNUM=")
FLAG_ACK = 1  # Flag bit A: an answer is required
FLAG_SPLIT = 2  # Flag bit D: PNUM/PNO present


def _code_of(key: str) -> str:
    # ``w01001-Avg`` → ``w01001``: the fields of one pollutant code travel together.
    return key.rsplit("-", 1)[0]


def packetise(
    header: Mapping[str, str],
    items: Sequence[tuple[str, str]],
    *,
    lead: Sequence[tuple[str, str]] = (),
    limit: int = MAX_DATA_SEGMENT,
) -> list[bytes]:
    """Frames for one message, split into packets when its data segment exceeds ``limit``.

    ``header`` holds QN, ST, CN, PW, MN and Flag. Unsplit, the message is one frame. Split,
    every packet repeats the header (the same QN: the packets are one message) with Flag's
    D bit set and ``PNUM`` (packets in all) and ``PNO`` (1-based) after Flag, repeats the
    ``lead`` items (e.g. ``DataTime``) and carries its share of ``items`` in order;
    consecutive items of one pollutant code (``w01001-Avg``, ``w01001-Flag``) stay in one
    packet, so a value never travels without its flag. Each packet has its own length and
    CRC. Raises FrameError when one code's items alone cannot fit a packet, or more than
    9999 packets would be needed.
    """
    whole = build_data_segment(header, dict([*lead, *items]))
    if len(whole.encode("utf-8")) <= limit:
        return [build_frame(whole)]
    flag = int(header.get("Flag", "4")) | FLAG_SPLIT
    head = {k: v for k, v in header.items() if k not in {"PNUM", "PNO"}}
    head["Flag"] = str(flag)

    def packet_head(pnum: str, pno: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in head.items():
            out[key] = value
            if key == "Flag":
                out |= {"PNUM": pnum, "PNO": pno}
        if "Flag" not in head:
            out |= {"PNUM": pnum, "PNO": pno}
        return out

    # Bytes of a packet with no items, with PNUM/PNO at their widest (4 digits each).
    empty = len(build_data_segment(packet_head("9999", "9999"), dict(lead)).encode("utf-8"))
    groups: list[list[tuple[str, str]]] = []
    for key, value in items:
        if groups and _code_of(groups[-1][0][0]) == _code_of(key):
            groups[-1].append((key, value))
        else:
            groups.append([(key, value)])
    chunks: list[list[tuple[str, str]]] = []
    used = limit + 1  # forces a first chunk
    for group in groups:
        size = sum(len(f"{k}={v}".encode()) + 1 for k, v in group)  # +1: each ';'
        if used + size > limit:
            if empty + size - (0 if lead else 1) > limit:
                raise FrameError(
                    f"items of {_code_of(group[0][0])[:20]!r} need {size} bytes: "
                    f"they cannot fit a {limit}-byte packet"
                )
            chunks.append([])
            used = empty - (0 if lead else 1)  # the first item of a bare CP has no ';'
        chunks[-1].extend(group)
        used += size
    if not chunks:
        raise FrameError(f"header of {len(whole.encode('utf-8'))} bytes exceeds {limit}")
    if len(chunks) > MAX_PACKETS:
        raise FrameError(f"message needs {len(chunks)} packets, more than PNUM allows")
    total = str(len(chunks))
    return [
        build_frame(build_data_segment(packet_head(total, str(n)), dict([*lead, *chunk])))
        for n, chunk in enumerate(chunks, start=1)
    ]


def reassemble(packets: Sequence[Hj212Message]) -> Hj212Message:
    """Join the packets of one split message (any order) back into one message.

    Checks what a platform must: one QN, one PNUM, every PNO from 1 to PNUM exactly once,
    the same header otherwise; the lead items every packet repeats must agree. The result
    has no PNUM/PNO and Flag's D bit cleared. A single unsplit message is returned as is.
    """
    if len(packets) == 1 and "PNUM" not in packets[0].header:
        return packets[0]
    if not packets:
        raise FrameError("no packets to reassemble")
    qns = {p.header.get("QN", "") for p in packets}
    if len(qns) != 1:
        raise FrameError(f"packets of one message carry {len(qns)} different QNs")
    pnums = {p.header.get("PNUM", "") for p in packets}
    if len(pnums) != 1 or not next(iter(pnums)).isdigit():
        raise FrameError(f"packets disagree on PNUM: {sorted(pnums)[:4]}")
    total = int(next(iter(pnums)))
    numbers = sorted(int(p.header.get("PNO", "0") or 0) for p in packets)
    if numbers != list(range(1, total + 1)):
        raise FrameError(f"PNO {numbers[:8]} is not 1..{total} once each")

    def bare(message: Hj212Message) -> dict[str, str]:
        return {k: v for k, v in message.header.items() if k not in {"PNUM", "PNO"}}

    first = bare(packets[0])
    if any(bare(p) != first for p in packets):
        raise FrameError("packets of one message have different headers")
    cp: dict[str, str] = {}
    for packet in sorted(packets, key=lambda p: int(p.header["PNO"])):
        for key, value in packet.cp.items():
            if key in cp and cp[key] != value:
                raise FrameError(f"CP item {key[:20]!r} differs between packets")
            cp[key] = value
    first["Flag"] = str(int(first.get("Flag", "0") or 0) & ~FLAG_SPLIT)
    return Hj212Message(header=first, cp=cp)
