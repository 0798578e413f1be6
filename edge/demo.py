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
import socket
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edge.config import GatewayConfig
from edge.config_file import parse_config
from edge.gateway import run_gateway
from edge.status import read_status, recent_events
from sensors.simulate import Scenario, Simulator, publish_forever

log = logging.getLogger(__name__)

DEMO_CONFIG = "gateway.example.yaml"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_config(port: int, data_dir: Path) -> GatewayConfig:
    """The packaged example config, pointed at the embedded broker and a demo database."""
    text = (resources.files("offsite_configs") / DEMO_CONFIG).read_text(encoding="utf-8")
    config = parse_config(text, file=DEMO_CONFIG)
    return config.model_copy(
        update={
            "broker": config.broker.model_copy(update={"port": port}),
            "store": config.store.model_copy(update={"path": data_dir / "demo.db"}),
        }
    )


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


async def _display(config: GatewayConfig, stop: asyncio.Event, every_s: float = 2.0) -> None:
    seen_seq = 0
    known: set[str] = set()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        try:
            status = await asyncio.to_thread(read_status, config)
            events = await asyncio.to_thread(recent_events, config.store.path, after_seq=seen_seq)
        except (FileNotFoundError, OSError) as exc:
            print(f"(waiting for the store: {exc})")
            continue
        for event in events:
            seen_seq = max(seen_seq, int(event["seq"]))
            if event["status"] in {"closed", "instant"}:
                change = event["status"].upper()
            else:
                change = "update" if event["event_id"] in known else "OPEN"
            known.add(event["event_id"])
            print(_format_event(event, change))
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
    print("injecting: fume-01 exceedance after 20 s, water-01 stuck, soil-01 silent after 30 s,")
    print("           2 % malformed payloads.  Ctrl-C to stop.")
    scenario = Scenario(
        exceed={"fume-01"},
        exceed_after=20.0,
        stuck={"water-01"},
        silent={"soil-01"},
        silent_after=30.0,
        malformed_fraction=0.02,
    )
    simulator = Simulator(config=config, scenario=scenario, seed=7)
    async with embedded_broker(port):
        gateway_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            gateway = tasks.create_task(run_gateway(config, gateway_stop), name="demo.gateway")
            publisher = tasks.create_task(
                publish_forever(simulator, host="127.0.0.1", port=port, interval_s=1.0),
                name="demo.simulator",
            )
            display = tasks.create_task(_display(config, gateway_stop), name="demo.display")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
            publisher.cancel()
            gateway_stop.set()
            await gateway
            await display
    print(f"demo stopped; its database stays at {config.store.path}")
    print(f"inspect it with: offsite-edge status --config {config_file}")
    return config
