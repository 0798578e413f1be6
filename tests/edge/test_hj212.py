import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import hj212

OFFICIAL = (
    "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
    "Flag=5;CP=&&RtdInterval=30&&"
)
ACK = "QN=20160801085857223;ST=91;CN=9014;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&"


def test_official_crc_vector():
    assert len(OFFICIAL) == 101
    assert hj212.crc16(OFFICIAL.encode()) == 0x1C80
    assert hj212.build_frame(OFFICIAL) == b"##0101" + OFFICIAL.encode() + b"1C80\r\n"


def test_ack_crc_vector():
    assert hj212.crc16(ACK.encode()) == 0x71C0


def test_not_modbus():
    # CRC-16/MODBUS gives 0759 on the official example; HJ 212's register update differs.
    assert hj212.crc16(OFFICIAL.encode()) != 0x0759


def test_parse_official_frame_and_lowercase_crc():
    frame = hj212.parse_frame(b"##0101" + OFFICIAL.encode() + b"1c80\r\n")
    assert frame.cn == "1062"
    assert frame.mn == "010000A8900016F000169DC0"
    assert frame.header["Flag"] == "5"
    assert frame.cp == {"RtdInterval": "30"}


def test_data_flags_and_items_are_kept():
    segment = (
        "QN=20240101120000000;ST=23;CN=2011;PW=123456;MN=NOISE01;Flag=4;"
        "CP=&&DataTime=20240101120000;LA-Rtd=50.1,LA-Flag=N;a34004-Rtd=35.2,a34004-Flag=M&&"
    )
    frame = hj212.parse_frame(hj212.build_frame(segment))
    assert frame.cp["LA-Rtd"] == "50.1"
    assert frame.cp["LA-Flag"] == "N"
    assert frame.cp["a34004-Flag"] == "M"
    assert frame.cp["DataTime"] == "20240101120000"


def test_length_counts_utf8_bytes():
    segment = "QN=1;ST=23;CN=2011;PW=1;MN=测试;Flag=4;CP=&&LA-Rtd=1&&"
    frame = hj212.build_frame(segment)
    assert int(frame[2:6]) == len(segment.encode("utf-8"))
    assert hj212.parse_frame(frame).mn == "测试"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"#0101" + OFFICIAL.encode() + b"1C80\r\n", "does not start"),
        (b"##0100" + OFFICIAL.encode() + b"1C80\r\n", "length field says 100"),
        (b"##01x1" + OFFICIAL.encode() + b"1C80\r\n", "not 4 decimal digits"),
        (b"##0101" + OFFICIAL.encode() + b"1C81\r\n", "CRC mismatch"),
        (b"##0101" + OFFICIAL.encode() + b"ZZZZ\r\n", "not hexadecimal"),
        (b"##01", "shorter"),
    ],
)
def test_bad_frames_name_the_rule(raw, reason):
    with pytest.raises(hj212.FrameError, match=reason):
        hj212.parse_frame(raw)


def test_segment_without_cp_is_rejected():
    data = b"QN=1;ST=23;CN=2011"
    with pytest.raises(hj212.FrameError, match="no CP"):
        hj212.parse_frame(b"##%04d%s%04X\r\n" % (len(data), data, hj212.crc16(data)))


_code = st.from_regex(r"[a-z][0-9]{5}|LA|Leq", fullmatch=True)
_number = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: f"{v:.3f}")


@given(st.dictionaries(_code, _number, min_size=1, max_size=8), st.sampled_from("NFMSDCTB"))
def test_build_parse_round_trip(values, flag):
    cp = {"DataTime": "20240101120000"}
    for code, value in values.items():
        cp[f"{code}-Rtd"] = value
        cp[f"{code}-Flag"] = flag
    header = {
        "QN": "20240101120000000",
        "ST": "23",
        "CN": "2011",
        "PW": "1",
        "MN": "X",
        "Flag": "4",
    }
    frame = hj212.parse_frame(hj212.build_frame(hj212.build_data_segment(header, cp)))
    assert dict(frame.header) == header
    assert dict(frame.cp) == cp


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw):
    with contextlib.suppress(hj212.FrameError):
        hj212.parse_frame(raw)


@given(st.integers(min_value=0), st.integers(1, 255))
def test_single_byte_corruption_is_detected_or_changes_the_frame(position, flip):
    segment = OFFICIAL.encode()
    frame = bytearray(hj212.build_frame(OFFICIAL))
    index = 6 + position % len(segment)
    frame[index] ^= flip
    # The CRC only keeps 8 bits of state per byte (standards.md §1.2), so a flipped byte is
    # not always detected; but it never parses into the original frame.
    try:
        parsed = hj212.parse_frame(bytes(frame))
    except hj212.FrameError:
        return
    assert hj212.build_data_segment(parsed.header, parsed.cp) != OFFICIAL


def test_readme_example_frame_is_valid():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("##0"))
    frame = hj212.parse_frame(line.replace("\\r\\n", "\r\n").encode())
    assert frame.cp["a34098-Flag"] == "N"


@pytest.mark.parametrize(
    ("segment", "reason"),
    [
        (
            "QN=1;MN=M1;CP=&&DataTime=20240101080000;LA-Rtd=50.1;LA-Rtd=90.3&&",
            "'LA-Rtd' appears twice",
        ),
        ("QN=1;MN=M1;CP=&&DataTime=20240101080000;DataTime=20240101090000&&", "'DataTime' appears"),
        ("QN=1;MN=M1;MN=M2;CP=&&LA-Rtd=50.1&&", "header field 'MN' appears twice"),
    ],
)
def test_a_repeated_key_is_refused_not_silently_overwritten(segment, reason):
    with pytest.raises(hj212.FrameError, match=reason):
        hj212.parse_frame(hj212.build_frame(segment))


