"""The gateway's whole configuration: each package's section, composed into one YAML file.

Every model forbids unknown keys (see ``edge.config.StrictModel``). The sections belong to
the packages that use them: ``broker``, ``ingest`` and ``sensors`` to ``sensors.config``,
``vision`` to ``vision.config``, ``cloud`` to ``cloud_sync.config``, ``store`` to the edge
floor. Only the gateway's identity and the monitored site are defined here.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from cloud_sync.config import CloudConfig
from edge.clock_watch import ClockConfig
from edge.config import ID_PATTERN, StoreConfig, StrictModel
from sensors.config import BrokerConfig, IngestConfig, SensorConfig
from vision.config import VisionConfig

# GB 32100-2015: unified social credit code alphabet (no I, O, Z, S, V) and check weights.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_char(first17: str) -> str:
    """Return the GB 32100-2015 check character for the first 17 characters of a code."""
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


class GatewayIdentity(StrictModel):
    """Who this gateway is."""

    id: str = Field(
        pattern=ID_PATTERN,
        description="Gateway id, unique within the supervision platform; also the MQTT client id "
        "prefix and the namespace of the gateway's sequence numbers.",
    )


class SiteConfig(StrictModel):
    """The monitored enterprise."""

    name: str = Field(min_length=1, max_length=200, description="Enterprise name as registered.")
    credit_code: str = Field(
        description="Unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters "
        "with a check character."
    )

    @field_validator("credit_code")
    @classmethod
    def _check_uscc(cls, value: str) -> str:
        code = value.strip().upper()
        if not re.fullmatch(rf"[{_USCC_ALPHABET}]{{18}}", code):
            raise ValueError("must be 18 characters of 0-9 and A-Y except I, O, S, V, Z")
        expected = uscc_check_char(code[:17])
        if code[17] != expected:
            raise ValueError(f"check character is {code[17]!r}, expected {expected!r}")
        return code


# Loopback, private (RFC 1918, RFC 4193) and link-local networks: the site's LAN.
LAN_NETWORKS = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
]


class ConsoleConfig(StrictModel):
    """The technician console: a small web UI on the site's LAN (``edge.app.console``)."""

    enabled: bool = Field(
        default=True, description="Serve the console (false: keep the section, serve nothing)."
    )
    host: str = Field(
        default="127.0.0.1",
        description="IP address to listen on: loopback, a LAN address of this machine, or "
        "0.0.0.0/:: for all (peers outside allowed_networks are still refused).",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="TCP port to listen on.")
    users_file: Path | None = Field(
        default=None,
        description="Technician accounts (owner-only JSON, written by `offsite-edge console "
        "add-user`); default: console-users.json beside the database.",
    )
    allowed_networks: list[str] = Field(
        default_factory=lambda: list(LAN_NETWORKS),
        min_length=1,
        description="Networks whose clients may connect (default: loopback, private and "
        "link-local ranges); any other client gets 403.",
    )
    session_idle_s: float = Field(
        default=1800.0, gt=0, le=86_400, description="A session ends after this long unused."
    )
    max_failed_logins: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Failed logins allowed per account and per client address within "
        "lockout_s; more are refused until the window passes.",
    )
    lockout_s: float = Field(
        default=300.0, gt=0, le=86_400, description="The window of max_failed_logins, in s."
    )

    @field_validator("host")
    @classmethod
    def _lan_host(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address (e.g. 127.0.0.1 or 192.168.1.20)") from None
        if not (address.is_unspecified or address.is_private or address.is_link_local):
            raise ValueError(f"{value} is a public address; the console is LAN-only")
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _lan_networks(cls, value: list[str]) -> list[str]:
        for text in value:
            network = ipaddress.ip_network(text, strict=False)
            if not (network.is_private or network.is_link_local):
                raise ValueError(f"{text} is not a LAN network; the console is LAN-only")
        return value


class MetricsConfig(StrictModel):
    """Prometheus metrics and a health endpoint (``edge.app.metrics``): /metrics, /healthz."""

    host: str = Field(
        default="127.0.0.1",
        description="IP address to listen on (default loopback: only this machine may scrape; "
        "a LAN address or 0.0.0.0 lets a Prometheus elsewhere scrape it).",
    )
    port: int = Field(default=9108, ge=1, le=65535, description="TCP port to listen on.")
    loop_stale_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="/healthz reports the event loop unresponsive when its heartbeat (one a "
        "second) is older than this.",
    )

    @field_validator("host")
    @classmethod
    def _ip_host(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address (e.g. 127.0.0.1 or 192.168.1.20)") from None
        return value


class GatewayConfig(StrictModel):
    """The whole gateway, as described by one YAML file."""

    gateway: GatewayIdentity = Field(description="Gateway identity.")
    site: SiteConfig = Field(description="The monitored enterprise this gateway reports for.")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="Local MQTT broker.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Local SQLite store.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Message screening.")
    clock: ClockConfig = Field(
        default_factory=ClockConfig, description="When the wall clock is trusted (trusted time)."
    )
    vision: VisionConfig | None = Field(
        default=None,
        description="Kitchen cameras and violation detection (明厨亮灶); none: no video.",
    )
    sensors: list[SensorConfig] = Field(default_factory=list, description="Installed sensors.")
    cloud: CloudConfig | None = Field(
        default=None, description="Store-and-forward to the supervision cloud (none: local only)."
    )
    console: ConsoleConfig | None = Field(
        default=None,
        description="Technician console on the site's LAN (none: no console).",
    )
    metrics: MetricsConfig | None = Field(
        default=None,
        description="Prometheus /metrics and /healthz over HTTP (none: not served).",
    )

    @model_validator(mode="after")
    def _unique_sensors(self) -> Self:
        ids = [s.id for s in self.sensors]
        dup_ids = sorted({i for i in ids if ids.count(i) > 1})
        if dup_ids:
            raise ValueError(f"sensor ids repeat: {dup_ids}")
        topics = [s.topic for s in self.sensors]
        dup_topics = sorted({t for t in topics if topics.count(t) > 1})
        if dup_topics:
            raise ValueError(f"several sensors share a topic: {dup_topics}")
        return self

    @property
    def client_id(self) -> str:
        """The MQTT client id for the persistent session."""
        return self.broker.client_id or f"offsite-edge-{self.gateway.id}"
