"""HJ 212-2017 frame codec: CRC, parsing and building (pure functions, no I/O).

Shared by the sensors' HJ 212 decoder and the HJ 212 uplink to provincial platforms.

A frame is ``##`` + 4-digit data-segment length + data segment + 4 hex CRC + ``\\r\\n``.
The length counts bytes of the UTF-8 data segment; the CRC covers the data segment only
(HJ 212-2017 §6.3 and Appendix A). See ``shared/reference/standards.md`` §1.
"""

from __future__ import annotations

from collections.abc import Mapping
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
