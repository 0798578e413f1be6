"""Prometheus /metrics and /healthz, served beside the gateway (off unless configured).

Nothing here is on the ingest's path: a custom collector reads, at scrape time, the
counters the gateway already keeps (the batch builder's totals, the commit watch of
``edge.app.health``, the cameras' stats) and asks the database read-only for what only it
knows (the outbox backlog per uplink and class, the open events by kind).

The server is prometheus_client's WSGI app behind the standard library's threading WSGI
server, in its own thread rather than on the event loop: a stuck loop is exactly what
/healthz must be able to report, so it cannot be the loop that answers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from cloud_sync.outbox_view import backlog, oldest_pending
from cloud_sync.policy import PRIORITY
from edge.app.config import GatewayConfig
from edge.app.health import (
    COMMIT_BUCKETS_S,
    DEAD_LETTER_REASONS,
    CommitWatch,
    Heartbeat,
    heartbeat,
    verdict,
)
from edge.clock import clock_synchronised
from edge.readonly import connect_read_only, open_event_counts
from edge.store import Store
from sensors.batch_builder import BatchBuilder

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from vision.camera_state import CameraStats

log = logging.getLogger(__name__)

PREFIX = "offsite_edge"


@dataclass(kw_only=True)
class GatewayProbe:
    """The running gateway's parts that the metrics and /healthz read."""

    config: GatewayConfig
    store: Store
    builder: BatchBuilder
    commits: CommitWatch
    broker_connected: asyncio.Event
    heartbeat: Heartbeat
    cameras: Callable[[], Mapping[str, CameraStats]] | None = None
    """Set by the vision task once its cameras run (``VisionService.stats``)."""

    def reasons(self) -> list[str]:
        """Why the gateway is unhealthy (empty: healthy); see :func:`edge.app.health.verdict`."""
        assert self.config.metrics is not None
        return verdict(
            broker_connected=self.broker_connected.is_set(),
            commits=self.commits,
            store_lost=self.store.lost,
            loop_age_s=self.heartbeat.age(),
            loop_stale_s=self.config.metrics.loop_stale_s,
        )


