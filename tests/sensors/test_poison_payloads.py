"""Nothing a sensor sends stops the ingest: each reproduction from issue 9 is a dead letter.

Decoders raise nothing but DecodeError for any bytes; the batch builder refuses device
times outside [receive - max_lateness, receive + max_skew]; whatever still goes wrong while
screening one message is that message's dead letter.
"""

from __future__ import annotations

import json
import math

import pytest
from helpers import gateway_config, sensor
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import hj212
from sensors.batch_builder import BatchBuilder
from sensors.config import Hj212DecoderConfig, JsonDecoderConfig, NumberDecoderConfig
from sensors.decoders import Decoded, hj212_decoder, json_decoder, number_decoder
from sensors.errors import DecodeError
from sensors.monitor import build_monitors
from sensors.standards import load_profiles

NOW = 1_764_633_600.0  # 2025-12-02 00:00 UTC, the receive time of every message here
NOW_MS = int(NOW * 1000)

JSON_CONFIGS = [
    JsonDecoderConfig(
        type="json",
        fields={"a": "a", "b": "b.0", "c": "c.d"},
        flags={"a": "fa"},
        timestamp="ts",
        timestamp_format=fmt,
    )
    for fmt in ("epoch_ms", "epoch_s", "iso8601")
] + [JsonDecoderConfig(type="json", fields={"a": "a"})]
HJ212 = Hj212DecoderConfig(type="hj212", codes={"LA": "LA", "fume": "a34098"})


def _frame(cp: str) -> bytes:
    return hj212.build_frame(f"QN=1;ST=23;CN=2011;PW=123456;MN=M1;Flag=4;CP=&&{cp}&&")


def _decodes_or_refuses(decode, payload: bytes) -> None:
    try:
        decoded = decode(payload)
    except DecodeError:
        return
    assert isinstance(decoded, Decoded)
    assert decoded.timestamp is None or isinstance(decoded.timestamp, float)
    assert all(math.isfinite(value) for _, value, _ in decoded.values)


# --- decoders: anything in, DecodeError or a Decoded out ---------------------------------

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**420)
    | st.floats()
    | st.text(max_size=30)
)
_json_doc = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d", "0", "ts", "fa"]), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(_json_doc, st.sampled_from(JSON_CONFIGS))
def test_any_json_document_decodes_or_is_refused(document, config):
    _decodes_or_refuses(json_decoder(config), json.dumps(document).encode())


@settings(max_examples=300)
@given(st.binary(max_size=400), st.sampled_from(JSON_CONFIGS))
def test_any_bytes_to_the_json_decoder(payload, config):
    _decodes_or_refuses(json_decoder(config), payload)


@given(st.binary(max_size=400))
def test_any_bytes_to_the_number_and_hj212_decoders(payload):
    _decodes_or_refuses(number_decoder(NumberDecoderConfig(type="number"), "v"), payload)
    _decodes_or_refuses(hj212_decoder(HJ212), payload)


_cp_text = st.text(alphabet="0123456789-+.eE,;=&aAFLNRdgtx_ \u00e9", max_size=80)


@settings(max_examples=300)
@given(_cp_text, st.text(alphabet="0123456789", min_size=0, max_size=16))
def test_any_cp_field_in_a_frame_with_a_valid_crc(cp, data_time):
    # The CRC is right, so only the decoder's own checks stand between the frame and the store.
    for body in (cp, f"DataTime={data_time};{cp}", f"DataTime={data_time};LA-Rtd={cp}"):
        try:
            frame = _frame(body)
        except hj212.FrameError:
            continue  # longer than a data segment may be
        _decodes_or_refuses(hj212_decoder(HJ212), frame)


@pytest.mark.parametrize("depth", [1000, 3000])
def test_deep_nesting_is_a_decode_error(depth):
    with pytest.raises(DecodeError, match="nested too deeply"):
        json_decoder(JSON_CONFIGS[0])(b"[" * depth + b"]" * depth)
    with pytest.raises(DecodeError, match="nested too deeply"):
        json_decoder(JSON_CONFIGS[0])(b'{"a":' * depth + b"1" + b"}" * depth)


