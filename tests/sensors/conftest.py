"""Fixtures for the standards-rules tests: the shipped profiles and small builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.events import Severity
from sensors.rules import Limit, Timing
from sensors.standards import Profile, load_profiles

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "standards"


@pytest.fixture(scope="session")
def profiles() -> dict[str, Profile]:
    """The profiles shipped in configs/standards (read from the checkout)."""
    return load_profiles(CONFIGS)


def upper_limit(value: float = 60.0, deadband: float = 3.0) -> Limit:
    """An upper-bound limit with an absolute deadband, for lifecycle tests."""
    return Limit(
        quantity="LAeq",
        unit="dB(A)",
        lower=None,
        upper=value,
        clear_lower=None,
        clear_upper=value - deadband,
        severity=Severity.ALARM,
        profile="test",
        standard="TEST",
        clause="test clause",
    )


NO_DELAY = Timing(min_duration_s=0.0, clear_duration_s=0.0, update_every_s=1e9)
