"""The one root of every offsite-edge error, and the mark of the ones a user must fix.

OffsiteEdgeError                 root: every package's errors derive from it
└── SetupError                   the gateway cannot be set up as configured: a bad config
    │                            file, a missing secret, an unreadable key, broker settings.
    │                            The CLI prints these as plain lines and exits with code 2.
    └── …                        (each package's own setup errors)

Each package documents its own subtree where its errors are defined (``cloud_sync.errors``,
``sensors.errors``, ``vision.errors``; ``edge.app.config_file.ConfigError``).
"""

from __future__ import annotations


class OffsiteEdgeError(Exception):
    """Root of every error raised by offsite-edge code."""


class SetupError(OffsiteEdgeError):
    """Something the user must fix before the gateway can run (printed without traceback)."""
