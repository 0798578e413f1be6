"""kill -9 of a real gateway process while a real broker delivers: nothing acknowledged is lost.

Every reading carries its own device minute, so each becomes its own aggregate row: a
missing row is a lost reading and a count above 1 a duplicate.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml
from helpers import gateway_dict, sensor
from mqtt_tools import noise_payload, publish_all, query, subscribe_session, wait_for

READINGS = 4000


def _start(config_path, log):
    return subprocess.Popen(
        [sys.executable, "-m", "edge.app.cli", "run", "--config", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("trial", range(5))
def test_kill_9_loses_nothing_acknowledged(mosquitto, tmp_path, trial):
    rng = random.Random(trial)
    tag = f"kill{trial}-{os.getpid()}-{time.time_ns() % 10**6}"
    topic = f"{tag}/noise"
    db = tmp_path / "g.db"
    data = gateway_dict(
        db, port=mosquitto.port, gateway_id=tag, sensors=[sensor("noise-01", topic)]
    )
    data["ingest"] = {"max_lateness_s": 3_000_000_000}  # readings stamped from 1970 on
    data["store"].update(
        commit_interval_ms=rng.choice([20, 50, 200]), commit_max_readings=rng.choice([50, 500])
    )
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    client_id = f"offsite-edge-{tag}"
    subscribe_session(mosquitto.host, mosquitto.port, client_id, [topic])

    messages = [(topic, noise_payload(40 + i % 50, i * 60_000)) for i in range(READINGS)]
    publisher = threading.Thread(
        target=publish_all, args=(mosquitto.host, mosquitto.port, messages)
    )
    log = (tmp_path / "gateway.log").open("wb")
    gateway = _start(config_path, log)
    publisher.start()
    # Kill somewhere in the middle of the stream, once something has been committed.
    assert wait_for(
        lambda: query(db, "SELECT count(*) FROM minute_aggregates")[0:1] not in ([], [(0,)]),
        30,
        0.005,
    )
    time.sleep(rng.uniform(0.0, 0.3))
    gateway.send_signal(signal.SIGKILL)
    gateway.wait(10)
    committed_at_kill = query(db, "SELECT count(*) FROM minute_aggregates")[0][0]
    publisher.join(60)
    assert not publisher.is_alive()

    gateway = _start(config_path, log)
    try:
        assert wait_for(
            lambda: query(db, "SELECT count(*) FROM minute_aggregates")[0][0] == READINGS, 60
        ), (tmp_path / "gateway.log").read_text()[-3000:]
    finally:
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(30) == 0, "gateway did not stop cleanly on SIGTERM"
        log.close()
    rows = query(db, "SELECT minute, count FROM minute_aggregates")
    assert {minute for minute, _ in rows} == {i * 60 for i in range(READINGS)}, "a reading was lost"
    duplicates = sum(count - 1 for _, count in rows)
    # At-least-once: only readings committed before the kill (but not yet acknowledged) repeat.
    assert 0 < committed_at_kill <= READINGS
    assert duplicates <= committed_at_kill
    assert "gateway stopped" in (tmp_path / "gateway.log").read_text()
