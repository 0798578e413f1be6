"""The gateway against a real mosquitto broker: ingest, dead letters, persistent session."""

import asyncio
import time
import uuid

from gateway_thread import GatewayThread
from helpers import gateway_config, sensor
from mqtt_tools import noise_payload, publish_all, query, subscribe_session, wait_for

from edge import hj212
from edge.store import Store
from sensors.batch_builder import BatchBuilder
from sensors.ingest import MqttIngest

# These tests stamp readings from 1970 on (one minute each): let the ingest take them.
ARCHIVE = {"max_lateness_s": 3_000_000_000}


def _unique():
    return uuid.uuid4().hex[:10]


def _total(db):
    rows = query(db, "SELECT coalesce(sum(count), 0) FROM minute_aggregates")
    return rows[0][0] if rows else 0


def _hj212_sensor(topic):
    return {
        "id": "fume-01",
        "kind": "gas",
        "topic": topic,
        "decoder": {"type": "hj212", "codes": {"fume": "a34098"}},
        "quantities": [{"name": "fume", "unit": "mg/m3", "range": [0, 50]}],
    }


def test_readings_and_every_bad_input_class(mosquitto, tmp_path):
    tag = _unique()
    noise_topic, fume_topic, soil_topic = f"{tag}/noise", f"{tag}/fume", f"{tag}/soil"
    soil = {
        "id": "soil-01",
        "kind": "soil",
        "topic": soil_topic,
        "decoder": {"type": "number"},
        "quantities": [
            {"name": "moisture", "unit": "%", "range": [0, 100], "calibration": {"gain": 0.1}}
        ],
    }
    db = tmp_path / "g.db"
    config = gateway_config(
        db,
        port=mosquitto.port,
        gateway_id=f"gw-{tag}",
        sensors=[sensor("noise-01", noise_topic), _hj212_sensor(fume_topic), soil],
        ingest={"max_payload_bytes": 512, "catch_all": [f"{tag}/#"], **ARCHIVE},
    )
    good_frame = hj212.build_frame(
        "QN=1;ST=31;CN=2011;PW=1;MN=M1;Flag=4;CP=&&DataTime=20240101080000;a34098-Rtd=1.5,a34098-Flag=N&&"
    )
    bad_crc = (
        good_frame[:-6] + (b"0000" if not good_frame.endswith(b"0000\r\n") else b"1111") + b"\r\n"
    )
    bad_length = b"##0999" + good_frame[6:]
    bad = [
        (noise_topic, b"\xff\xfe garbage"),
        (noise_topic, b"{not json"),
        (noise_topic, b'{"la": "loud", "ts": 1}'),
        (noise_topic, b'{"la": NaN, "ts": 1}'),
        (noise_topic, b'{"la": 500, "ts": 1}'),
        (noise_topic, b"{" + b" " * 600 + b"}"),
        (f"{tag}/nobody", b"52"),
        (fume_topic, bad_crc),
        (fume_topic, bad_length),
        (soil_topic, b"wet"),
    ]
    good = [(noise_topic, noise_payload(50 + i % 10, 1_700_000_000_000 + i)) for i in range(300)]
    good += [(fume_topic, good_frame)] * 20 + [(soil_topic, b"253")] * 20
    messages = good[:100] + bad + good[100:]
    # The session exists before anything is published, as on a device whose gateway ran before.
    subscribe_session(mosquitto.host, mosquitto.port, config.client_id, [f"{tag}/#"])
    with GatewayThread(config):
        publish_all(mosquitto.host, mosquitto.port, messages)
        assert wait_for(
            lambda: (
                _total(db) == len(good)
                and len(query(db, "SELECT id FROM dead_letters")) == len(bad)
            )
        )
    reasons = [r for (r,) in query(db, "SELECT reason FROM dead_letters ORDER BY id")]
    for expected in (
        "not UTF-8",
        "invalid JSON",
        "LA: str is not a number",
        "LA: value nan is not finite",
        "outside the physical range",
        "exceeds the 512-byte limit",
        "no sensor is configured for this topic",
        "CRC mismatch",
        "length field says 999",
        "'wet' is not a number",
    ):
        assert sum(expected in r for r in reasons) == 1, (expected, reasons)
    assert query(
        db, "SELECT count, min_value, max_value FROM minute_aggregates WHERE sensor_id = 'soil-01'"
    )[0] == (
        20,
        25.3,
        25.3,
    )
    assert query(db, "SELECT sum(count) FROM minute_aggregates WHERE sensor_id = 'fume-01'") == [
        (20,)
    ]


def test_readings_published_while_the_gateway_is_down_arrive_after_restart(mosquitto, tmp_path):
    tag = _unique()
    db = tmp_path / "g.db"
    config = gateway_config(
        db,
        port=mosquitto.port,
        gateway_id=f"gw-{tag}",
        sensors=[sensor("n", f"{tag}/n")],
        ingest=ARCHIVE,
    )
    probe = (f"{tag}/n", noise_payload(55, -60_000))

    def probe_stored():
        publish_all(mosquitto.host, mosquitto.port, [probe])
        return _total(db) >= 1

    with GatewayThread(config):
        # The first run creates the persistent session; a stored probe proves it subscribed.
        assert wait_for(probe_stored, 20, 0.3)
    probes = _total(db)
    publish_all(
        mosquitto.host,
        mosquitto.port,
        [(f"{tag}/n", noise_payload(55, i * 60_000)) for i in range(200)],
    )
    with GatewayThread(config):
        assert wait_for(lambda: _total(db) == 200 + probes)
    rows = query(db, "SELECT count(*), max(count) FROM minute_aggregates WHERE minute >= 0")
    assert rows == [(200, 1)]


