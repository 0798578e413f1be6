"""Errors of cloud sync. All derive from :class:`CloudSyncError`.

CloudSyncError         (edge.errors.OffsiteEdgeError)
├── IdentityError      the key file is unreadable or too permissive (also a SetupError)
├── SecretError        an environment variable the config names is unset (also a SetupError)
├── UplinkError        an uplink could not deliver (connection, timeout, refusal)
│   └── UplinkRejectedError the far end answered but refused the data (HTTP 4xx, bad 9014)
└── CommandError       a downlink command is malformed or cannot be applied
    └── CommandRefusedError a command envelope is refused (unsigned, bad signature, replay…)
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.errors import OffsiteEdgeError, SetupError


class CloudSyncError(OffsiteEdgeError):
    """Root of every cloud-sync error."""


class IdentityError(CloudSyncError, SetupError):
    """The gateway's key file cannot be used."""


class SecretError(CloudSyncError, SetupError):
    """An environment variable named by the config (``*_env``) is unset or empty."""


class UplinkError(CloudSyncError):
    """An uplink failed to deliver; the records stay pending and are retried.

    ``acked`` lists the seqs that were acknowledged before the failure.
    """

    def __init__(self, message: str, *, acked: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.acked = list(acked)


class UplinkRejectedError(UplinkError):
    """The far end answered but refused the records."""


class CommandError(CloudSyncError):
    """A downlink command is malformed or cannot be applied."""


class CommandRefusedError(CommandError):
    """A command envelope is refused before anything runs; ``reason`` is a short code.

    Codes: too_large, too_deep, malformed, unsigned, unknown_key, bad_signature,
    wrong_gateway, expired, not_yet_valid, invalid_command, replayed, stale.
    """

    def __init__(self, reason: str, message: str, *, command_id: str | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.command_id = command_id
        """The command's id when its signature verified (else unknown: None)."""
