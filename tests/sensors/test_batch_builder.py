import json

import pytest
from helpers import gateway_config, sensor

from sensors.batch_builder import BatchBuilder


def _config(tmp_path, **overrides):
    noise = sensor(
        "noise-01",
        "t/noise",
        quantities=[
            {
                "name": "LA",
                "unit": "dB(A)",
                "range": [20, 140],
                "calibration": {"gain": 1.0, "offset": -0.5},
            }
        ],
    )
    water = {
        "id": "water-01",
        "kind": "water",
        "topic": "t/water",
        "decoder": {"type": "json", "fields": {"pH": "ph", "DO": "do"}},
        "quantities": [
            {"name": "pH", "unit": "pH", "range": [0, 14]},
            {
                "name": "DO",
                "unit": "mg/L",
                "range": [0, 20],
                "calibration": {"gain": 2.0, "offset": 1.0},
            },
        ],
    }
    return gateway_config(tmp_path / "g.db", sensors=[noise, water], **overrides)


T0 = 1_699_999_980  # a minute start; device and receive times lie near it (bounded skew)


def _noise(la, ts_ms=1_700_000_000_000):
    return json.dumps({"la": la, "ts": ts_ms}).encode()


def test_calibration_and_minute_aggregate(tmp_path):
    builder = BatchBuilder(_config(tmp_path))
    for la in (50.5, 70.5):
        builder.accept("t/noise", _noise(la), T0 + 1.0)
    builder.accept("t/water", b'{"ph": 7.0, "do": 3.0}', T0 + 120.5)
    batch = builder.cut()
    noise = batch.aggregates[("noise-01", "LA", "N", T0)]
    assert noise[:4] == [2, 50.0, 70.0, 120.0]
    assert noise[4] == pytest.approx(10**5 + 10**7)
    # No device timestamp: the receive time decides the minute; arithmetic, not energy.
    assert batch.aggregates[("water-01", "DO", "N", T0 + 120)] == [1, 7.0, 7.0, 7.0, 0.0]
    assert batch.activity["noise-01"].readings == 2
    assert batch.activity["water-01"].last_values["DO"] == (7.0, "N", T0 + 120.5)
    assert batch.messages == 3
    assert not batch.dead_letters
    assert builder.cut().messages == 0


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("t/unknown", b"1", "no sensor is configured for this topic"),
        ("t/noise", b"\xc3\x28", "not UTF-8"),
        ("t/noise", b"{oops", "invalid JSON"),
        ("t/noise", b'{"la": "loud", "ts": 1700000000000}', "LA: str is not a number"),
        ("t/noise", b'{"la": NaN, "ts": 1700000000000}', "LA: value nan is not finite"),
        ("t/noise", b'{"la": Infinity, "ts": 1700000000000}', "LA: value inf is not finite"),
        ("t/noise", _noise(150.5), "LA: calibrated value 150 outside the physical range [20, 140]"),
        ("t/noise", b"{" + b" " * 300 + b"}", "exceeds the 256-byte limit"),
    ],
)
def test_bad_input_becomes_a_dead_letter_and_valid_traffic_continues(
    tmp_path, topic, payload, reason
):
    builder = BatchBuilder(
        _config(tmp_path, ingest={"max_payload_bytes": 256, "dead_letter_payload_bytes": 16})
    )
    builder.accept("t/noise", _noise(60.5), T0 + 1.0)
    builder.accept(topic, payload, T0 + 2.0)
    builder.accept("t/noise", _noise(61.5), T0 + 3.0)
    batch = builder.cut()
    (dead,) = batch.dead_letters
    assert reason in dead.reason
    assert dead.topic == topic
    assert dead.payload == payload[:16]
    assert builder.dead_letter_total == 1
    assert sum(acc[0] for acc in batch.aggregates.values()) == 2


def test_one_bad_quantity_keeps_the_good_one(tmp_path):
    builder = BatchBuilder(_config(tmp_path))
    builder.accept("t/water", b'{"ph": 15.0, "do": 3.0}', T0 + 60.0)
    batch = builder.cut()
    assert list(batch.aggregates) == [("water-01", "DO", "N", T0 + 60)]
    assert "pH: calibrated value 15 outside" in batch.dead_letters[0].reason
    assert batch.dead_letters[0].sensor_id == "water-01"


def test_history_keeps_the_last_n_readings(tmp_path):
    config = _config(tmp_path, store={"path": str(tmp_path / "g.db"), "raw_history": 3})
    builder = BatchBuilder(config)
    for i in range(5):
        builder.accept("t/noise", _noise(40.5 + i), T0 + i)
    assert [value for _, _, value, _ in builder.history("noise-01")] == [42.0, 43.0, 44.0]


class RecordingMonitor:
    def __init__(self, forced_flag=None):
        self.forced_flag = forced_flag
        self.seen, self.faults = [], []

    def observe(self, *args):
        self.seen.append(args)

    def out_of_range(self, *args):
        self.faults.append(args)


def test_monitor_sees_stored_and_out_of_range_readings(tmp_path):
    monitor = RecordingMonitor()
    builder = BatchBuilder(_config(tmp_path), monitors={"noise-01": monitor})
    builder.accept("t/noise", _noise(60.5, T0 * 1000 + 1000), T0)
    builder.accept("t/noise", _noise(10.0, T0 * 1000 + 2000), T0)
    assert monitor.seen == [("LA", 60.0, "N", T0 + 1.0)]
    assert monitor.faults == [("LA", 9.5, T0 + 2.0)]


def test_maintenance_flag_is_forced_onto_stored_readings(tmp_path):
    monitor = RecordingMonitor(forced_flag="M")
    builder = BatchBuilder(_config(tmp_path), monitors={"noise-01": monitor})
    builder.accept("t/noise", _noise(60.5, T0 * 1000 + 60_000), T0)
    assert list(builder.cut().aggregates) == [("noise-01", "LA", "M", T0 + 60)]
    assert monitor.seen == [("LA", 60.0, "M", T0 + 60.0)]


def test_absorbing_a_later_batch_equals_one_batch_of_both(tmp_path):
    messages = [("t/noise", _noise(40.5 + i, T0 * 1000 + 60_000 * (i % 3))) for i in range(10)]
    messages += [("t/water", b'{"ph": 7.0, "do": 3.0}'), ("t/unknown", b"x")]
    together = BatchBuilder(_config(tmp_path))
    split = BatchBuilder(_config(tmp_path))
    for topic, payload in messages:
        together.accept(topic, payload, T0 + 5.0)
    for topic, payload in messages[:6]:
        split.accept(topic, payload, T0 + 5.0)
    first = split.cut()
    for topic, payload in messages[6:]:
        split.accept(topic, payload, T0 + 5.0)
    first.absorb(split.cut())
    whole = together.cut()
    assert first.aggregates == whole.aggregates
    assert first.dead_letters == whole.dead_letters
    assert first.messages == whole.messages
    assert first.activity == whole.activity
