"""Config builders shared by tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from edge.app.config import GatewayConfig
from edge.events import Event, EventStatus, Severity

VALID_USCC = "91350100M000100Y43"


def sensor(sensor_id: str, topic: str, **overrides: Any) -> dict[str, Any]:
    """A JSON noise sensor reporting LA at data.la with a ms timestamp."""
    base: dict[str, Any] = {
        "id": sensor_id,
        "kind": "noise",
        "topic": topic,
        "decoder": {
            "type": "json",
            "fields": {"LA": "la"},
            "timestamp": "ts",
            "timestamp_format": "epoch_ms",
        },
        "quantities": [{"name": "LA", "unit": "dB(A)", "range": [20, 140]}],
    }
    base.update(overrides)
    return base


def gateway_dict(
    db: Path,
    *,
    port: int = 1883,
    sensors: list[dict[str, Any]] | None = None,
    gateway_id: str = "gw-test",
    **sections: Any,
) -> dict[str, Any]:
    """A complete gateway config as a dict (what the YAML would hold)."""
    data: dict[str, Any] = {
        "gateway": {"id": gateway_id},
        "site": {"name": "测试餐厅", "credit_code": VALID_USCC},
        "broker": {"host": "127.0.0.1", "port": port},
        "store": {"path": str(db), "commit_interval_ms": 50},
        "sensors": sensors if sensors is not None else [sensor("noise-01", "t/noise/01")],
    }
    data.update(sections)
    return data


def gateway_config(db: Path, **kwargs: Any) -> GatewayConfig:
    """A validated :class:`GatewayConfig` built with :func:`gateway_dict`."""
    return GatewayConfig.model_validate(gateway_dict(db, **kwargs))


def alarm_event(
    status: EventStatus = EventStatus.OPEN,
    event_id: str | None = None,
    severity: Severity = Severity.ALARM,
) -> Event:
    """An exceedance event on ``noise-01``; pass ``event_id`` to continue an open one."""
    kwargs = {"event_id": event_id} if event_id else {}
    return Event(
        kind="exceedance",
        source="noise-01",
        severity=severity,
        status=status,
        started_at=1.0,
        detail={"limit": 55},
        **kwargs,
    )


CLI = Path(sys.executable).with_name("offsite-edge")
"""The installed ``offsite-edge`` console script of the interpreter running the tests."""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``offsite-edge`` as a real process and collect its output."""
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