def probe_for(
    config: GatewayConfig,
    store: Store,
    builder: BatchBuilder,
    commits: CommitWatch,
    broker_connected: asyncio.Event,
) -> GatewayProbe | None:
    """The probe of a gateway whose config has a ``metrics`` section (None: it has none)."""
    if config.metrics is None:
        return None
    return GatewayProbe(
        config=config,
        store=store,
        builder=builder,
        commits=commits,
        broker_connected=broker_connected,
        heartbeat=Heartbeat(),
    )


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class GatewayCollector(Collector):
    """Reads the gateway's state when Prometheus scrapes (see the module's docstring)."""

    def __init__(self, probe: GatewayProbe) -> None:
        self.probe = probe

    def collect(self) -> Iterable[Metric]:
        """Every gateway metric, read now."""
        yield from self._ingest()
        yield from self._health()
        yield from self._database()
        yield from self._cameras()

    def _ingest(self) -> Iterator[Metric]:
        probe, commits = self.probe, self.probe.commits
        yield _counter(
            "readings",
            "Sensor values decoded from messages (out-of-range ones, then parked, included).",
            probe.builder.reading_total,
        )
        yield _counter(
            "messages_dead_lettered",
            "Messages parked as dead letters when received (committed or not yet).",
            probe.builder.dead_letter_total,
        )
        dead = CounterMetricFamily(
            f"{PREFIX}_dead_letters",
            "Committed dead letters by reason class.",
            labels=["reason"],
        )
        for reason in DEAD_LETTER_REASONS:
            dead.add_metric([reason], commits.dead_letters[reason])
        yield dead
        cumulative, buckets = 0, []
        for bound, count in zip((*COMMIT_BUCKETS_S, float("inf")), commits.buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            f"{PREFIX}_commit_seconds",
            "Duration of the ingest's successful commits (queue wait, write, fsync).",
            buckets=buckets,
            sum_value=commits.seconds_total,
        )
        yield _counter("commit_failures", "Ingest commits that failed.", commits.failures)
        if commits.last_success_at is not None:
            yield _gauge(
                "last_commit_timestamp_seconds",
                "Unix time of the ingest's last successful commit.",
                commits.last_success_at,
            )

    def _health(self) -> Iterator[Metric]:
        probe = self.probe
        yield _gauge(
            "broker_connected",
            "1 while the MQTT session with the sensor broker is up.",
            int(probe.broker_connected.is_set()),
        )
        yield _gauge(
            "event_loop_heartbeat_age_seconds",
            "Seconds since the event loop's last heartbeat (one a second when responsive).",
            probe.heartbeat.age(),
        )
        yield _gauge("healthy", "1 when /healthz answers 200.", int(not probe.reasons()))
        synced = clock_synchronised()
        if synced is not None:
            yield _gauge(
                "clock_synchronised", "1 when the kernel says the clock is NTP-synced.", int(synced)
            )

    def _database(self) -> Iterator[Metric]:
        config = self.probe.config
        try:
            with closing(connect_read_only(config.store.path)) as db:
                pending = backlog(db)
                oldest = oldest_pending(db)
                open_kinds = open_event_counts(db)
        except (sqlite3.Error, FileNotFoundError) as exc:
            log.warning("metrics: database not readable db=%s reason=%s", config.store.path, exc)
            return
        now = time.time()
        uplinks = [u.name for u in config.cloud.uplinks] if config.cloud else []
        count = GaugeMetricFamily(
            f"{PREFIX}_outbox_backlog",
            "Records not yet acknowledged, per uplink and data class.",
            labels=["uplink", "data_class"],
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_undelivered_age_seconds",
            "Age of the oldest record not yet acknowledged (0: none), per uplink and data class.",
            labels=["uplink", "data_class"],
        )
        for uplink in sorted({*uplinks, *pending}):
            for data_class in sorted({*PRIORITY, *pending.get(uplink, {})}):
                count.add_metric([uplink, data_class], pending.get(uplink, {}).get(data_class, 0))
                created = oldest.get(uplink, {}).get(data_class)
                age.add_metric([uplink, data_class], 0.0 if created is None else now - created)
        yield count
        yield age
        events = GaugeMetricFamily(
            f"{PREFIX}_open_events", "Events open now, by kind.", labels=["kind"]
        )
        for kind, number in sorted(open_kinds.items()):
            events.add_metric([kind], number)
        yield events

    def _cameras(self) -> Iterator[Metric]:
        read = self.probe.cameras
        if read is None:
            return
        families = {
            "decoded": CounterMetricFamily(
                f"{PREFIX}_camera_frames_decoded", "Frames decoded.", labels=["camera"]
            ),
            "sampled": CounterMetricFamily(
                f"{PREFIX}_camera_frames_sampled",
                "Frames offered to inference (after sampling and the motion gate).",
                labels=["camera"],
            ),
            "dropped": CounterMetricFamily(
                f"{PREFIX}_camera_frames_dropped",
                "Frames dropped because inference was busy.",
                labels=["camera"],
            ),
        }
        latency = SummaryMetricFamily(
            f"{PREFIX}_camera_inference_seconds",
            "Inferences and their time from handing a frame over to its detections.",
            labels=["camera"],
        )
        online = GaugeMetricFamily(
            f"{PREFIX}_camera_online", "1 while the camera delivers frames.", labels=["camera"]
        )
        for camera, stats in sorted(read().items()):
            for field, family in families.items():
                family.add_metric([camera], getattr(stats, field))
            latency.add_metric([camera], count_value=stats.inferences, sum_value=stats.inference_s)
            online.add_metric([camera], int(stats.online))
        yield from families.values()
        yield latency
        yield online


def _health_response(probe: GatewayProbe, start_response: StartResponse) -> list[bytes]:
    reasons = probe.reasons()
    body = json.dumps({"healthy": not reasons, "reasons": reasons}, ensure_ascii=False)
    status = "200 OK" if not reasons else "503 Service Unavailable"
    start_response(status, [("Content-Type", "application/json; charset=utf-8")])
    return [body.encode("utf-8")]


def make_app(probe: GatewayProbe, registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: /healthz answers itself, /metrics is prometheus_client's, the rest 404."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _health_response(probe, start_response)
        if path == "/metrics":
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape (one every 15 s would drown the gateway's log)."""

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


def _server_class(host: str) -> type[ThreadingWSGIServer]:
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET

    class Server(ThreadingWSGIServer):
        address_family = family

    return Server


def registry_for(probe: GatewayProbe) -> CollectorRegistry:
    """A registry of the gateway's collector and the process's (memory, CPU, open files)."""
    registry = CollectorRegistry()
    registry.register(GatewayCollector(probe))
    ProcessCollector(registry=registry)
    return registry


async def serve_metrics(probe: GatewayProbe, stop: asyncio.Event) -> None:
    """Serve /metrics and /healthz until ``stop`` is set; beat the loop's heartbeat meanwhile.

    A port that cannot be bound is logged and costs the metrics only, not the gateway.
    """
    settings = probe.config.metrics
    assert settings is not None
    app = make_app(probe, registry_for(probe))
    try:
        server = make_server(
            settings.host,
            settings.port,
            app,
            server_class=_server_class(settings.host),
            handler_class=_QuietHandler,
        )
    except OSError as exc:
        log.error("metrics not served host=%s port=%d reason=%s", settings.host, settings.port, exc)
        await heartbeat(probe.heartbeat, stop)
        return
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="offsite-edge.metrics"
    )
    thread.start()
    log.info("metrics served url=http://%s:%d/metrics", settings.host, server.server_port)
    try:
        await heartbeat(probe.heartbeat, stop)
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        await asyncio.to_thread(thread.join)
