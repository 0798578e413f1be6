import contextlib
import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import hj212
from sensors.config import Hj212DecoderConfig, JsonDecoderConfig, NumberDecoderConfig
from sensors.decoders import hj212_decoder, json_decoder, number_decoder
from sensors.errors import DecodeError

WATER = JsonDecoderConfig(
    type="json",
    fields={"pH": "values.ph", "DO": "values.do", "first": "list.0"},
    flags={"pH": "flags.ph"},
    timestamp="ts",
    timestamp_format="epoch_ms",
)


def test_json_field_mapping_flags_and_timestamp():
    payload = json.dumps(
        {"ts": 1700000000123, "values": {"ph": 7.1, "do": 6}, "list": [3.5], "flags": {"ph": "M"}}
    ).encode()
    decoded = json_decoder(WATER)(payload)
    assert decoded.timestamp == pytest.approx(1700000000.123)
    assert decoded.values == [("pH", 7.1, "M"), ("DO", 6.0, "N"), ("first", 3.5, "N")]
    assert decoded.problems == []


def test_json_iso_timestamp_needs_offset():
    config = JsonDecoderConfig(
        type="json", fields={"v": "v"}, timestamp="t", timestamp_format="iso8601"
    )
    decode = json_decoder(config)
    assert decode(b'{"t": "2024-01-01T08:00:00+08:00", "v": 1}').timestamp == 1704067200.0
    with pytest.raises(DecodeError, match="no time zone"):
        decode(b'{"t": "2024-01-01T08:00:00", "v": 1}')


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "not an object"),
        (b'"text"', "not an object"),
        (b'{"values": {"ph": 7}}', "timestamp field 'ts' missing"),
        (b'{"ts": "yesterday", "values": {}}', "timestamp is not a finite number"),
        (b'{"ts": NaN, "values": {}}', "timestamp is not a finite number"),
    ],
)
def test_json_whole_message_errors(payload, reason):
    with pytest.raises(DecodeError, match=reason):
        json_decoder(WATER)(payload)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"ph": "7.1", "do": 6}, "pH: str is not a number"),
        ({"ph": True, "do": 6}, "pH: bool is not a number"),
        ({"ph": None, "do": 6}, "pH: NoneType is not a number"),
        ({"ph": float("inf"), "do": 6}, "pH: value inf is not finite"),
        ({"ph": float("nan"), "do": 6}, "pH: value nan is not finite"),
        ({"do": 6}, "pH: field missing"),
    ],
)
def test_json_bad_quantity_keeps_the_others(values, problem):
    payload = json.dumps({"ts": 0, "values": values, "list": [1]}).encode()
    decoded = json_decoder(WATER)(payload)
    assert decoded.problems == [problem]
    assert ("DO", 6.0, "N") in decoded.values
    assert all(name != "pH" for name, _, _ in decoded.values)


def test_json_bad_flag_is_a_problem():
    payload = json.dumps({"ts": 0, "values": {"ph": 7, "do": 6}, "list": [1], "flags": {"ph": 3}})
    decoded = json_decoder(WATER)(payload.encode())
    assert decoded.problems == ["pH: data flag 3 is not N/F/M/S/D/C/T/B"]


_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
)


@given(st.dictionaries(st.sampled_from(["ph", "do", "x"]), _json_values), st.integers(0, 2**40))
def test_json_decoder_property(values, ts):
    """Every mapped quantity is either a finite float value or a named problem, never both."""
    payload = json.dumps({"ts": ts, "values": values, "list": [1.0]}).encode()
    decoded = json_decoder(WATER)(payload)
    names = [n for n, _, _ in decoded.values]
    problem_names = [p.split(":")[0] for p in decoded.problems]
    assert sorted(names + problem_names) == sorted(["pH", "DO", "first"])
    for name, value, flag in decoded.values:
        assert math.isfinite(value)
        assert flag in "NFMSDCTB"
        source = {"pH": "ph", "DO": "do"}.get(name)
        if source is not None:
            # Values are floats: an integer above 2**53 arrives rounded, as float() rounds it.
            assert value == float(values[source])


@given(st.binary(max_size=200))
def test_json_decoder_never_raises_anything_but_decode_error(payload):
    with contextlib.suppress(DecodeError):
        json_decoder(WATER)(payload)


def test_number_decoder():
    decode = number_decoder(NumberDecoderConfig(type="number"), "moisture")
    assert decode(b" 52.3\n").values == [("moisture", 52.3, "N")]
    for bad, reason in [(b"abc", "not a number"), (b"nan", "not finite"), (b"\xff", "UTF-8")]:
        with pytest.raises(DecodeError, match=reason):
            decode(bad)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_decoder_round_trip(value):
    decoded = number_decoder(NumberDecoderConfig(type="number"), "q")(repr(value).encode())
    assert decoded.values == [("q", value, "N")]


HJ = Hj212DecoderConfig(type="hj212", codes={"LA": "LA", "pm25": "a34004"}, mn="NOISE01")


def _frame(cp: str, mn: str = "NOISE01") -> bytes:
    segment = f"QN=20240101120000000;ST=23;CN=2011;PW=123456;MN={mn};Flag=4;CP=&&{cp}&&"
    return hj212.build_frame(segment)


def test_hj212_values_flags_and_china_time():
    decoded = hj212_decoder(HJ)(
        _frame("DataTime=20240101080000;LA-Rtd=50.1,LA-Flag=N;a34004-Rtd=35,a34004-Flag=M")
    )
    assert decoded.timestamp == datetime(2024, 1, 1, 0, 0, tzinfo=UTC).timestamp()
    assert decoded.values == [("LA", 50.1, "N"), ("pm25", 35.0, "M")]
    assert decoded.problems == []


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (_frame("LA-Rtd=1;a34004-Rtd=2", mn="OTHER"), "MN 'OTHER' is not this sensor's"),
        (_frame("DataTime=2024;LA-Rtd=1;a34004-Rtd=2"), "DataTime"),
        (_frame("LA-Rtd=1").replace(b"##00", b"##01"), "length field"),
        (_frame("LA-Rtd=1")[:-6] + b"0000\r\n", "CRC mismatch"),
    ],
)
def test_hj212_whole_frame_errors(frame, reason):
    with pytest.raises(DecodeError, match=reason):
        hj212_decoder(HJ)(frame)


def test_hj212_quantity_problems():
    decoded = hj212_decoder(HJ)(_frame("LA-Rtd=abc;a34004-Rtd=3,a34004-Flag=Q"))
    assert decoded.values == []
    assert decoded.problems == [
        "LA: LA-Rtd='abc' is not a number",
        "pm25: data flag 'Q' is not N/F/M/S/D/C/T/B",
    ]


@given(
    st.floats(min_value=0, max_value=200, allow_nan=False),
    st.floats(min_value=0, max_value=1000, allow_nan=False),
    st.sampled_from("NFMSDCTB"),
)
def test_hj212_decoder_property(la, pm, flag):
    decoded = hj212_decoder(HJ)(
        _frame(f"DataTime=20240101080000;LA-Rtd={la:.1f},LA-Flag={flag};a34004-Rtd={pm:.3f}")
    )
    assert decoded.values == [("LA", float(f"{la:.1f}"), flag), ("pm25", float(f"{pm:.3f}"), "N")]
