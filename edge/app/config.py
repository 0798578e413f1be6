"""The gateway's whole configuration: each package's section, composed into one YAML file.

Every model forbids unknown keys (see ``edge.config.StrictModel``). The sections belong to
the packages that use them: ``broker``, ``ingest`` and ``sensors`` to ``sensors.config``,
``vision`` to ``vision.config``, ``cloud`` to ``cloud_sync.config``, ``store`` to the edge
floor. Only the gateway's identity and the monitored site are defined here.
"""

from __future__ import annotations

import re
from typing import Self

from pydantic import Field, field_validator, model_validator

from cloud_sync.config import CloudConfig
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


class GatewayConfig(StrictModel):
    """The whole gateway, as described by one YAML file."""

    gateway: GatewayIdentity = Field(description="Gateway identity.")
    site: SiteConfig = Field(description="The monitored enterprise this gateway reports for.")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="Local MQTT broker.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Local SQLite store.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Message screening.")
    vision: VisionConfig | None = Field(
        default=None,
        description="Kitchen cameras and violation detection (明厨亮灶); none: no video.",
    )
    sensors: list[SensorConfig] = Field(default_factory=list, description="Installed sensors.")
    cloud: CloudConfig | None = Field(
        default=None, description="Store-and-forward to the supervision cloud (none: local only)."
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
