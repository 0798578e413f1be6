"""`offsite-edge demo`: broker, simulator and gateway in one process, shown live.

The broker is amqtt, embedded in-process, so the demo needs no system service and no
root. The gateway is the real one (persistent session, acknowledgement after commit,
SQLite store); the simulator injects a cooking-fume exceedance, a stuck water probe, a
silent soil probe and some malformed payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cloud_sync.config import CloudConfig
from cloud_sync.outbox_view import recent_events
from cloud_sync.receiver import Receiver, ReceiverConfig
from edge.app.config import GatewayConfig
from edge.app.config_file import parse_config
from edge.app.gateway import run_gateway
from edge.app.status import read_status
from edge.waits import wait_any
from sensors.simulate import Scenario, Simulator, publish_forever

log = logging.getLogger(__name__)

DEMO_CONFIG = "gateway.example.yaml"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_config(port: int, data_dir: Path, *, with_vision: bool = True) -> GatewayConfig:
    """The packaged example config, pointed at the embedded broker and a demo database.

    It also gets a cloud uplink (MQTT to the same embedded broker, where the reference
    receiver listens) and, with ``with_vision``, one kitchen camera replaying a synthetic
    clip through a small hand-weighted ONNX detector.
    """
    text = (resources.files("offsite_configs") / DEMO_CONFIG).read_text(encoding="utf-8")
    config = parse_config(text, file=DEMO_CONFIG)
    cloud = CloudConfig.model_validate(
        {
            "uplinks": [
                {
                    "type": "mqtt",
                    "name": "cloud",
                    "host": "127.0.0.1",
                    "port": port,
                    "protocol": "3.1.1",  # amqtt speaks MQTT 3.1.1
                    "tls": {"enabled": False},  # the embedded broker is plain loopback
                }
            ]
        }
    )
    update: dict[str, Any] = {
        "broker": config.broker.model_copy(update={"port": port}),
        "store": config.store.model_copy(update={"path": data_dir / "demo.db"}),
        "cloud": cloud,
    }
    if with_vision:
        from vision.synthetic import demo_config as vision_demo_config
        from vision.synthetic import write_demo_assets

        model, clip = write_demo_assets(data_dir)
        update["vision"] = vision_demo_config(model, clip)
    return config.model_copy(update=update)


@contextlib.asynccontextmanager
async def embedded_broker(port: int) -> Any:
    """Run an amqtt broker on 127.0.0.1:``port`` for the duration of the context."""
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield broker
    finally:
        await broker.shutdown()


_SHOWN = (
    "quantity",
    "window_value",
    "value",
    "limit_max",
    "limit_min",
    "peak",
    "silent_s",
    "mode",
    "who",
    "violation",
    "median_score",
    "zone",
    "snapshot_path",
)


def _format_event(event: dict[str, Any], change: str) -> str:
    detail = event.get("detail", {})
    parts = []
    for key in _SHOWN:
        value = detail.get(key)
        if value is not None:
            parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    clause = detail.get("clause")
    if clause and change == "OPEN":
        parts.append(f"[{clause}]")
    return (
        f"EVENT #{event['seq']:<5} {event['severity'].upper():<7} {change:<6} "
        f"{event['kind']:<20} {event['source']:<10} {' '.join(parts)}"
    )


def _show_cloud_alarms(receiver: Receiver, after: int) -> int:
    for record in receiver.db.records(data_class="alarm", after=after):
        after = max(after, int(record["arrival"]))
        body = record["body"]
        print(
            f"CLOUD  ← alarm #{record['seq']:<5} {body.get('kind', body.get('type', '?')):<20} "
            f"{body.get('source', ''):<10} {body.get('status', '')} "
            f"(signed, {'resent' if record['resent'] else 'first delivery'})"
        )
    return after


async def _display(
    config: GatewayConfig, receiver: Receiver, stop: asyncio.Event, every_s: float = 2.0
) -> None:
    seen_seq = 0
    cloud_arrival = 0
    while not stop.is_set():
        await wait_any(stop, at_most=every_s)
        try:
            status = await asyncio.to_thread(read_status, config)
            events = await asyncio.to_thread(recent_events, config.store.path, after_seq=seen_seq)
        except (FileNotFoundError, OSError) as exc:
            print(f"(waiting for the store: {exc})")
            continue
        for event in events:
            seen_seq = max(seen_seq, int(event["seq"]))
            change = "update" if event["status"] == "update" else event["status"].upper()
            print(_format_event(event, change))
        cloud_arrival = _show_cloud_alarms(receiver, cloud_arrival)
        parts = []
        for s in status.sensors:
            values = " ".join(f"{q}={v[0]:.2f}" for q, v in s.last_values.items())
            age = "—" if s.last_seen is None else f"{time.time() - s.last_seen:.0f}s"
            parts.append(f"{s.sensor_id}[{age}] {values}")
        print(" | ".join(parts))
        print(
            f"  readings={sum(s.readings for s in status.sensors)} "
            f"dead_letters={status.dead_letters_total} open_events={len(status.open_events)} "
            f"db={status.database_bytes / 1024:.0f} KiB"
        )


def _gateway_public_key(config: GatewayConfig) -> str:
    """The demo gateway's public key (hex), creating its key file on first use."""
    from cloud_sync.chain import public_key_hex
    from cloud_sync.identity import load_or_create_key
    from cloud_sync.sync import key_path

    assert config.cloud is not None  # the demo config always has a cloud section
    path = key_path(config.cloud, config.store.path)
    key = load_or_create_key(path, db_path=config.store.path)
    return public_key_hex(key.public_key())