def test_a_number_of_400_digits():
    big = "9" * 400
    decoded = json_decoder(JSON_CONFIGS[0])(f'{{"ts": {NOW_MS}, "a": {big}}}'.encode())
    assert decoded.values == []
    assert decoded.problems[0] == "a: value inf is not finite"
    with pytest.raises(DecodeError, match="timestamp is not a finite number"):
        json_decoder(JSON_CONFIGS[0])(f'{{"ts": {big}, "a": 1}}'.encode())
    with pytest.raises(DecodeError, match="timestamp is not a finite number"):
        json_decoder(JSON_CONFIGS[0])(f'{{"ts": -{big}, "a": 1}}'.encode())


@pytest.mark.parametrize("stamp", ['"0001-01-01T00:00:00+23:59"', '"9999-12-31T23:59:59-23:59"'])
def test_iso_timestamps_at_the_ends_of_the_calendar(stamp):
    config = JSON_CONFIGS[2]
    _decodes_or_refuses(json_decoder(config), f'{{"ts": {stamp}, "a": 1}}'.encode())


@pytest.mark.parametrize(
    ("data_time", "reason"),
    [
        ("2024010108", "not 14 digits"),
        ("2024010108000", "not 14 digits"),
        ("202401010800000", "not 14 digits"),
        ("2024-1-1080000", "not 14 digits"),
        (
            "\u0662\u0660\u0662\u0664\u0660\u0661\u0660\u0661\u0660\u0668\u0660\u0660\u0660\u0660",
            "not 14 digits",
        ),
        ("20240230080000", "not a valid date"),
        ("20241301080000", "not a valid date"),
        ("20240101250000", "not a valid date"),
    ],
)
def test_hj212_data_time_must_be_exactly_14_digits_of_a_real_time(data_time, reason):
    with pytest.raises(DecodeError, match=reason):
        hj212_decoder(HJ212)(_frame(f"DataTime={data_time};LA-Rtd=50.1,LA-Flag=N"))


def test_hj212_data_time_of_year_1_decodes_to_a_time_the_builder_refuses():
    decoded = hj212_decoder(HJ212)(_frame("DataTime=00010101000000;LA-Rtd=50.1,LA-Flag=N"))
    assert decoded.timestamp == pytest.approx(-62135625600.0)  # Beijing time, year 1


def test_hj212_repeated_cp_key_is_refused():
    with pytest.raises(DecodeError, match="'LA-Rtd' appears twice"):
        hj212_decoder(HJ212)(_frame("DataTime=20240101080000;LA-Rtd=50.1;LA-Rtd=90.3"))


# --- the batch builder: device time is bounded ------------------------------------------


def _config(tmp_path, **ingest):
    hj = {
        "id": "fume-01",
        "kind": "gas",
        "topic": "t/fume",
        "decoder": {"type": "hj212", "codes": {"fume": "a34098"}},
        "quantities": [{"name": "fume", "unit": "mg/m3", "range": [0, 50]}],
    }
    noise = sensor(
        "noise-01",
        "t/noise",
        # judged per 1-min window (GB 12348 steady noise), so a few loud minutes are judged
        standard={"profile": "gb12348-2008", "params": {"zone": "2"}, "window_s": 60},
        health={"expected_interval_s": 1, "offline_multiple": 1e6, "stuck_after_s": 120},
    )
    return gateway_config(tmp_path / "g.db", sensors=[noise, hj], ingest=ingest)


def _noise(la, ts) -> bytes:
    return json.dumps({"la": la, "ts": ts}).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_noise(50, 1e15), "after the receive time; ingest.max_skew_s is 300"),  # year 33658
        (b'{"la": 50, "ts": 1e308}', "after the receive time"),
        (_noise(50, -1), "before the receive time; ingest.max_lateness_s is 604800"),
        (_noise(50, -1e308), "before the receive time"),
        (_noise(50, NOW_MS + 301_000), "301 s after the receive time"),
        (_noise(50, NOW_MS + 365 * 86_400_000), "after the receive time"),
        (_noise(50, NOW_MS - 8 * 86_400_000), "691200 s before the receive time"),
        (_noise(50, 936_662_400_000), "1999-09-07T00:00:00+00:00"),
    ],
)
def test_a_device_time_out_of_bounds_is_a_dead_letter(tmp_path, payload, reason):
    builder = BatchBuilder(_config(tmp_path))
    builder.accept("t/noise", _noise(50, NOW_MS), NOW)
    builder.accept("t/noise", payload, NOW)
    batch = builder.cut()
    (dead,) = batch.dead_letters
    assert reason in dead.reason, dead.reason
    assert dead.sensor_id == "noise-01"
    # Only the good reading was folded: its own minute, nothing at the poisoned time.
    assert list(batch.aggregates) == [("noise-01", "LA", "N", int(NOW))]


