"""Errors of the sensor side. All derive from :class:`SensorsError`.

SensorsError                    (edge.errors.OffsiteEdgeError)
├── DecodeError                 a payload cannot be decoded; it becomes a dead letter
├── ProfileError                a standard profile, or a sensor's reference to it, is
│                               inconsistent (also a SetupError: refused at start-up)
└── BrokerSettingsError         the broker connection cannot be set up from the config,
                                e.g. a missing secret (also a SetupError)
"""

from __future__ import annotations

from edge.errors import OffsiteEdgeError, SetupError


class SensorsError(OffsiteEdgeError):
    """Root of every sensor-side error."""


class DecodeError(SensorsError, ValueError):
    """The payload cannot be decoded; the message says why (kept in the dead letter)."""


class ProfileError(SensorsError, SetupError, ValueError):
    """A profile file or a sensor's reference to it is inconsistent."""


class BrokerSettingsError(SensorsError, SetupError):
    """The broker connection cannot be set up from the config (e.g. a missing secret)."""
