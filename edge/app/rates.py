"""The data rates' plans from the gateway config (``cloud_sync.daily_rates``), and for status."""

from __future__ import annotations

from cloud_sync.daily_rates import RatePlan, RatesSetup
from edge.app.config import GatewayConfig


def rate_plans(config: GatewayConfig) -> list[RatePlan]:
    """Per sensor: its quantities, expected interval and the local time zone of its days.

    The zone is the sensor's standard's (``standard.timezone``); a sensor judged by no
    standard counts its days in the zone of the first sensor that has one (else Shanghai).
    """
    zones = [s.standard.timezone for s in config.sensors if s.standard is not None]
    default = zones[0] if zones else "Asia/Shanghai"
    return [
        RatePlan(
            sensor_id=s.id,
            quantities=tuple(q.name for q in s.quantities),
            expected_interval_s=s.health.expected_interval_s,
            timezone=default if s.standard is None else s.standard.timezone,
        )
        for s in config.sensors
    ]


def rates_setup(config: GatewayConfig) -> RatesSetup:
    """The outbox's rates duty for this config."""
    return RatesSetup(plans=rate_plans(config), require_synced=config.clock.hold_until_synced)