def _waiting_readings(mosquitto, tmp_path, count):
    """A gateway config whose persistent session holds ``count`` readings, one per minute."""
    tag = _unique()
    topic = f"{tag}/n"
    db = tmp_path / "g.db"
    config = gateway_config(
        db,
        port=mosquitto.port,
        gateway_id=f"gw-{tag}",
        sensors=[sensor("n", topic)],
        ingest=ARCHIVE,
    )
    subscribe_session(mosquitto.host, mosquitto.port, config.client_id, [topic])
    readings = [(topic, noise_payload(55, i * 60_000)) for i in range(count)]
    publish_all(mosquitto.host, mosquitto.port, readings)
    return config, db


def test_messages_are_acknowledged_only_after_commit(mosquitto, tmp_path):
    """A gateway whose commits never finish acknowledges nothing; the next one gets it all."""
    config, db = _waiting_readings(mosquitto, tmp_path, 50)

    received = []

    async def stuck_gateway():
        never = asyncio.Event()

        async def commit_forever(batch):
            received.append(batch.messages)
            await never.wait()  # the disk hangs: nothing is committed

        ingest = MqttIngest(config, BatchBuilder(config), commit_forever)
        stop = asyncio.Event()
        task = asyncio.create_task(ingest.run(stop))
        deadline = asyncio.get_running_loop().time() + 10
        while sum(received) < 50 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        # Crash: drop the connection without any flush.
        task.cancel()
        ingest.client.disconnect()
        await asyncio.to_thread(ingest.client.loop_stop)

    asyncio.run(stuck_gateway())
    assert sum(received) == 50
    with GatewayThread(config):
        assert wait_for(lambda: _total(db) == 50)
    assert query(db, "SELECT count(*), max(count) FROM minute_aggregates") == [(50, 1)]


def test_a_failing_store_keeps_the_batch_and_retries(mosquitto, tmp_path):
    """A commit that fails (disk full, I/O error) loses nothing and acknowledges nothing early."""
    config, db = _waiting_readings(mosquitto, tmp_path, 100)
    failures = []

    async def main():
        async with await Store.open(db) as store:

            async def flaky_commit(batch):
                if len(failures) < 3:
                    failures.append(batch.messages)
                    raise OSError(28, "No space left on device")
                return await store.commit(batch)

            ingest = MqttIngest(config, BatchBuilder(config), flaky_commit)
            stop = asyncio.Event()
            task = asyncio.create_task(ingest.run(stop))
            deadline = asyncio.get_running_loop().time() + 20
            while asyncio.get_running_loop().time() < deadline:
                rows = query(db, "SELECT coalesce(sum(count), 0) FROM minute_aggregates")
                if rows and rows[0][0] >= 100:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task

    asyncio.run(main())
    assert len(failures) == 3
    assert query(db, "SELECT count(*), max(count) FROM minute_aggregates") == [(100, 1)]
    # Everything was acknowledged after the retry: a new session start delivers nothing more.
    with GatewayThread(config):
        time.sleep(1.0)
    assert query(db, "SELECT count(*), max(count) FROM minute_aggregates") == [(100, 1)]


def test_a_missing_model_disables_video_not_the_gateway(mosquitto, tmp_path):
    from vision.synthetic import demo_config

    config, db = _waiting_readings(mosquitto, tmp_path, 20)
    vision = demo_config(tmp_path / "missing.onnx", tmp_path / "missing.avi")
    config = config.model_copy(update={"vision": vision})
    with GatewayThread(config):
        assert wait_for(lambda: _total(db) == 20)
        assert wait_for(
            lambda: query(db, "SELECT count(*) FROM events WHERE kind = 'vision_fault'") == [(1,)]
        )
    (detail,) = query(
        db, "SELECT json_extract(detail, '$.error') FROM events WHERE kind = 'vision_fault'"
    )[0]
    assert "missing.onnx" in detail


def test_a_technicians_maintenance_request_reaches_the_running_gateway(mosquitto, tmp_path):
    """The CLI files the request; the gateway applies it, commits the event, forgets the file."""
    from sensors.modes import ModeRequest, file_request, filed_requests

    tag = _unique()
    db = tmp_path / "g.db"
    config = gateway_config(db, port=mosquitto.port, sensors=[sensor("noise-01", f"{tag}/n")])
    with GatewayThread(config):
        file_request(db, ModeRequest.make("noise-01", "maintenance", "tech.wang", "windscreen"))
        assert wait_for(
            lambda: (
                query(db, "SELECT status FROM events WHERE kind = 'maintenance'") == [("open",)]
            ),
            10,
        )
        assert wait_for(lambda: filed_requests(db) == [], 5)
        now_ms = int(time.time() * 1000)
        publish_all("127.0.0.1", mosquitto.port, [(f"{tag}/n", noise_payload(50.0, now_ms))])
        # Readings during maintenance carry the M flag, whatever the device said.
        assert wait_for(lambda: query(db, "SELECT flag FROM minute_aggregates") == [("M",)], 10)
    (detail,) = query(db, "SELECT detail FROM events WHERE kind = 'maintenance'")[0]
    assert '"who": "tech.wang"' in detail
