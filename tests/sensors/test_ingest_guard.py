"""An exception while screening one message is its dead letter, not the end of paho's thread.

The callbacks are called the way paho's network thread calls them (no broker needed: the
whole path through a real broker is in tests/e2e/test_poison_input.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import paho.mqtt.client as mqtt
from helpers import gateway_config, sensor

from sensors.batch_builder import BatchBuilder
from sensors.ingest import MqttIngest


class BrokenMonitor:
    """A monitor with a bug that only some values hit."""

    forced_flag = None

    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, quantity: str, value: float, flag: str, ts: float) -> None:
        if value > 99:
            raise ZeroDivisionError("window of zero seconds")
        self.seen.append(value)

    def out_of_range(self, quantity: str, value: float, ts: float) -> None:
        del quantity, value, ts


def _message(mid: int, topic: str, la: float) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    msg.payload = json.dumps({"la": la, "ts": int(time.time() * 1000)}).encode()
    msg.qos = 1
    return msg


def test_an_exception_in_screening_is_a_dead_letter_and_the_message_is_acknowledged(
    tmp_path, caplog
):
    config = gateway_config(tmp_path / "g.db", sensors=[sensor("noise-01", "t/noise")])
    monitor = BrokenMonitor()
    builder = BatchBuilder(config, monitors={"noise-01": monitor})
    committed = []

    async def commit(batch):
        committed.append(batch)

    def failing_tick(now):
        raise RuntimeError("monitor bug")

    ingest = MqttIngest(config, builder, commit, tick=failing_tick)
    acked = []
    ingest.client.ack = lambda mid, qos: acked.append(mid)  # no broker: record the PUBACKs
    with caplog.at_level(logging.ERROR):
        # What paho's network thread does: any exception here would end that thread.
        for mid, la in ((1, 50.0), (2, 120.0), (3, 51.0)):
            ingest._on_message(ingest.client, None, _message(mid, "t/noise", la))
        assert asyncio.run(ingest.flush())
    (batch,) = committed
    (dead,) = batch.dead_letters
    assert dead.reason == "internal error: ZeroDivisionError: window of zero seconds"
    assert dead.sensor_id == "noise-01"
    assert monitor.seen == [50.0, 51.0]
    assert acked == [1, 2, 3]
    assert "message dead-lettered sensor=noise-01 topic=t/noise" in caplog.text
    assert "sensor monitors' tick failed" in caplog.text