async def run_demo(
    stop: asyncio.Event, *, duration_s: float | None = None, data_dir: Path | None = None
) -> GatewayConfig:
    """Run the demo until ``stop`` is set or ``duration_s`` has passed."""
    workdir = data_dir or Path(tempfile.mkdtemp(prefix="offsite-edge-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = demo_config(port, workdir)
    config_file = workdir / "gateway.yaml"
    config_file.write_text(
        yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True), allow_unicode=True),
        encoding="utf-8",
    )
    print(f"offsite-edge demo: broker 127.0.0.1:{port}, database {config.store.path}")
    print("injecting: fume-01 exceedance after 15 s, water-01 stuck, soil-01 silent after 20 s,")
    print("           2 % malformed payloads; kitchen-1 replays a clip with a worker without a")
    print("           chef hat.  The reference cloud receiver shows alarms as it gets them.")
    print("Ctrl-C to stop.")
    scenario = Scenario(
        exceed={"fume-01"},
        exceed_after=15.0,
        stuck={"water-01"},
        silent={"soil-01"},
        silent_after=20.0,
        malformed_fraction=0.02,
    )
    simulator = Simulator(config=config, scenario=scenario, seed=7)
    receiver = Receiver(
        ReceiverConfig(
            db=workdir / "cloud.db",
            mqtt_host="127.0.0.1",
            mqtt_port=port,
            # Commissioning, as `offsite-edge cloud register` does it: the cloud knows the
            # gateway's key before its first record arrives.
            trust={config.gateway.id: _gateway_public_key(config)},
            token=secrets.token_urlsafe(24),
        )
    )
    async with embedded_broker(port):
        gateway_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            cloud = tasks.create_task(receiver.run(gateway_stop), name="demo.cloud")
            await receiver.ready.wait()
            gateway = tasks.create_task(run_gateway(config, gateway_stop), name="demo.gateway")
            publisher = tasks.create_task(
                publish_forever(simulator, host="127.0.0.1", port=port, interval_s=1.0),
                name="demo.simulator",
            )
            display = tasks.create_task(
                _display(config, receiver, gateway_stop), name="demo.display"
            )
            await wait_any(stop, at_most=duration_s)
            publisher.cancel()
            # Give the uplink a moment to deliver what the last commits queued.
            await asyncio.sleep(2.0)
            report = receiver.db.verify(config.gateway.id)
            received = receiver.db.records(gateway=config.gateway.id, limit=10**9)
            gaps = report.explained_gaps + report.unexplained_gaps
            print(
                f"cloud received {len(received)} records from {config.gateway.id} "
                f"(seq {report.first_seq}..{report.last_seq}); hash chain and signatures "
                f"{'verified' if report.ok else 'NOT verified'}; gaps {gaps or 'none'}"
            )
            gateway_stop.set()
            await gateway
            await display
            await cloud
    print(f"demo stopped; its database stays at {config.store.path}")
    print(f"inspect it with: offsite-edge status --config {config_file}")
    return config