def test_the_bounds_are_inclusive_and_configurable(tmp_path):
    builder = BatchBuilder(_config(tmp_path, max_skew_s=10, max_lateness_s=60))
    for ts_ms in (NOW_MS + 10_000, NOW_MS - 60_000, NOW_MS + 10_001, NOW_MS - 60_001):
        builder.accept("t/noise", _noise(50, ts_ms), NOW)
    batch = builder.cut()
    assert sum(acc[0] for acc in batch.aggregates.values()) == 2
    assert [d.reason.split(";")[1].strip() for d in batch.dead_letters] == [
        "ingest.max_skew_s is 10",
        "ingest.max_lateness_s is 60",
    ]


def test_hj212_data_time_of_year_1_is_a_dead_letter(tmp_path):
    builder = BatchBuilder(_config(tmp_path))
    builder.accept("t/fume", _frame("DataTime=00010101000000;a34098-Rtd=1.5"), NOW)
    (dead,) = builder.cut().dead_letters
    # Year 1 in Beijing is year 0 in UTC, which no datetime holds: shown as a number.
    assert dead.reason.startswith("device time -6.21356e+10 s is 6.39003e+10 s before")


def _monitored(tmp_path):
    config = _config(tmp_path)
    monitors = build_monitors(config.sensors, load_profiles(), site="test")
    return BatchBuilder(config, monitors=monitors), monitors["noise-01"]


def test_equal_readings_of_1999_and_2099_raise_no_stuck_alarm(tmp_path):
    builder, monitor = _monitored(tmp_path)
    builder.accept("t/noise", _noise(50, 936_662_400_000), NOW)  # 1999
    builder.accept("t/noise", _noise(50, 4_092_566_400_000), NOW)  # 2099
    assert len(builder.cut().dead_letters) == 2
    events = monitor.tick(NOW + 1)
    assert [e.kind for e in events if "stuck" in e.kind] == []


def test_a_reading_a_year_ahead_does_not_stop_the_judging(tmp_path):
    builder, monitor = _monitored(tmp_path)
    builder.accept("t/noise", _noise(50, NOW_MS + 365 * 86_400_000), NOW)
    # Loud minutes after it must still be judged: an exceedance opens (zone 2 day: 60 dB).
    for second in range(0, 300, 1):
        builder.accept("t/noise", _noise(80, NOW_MS + second * 1000), NOW + second)
    events = monitor.tick(NOW + 300)
    assert any(e.kind == "exceedance" for e in events), [e.kind for e in events]
    assert len(builder.cut().dead_letters) == 1


# --- whatever slips through: the message's own dead letter --------------------------------


def test_internal_error_names_the_exception_and_the_sensor(tmp_path):
    builder = BatchBuilder(_config(tmp_path))
    reason = builder.internal_error("t/noise", b"x" * 2000, ZeroDivisionError("oops"), NOW)
    assert reason == "internal error: ZeroDivisionError: oops"
    (dead,) = builder.cut().dead_letters
    assert (dead.sensor_id, dead.reason, len(dead.payload)) == ("noise-01", reason, 512)
    assert builder.sensor_of("t/none") is None


def test_an_internal_error_quoting_a_lone_surrogate_can_still_be_stored(tmp_path):
    builder = BatchBuilder(_config(tmp_path))
    reason = builder.internal_error("t/noise", b"{}", RuntimeError("bad key \ud800"), NOW)
    assert reason == "internal error: RuntimeError: bad key \\ud800"
    reason.encode("utf-8")  # what SQLite will do with it