@pytest.mark.parametrize("crc", [b"0x1f", b" 1F0", b"1_F0", b"+1F0"])
def test_crc_field_is_exactly_4_hex_digits(crc):
    data = b"QN=1;MN=M1;CP=&&LA-Rtd=50.1&&"
    with pytest.raises(hj212.FrameError, match="not hexadecimal"):
        hj212.parse_frame(b"##%04d%s%s\r\n" % (len(data), data, crc))


# --- split packets -----------------------------------------------------------------------

_HEADER = {"QN": "20240101120000000", "ST": "21", "CN": "2051", "PW": "123456", "MN": "M1"}
_SUFFIXES = ("Min", "Avg", "Max", "Flag", "EFlag", "Data")
# Values never contain the separators ; , = & (the codec does not escape); some are
# Chinese, so a packet's length is counted in UTF-8 bytes, not characters.
_value = st.text(alphabet="0123456789.-NMT测试数据", min_size=1, max_size=12)
_group = st.tuples(
    st.from_regex(r"[a-z][0-9]{5}|L[A-Za-z]{1,3}", fullmatch=True),
    st.lists(st.sampled_from(_SUFFIXES), min_size=1, max_size=6, unique=True),
    st.lists(_value, min_size=6, max_size=6),
)


def _items(groups):
    items, seen = [], set()
    for code, suffixes, values in groups:
        if code in seen:
            continue
        seen.add(code)
        items += [(f"{code}-{s}", v) for s, v in zip(suffixes, values, strict=False)]
    return items


@given(
    st.lists(_group, min_size=1, max_size=60),
    st.integers(min_value=200, max_value=1024),
    st.sampled_from(["4", "5"]),
    st.booleans(),
)
def test_any_data_segment_splits_into_valid_packets_and_reassembles(groups, limit, flag, lead):
    items = _items(groups)
    header = {**_HEADER, "Flag": flag}
    leading = [("DataTime", "20240101120000")] if lead else []
    whole = hj212.build_data_segment(header, dict([*leading, *items]))
    split_head = {**header, "Flag": "7", "PNUM": "9999", "PNO": "9999"}
    too_big = [
        code
        for code in {k.rsplit("-", 1)[0] for k, _ in items}
        if len(
            hj212.build_data_segment(
                split_head, dict([*leading, *[i for i in items if i[0].startswith(code + "-")]])
            ).encode()
        )
        > limit
    ]
    if len(whole.encode()) > limit and too_big:
        # Refused only when one code's items alone cannot fit a packet of this size.
        with pytest.raises(hj212.FrameError, match="cannot fit"):
            hj212.packetise(header, items, lead=leading, limit=limit)
        return
    packets = hj212.packetise(header, items, lead=leading, limit=limit)
    parsed = []
    for packet in packets:
        data = packet[6:-6]
        assert int(packet[2:6]) == len(data) <= limit  # length counts UTF-8 bytes
        assert packet[-6:-2] == b"%04X" % hj212.crc16(data)  # each packet its own CRC
        assert packet.endswith(b"\r\n")
        parsed.append(hj212.parse_frame(packet))
    if len(whole.encode()) <= limit:
        assert packets == [hj212.build_frame(whole)]
    else:
        n = len(packets)
        assert all(list(p.header) == [*_HEADER, "Flag", "PNUM", "PNO"] for p in parsed)
        assert {p.header["QN"] for p in parsed} == {_HEADER["QN"]}  # one message, one QN
        assert {p.header["Flag"] for p in parsed} == {str(int(flag) | 2)}  # D bit
        assert [p.header["PNUM"] for p in parsed] == [str(n)] * n
        assert [p.header["PNO"] for p in parsed] == [str(i) for i in range(1, n + 1)]
        assert all(list(p.cp)[: len(leading)] == [k for k, _ in leading] for p in parsed)
        # A code's fields travel together: each code appears in exactly one packet.
        owners = {}
        for number, p in enumerate(parsed):
            for key in p.cp:
                if key != "DataTime":
                    owners.setdefault(key.rsplit("-", 1)[0], set()).add(number)
        assert all(len(o) == 1 for o in owners.values())
    joined = hj212.reassemble(list(reversed(parsed)))  # order of arrival does not matter
    assert dict(joined.header) == header
    assert list(joined.cp.items()) == [*leading, *items]


def _split_message():
    items = [(f"a{n:05d}-Avg", "1.000") for n in range(150)]
    packets = [hj212.parse_frame(p) for p in hj212.packetise({**_HEADER, "Flag": "5"}, items)]
    assert len(packets) >= 3
    return packets


def test_reassemble_refuses_a_missing_packet_or_a_foreign_qn():
    packets = _split_message()
    with pytest.raises(hj212.FrameError, match="PNO"):
        hj212.reassemble(packets[:-1])
    with pytest.raises(hj212.FrameError, match="PNO"):
        hj212.reassemble([*packets, packets[0]])
    foreign = hj212.Hj212Message(header={**packets[1].header, "QN": "1"}, cp=packets[1].cp)
    with pytest.raises(hj212.FrameError, match="QNs"):
        hj212.reassemble([packets[0], foreign, *packets[2:]])


def test_a_code_too_long_for_any_packet_is_refused():
    items = [(f"a00001-{s}", "9" * 300) for s in ("Min", "Avg", "Max", "Flag")]
    with pytest.raises(hj212.FrameError, match="cannot fit"):
        hj212.packetise({**_HEADER, "Flag": "5"}, items)
