"""Prometheus /metrics and /healthz of a real gateway, fed through a real mosquitto broker.

The gateway runs in-process on its own event loop (as in tests/e2e); /metrics is parsed
with prometheus_client's own parser, so what a Prometheus server reads is what is checked.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from gateway_thread import GatewayThread
from helpers import alarm_event, gateway_config, sensor
from hypothesis import given
from hypothesis import strategies as st
from mosquitto import free_port
from mqtt_tools import noise_payload, publish_all, wait_for
from prometheus_client.parser import text_string_to_metric_families

from cloud_sync.sync import make_outbox
from edge.app.config import MetricsConfig
from edge.app.health import DEAD_LETTER_REASONS, CommitWatch, Heartbeat, reason_class, verdict
from edge.app.metrics import GatewayCollector, GatewayProbe
from edge.batch import Batch
from edge.store import Store
from sensors.batch_builder import BatchBuilder


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""  # not listening yet


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = _get(port, "/metrics")
    return _samples(text) if status == 200 else {}


def _health(port: int) -> tuple[int, list[str]]:
    status, body = _get(port, "/healthz")
    return status, (json.loads(body)["reasons"] if body.startswith("{") else [])


def test_metrics_and_health_of_a_running_gateway(mosquitto_factory, tmp_path):
    broker = mosquitto_factory()
    tag = uuid.uuid4().hex[:10]
    topic = f"{tag}/noise"
    port = free_port()
    config = gateway_config(
        tmp_path / "g.db",
        port=broker.port,
        gateway_id=f"gw-{tag}",
        sensors=[sensor("noise-01", topic)],
        broker={"host": "127.0.0.1", "port": broker.port, "reconnect_max_s": 1},
        ingest={"catch_all": [f"{tag}/#"]},
        metrics={"port": port, "loop_stale_s": 2},
    )
    now_ms = int(time.time() * 1000)
    good = [(topic, noise_payload(50 + i % 10, now_ms + i)) for i in range(25)]
    bad = [(topic, b"{not json"), (f"{tag}/nobody", b"52"), (topic, noise_payload(500, now_ms))]
    with GatewayThread(config) as gateway:
        assert wait_for(lambda: _health(port)[0] == 200, 30), _health(port)

        publish_all(broker.host, broker.port, good + bad)
        classes = ("malformed", "unrouted", "out_of_range")
        reasons = {r: ("offsite_edge_dead_letters_total", (("reason", r),)) for r in classes}

        def counted() -> bool:
            got = _scrape(port)
            # 25 good values and the out-of-range one: decoded, then parked
            return got.get(("offsite_edge_readings_total", ())) == 26 and all(
                got.get(key) == 1 for key in reasons.values()
            )

        assert wait_for(counted, 30), _scrape(port)
        got = _scrape(port)
        assert got[("offsite_edge_messages_dead_lettered_total", ())] == 3
        assert got[("offsite_edge_dead_letters_total", (("reason", "too_large"),))] == 0
        assert got[("offsite_edge_commit_seconds_count", ())] >= 1
        assert got[("offsite_edge_commit_failures_total", ())] == 0
        assert got[("offsite_edge_broker_connected", ())] == 1
        assert got[("offsite_edge_healthy", ())] == 1
        assert got[("process_resident_memory_bytes", ())] > 0
        assert ("offsite_edge_clock_synchronised", ()) in got

        broker.stop()
        assert wait_for(lambda: _health(port)[0] == 503, 30)
        status, why = _health(port)
        assert status == 503
        assert any("broker session is down" in r for r in why), why
        assert _scrape(port)[("offsite_edge_broker_connected", ())] == 0

        broker.start()
        assert wait_for(lambda: _health(port)[0] == 200, 30), _health(port)

        # A blocked event loop cannot answer for itself: the server's thread says so.
        gateway.loop.call_soon_threadsafe(time.sleep, 8)
        assert wait_for(lambda: any("event loop unresponsive" in r for r in _health(port)[1]), 8), (
            _health(port)
        )
        assert wait_for(lambda: _health(port)[0] == 200, 30), _health(port)
    assert _get(port, "/healthz")[0] == 0, "the server must stop with the gateway"


def test_backlog_oldest_age_and_open_events_read_from_the_database(tmp_path):
    db = tmp_path / "g.db"
    config = gateway_config(
        db,
        cloud={
            "uplinks": [
                {
                    "type": "mqtt",
                    "name": "up1",
                    "host": "127.0.0.1",
                    "port": free_port(),
                    "tls": {"enabled": False},
                }
            ]
        },
        metrics={"port": free_port()},
    )
    assert config.cloud is not None
    before = time.time()

    async def main():
        async with await Store.open(db, hook=make_outbox("gw-test", config.cloud, db)) as store:
            await store.emit(alarm_event())
            probe = GatewayProbe(
                config=config,
                store=store,
                builder=BatchBuilder(config),
                commits=CommitWatch(store.commit),
                broker_connected=asyncio.Event(),
                heartbeat=Heartbeat(),
            )
            # Scraped from another thread, as the metrics server does.
            return await asyncio.to_thread(lambda: list(GatewayCollector(probe).collect()))

    families = asyncio.run(main())
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    alarm = (("data_class", "alarm"), ("uplink", "up1"))
    assert got[("offsite_edge_outbox_backlog", alarm)] == 1
    assert got[("offsite_edge_outbox_backlog", (("data_class", "minute"), ("uplink", "up1")))] == 0
    age = got[("offsite_edge_outbox_oldest_undelivered_age_seconds", alarm)]
    assert 0 < age <= time.time() - before + 1
    assert got[("offsite_edge_open_events", (("kind", "exceedance"),))] == 1
    assert got[("offsite_edge_broker_connected", ())] == 0
    assert got[("offsite_edge_healthy", ())] == 0


def _builder_reasons(tmp_path: Path) -> dict[str, str]:
    """The reason texts the real batch builder writes, by the class they must fall in."""
    config = gateway_config(
        tmp_path / "g.db",
        sensors=[sensor("noise-01", "t/noise")],
        ingest={"max_payload_bytes": 64},
    )
    builder = BatchBuilder(config)
    now = time.time()
    cases = {
        "unrouted": ("t/other", b"52"),
        "too_large": ("t/noise", b"{" + b" " * 100 + b"}"),
        "malformed": ("t/noise", b"{not json"),
        "device_time": ("t/noise", noise_payload(50, 1000)),
        "out_of_range": ("t/noise", noise_payload(500, int(now * 1000))),
    }
    out = {}
    for expected, (topic, payload) in cases.items():
        builder.accept(topic, payload, now)
        out[expected] = builder.cut().dead_letters[0].reason
    out["internal"] = builder.internal_error("t/noise", b"", RuntimeError("bug"), now)
    return out


def test_reason_classes_follow_the_builders_wording(tmp_path):
    for expected, reason in _builder_reasons(tmp_path).items():
        assert reason_class(reason) == expected, reason


@given(st.text(max_size=300))
def test_any_reason_falls_in_the_bounded_label_set(reason):
    assert reason_class(reason) in DEAD_LETTER_REASONS


def test_commit_watch_reports_a_failing_commit_until_one_succeeds():
    asyncio.run(_commit_watch_case())


async def _commit_watch_case():
    fail = True

    async def commit(batch: Batch) -> list[int]:
        if fail:
            raise OSError("disk I/O error")
        return []

    watch = CommitWatch(commit)
    with pytest.raises(OSError, match="disk I/O"):
        await watch(Batch())
    why = verdict(
        broker_connected=True, commits=watch, store_lost=None, loop_age_s=0.5, loop_stale_s=10
    )
    assert watch.failing
    assert len(why) == 1
    assert "disk I/O error" in why[0]
    fail = False  # the commit closure reads it
    await watch(Batch())
    assert not watch.failing
    assert watch.successes == 1
    assert sum(watch.buckets) == 1
    assert (
        verdict(
            broker_connected=True, commits=watch, store_lost=None, loop_age_s=0.5, loop_stale_s=10
        )
        == []
    )
    stale = verdict(
        broker_connected=False, commits=watch, store_lost=None, loop_age_s=11, loop_stale_s=10
    )
    assert len(stale) == 2
    assert "broker" in stale[0]
    assert "event loop" in stale[1]


def test_readme_metrics_snippet_is_a_valid_section():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    sections = [b["metrics"] for b in blocks if isinstance(b, dict) and "metrics" in b]
    assert sections, "the README shows a metrics: section"
    for section in sections:
        MetricsConfig.model_validate(section)


def test_camera_metrics_of_a_real_vision_service(tmp_path):
    from vision.service import VisionService
    from vision.synthetic import demo_config, write_demo_assets

    model, clip = write_demo_assets(tmp_path)
    vision = demo_config(model, clip)
    config = gateway_config(tmp_path / "g.db", metrics={"port": free_port()})

    async def main():
        async with (
            await Store.open(config.store.path) as store,
            VisionService(vision, store, data_dir=tmp_path) as service,
        ):
            await service.wait_finished()
            probe = GatewayProbe(
                config=config,
                store=store,
                builder=BatchBuilder(config),
                commits=CommitWatch(store.commit),
                broker_connected=asyncio.Event(),
                heartbeat=Heartbeat(),
                cameras=service.stats,
            )
            families = await asyncio.to_thread(lambda: list(GatewayCollector(probe).collect()))
            return families, service.stats()["kitchen-1"]

    families, stats = asyncio.run(main())
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    camera = (("camera", "kitchen-1"),)
    assert stats.inferences > 0
    assert got[("offsite_edge_camera_inference_seconds_count", camera)] == stats.inferences
    assert got[("offsite_edge_camera_inference_seconds_sum", camera)] > 0
    assert got[("offsite_edge_camera_frames_decoded_total", camera)] == stats.decoded > 0
    assert got[("offsite_edge_camera_frames_sampled_total", camera)] == stats.sampled
    assert ("offsite_edge_camera_online", camera) in got
