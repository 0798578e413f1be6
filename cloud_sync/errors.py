"""Errors of cloud sync. All derive from :class:`CloudSyncError`.

CloudSyncError         (edge.errors.OffsiteEdgeError)
├── IdentityError      the key file is unreadable or too permissive (also a SetupError)
├── UplinkError        an uplink could not deliver (connection, timeout, refusal)
│   └── UplinkRejectedError the far end answered but refused the data (HTTP 4xx, bad 9014)
└── CommandError       a downlink command is malformed or cannot be applied
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.errors import OffsiteEdgeError, SetupError


class CloudSyncError(OffsiteEdgeError):
    """Root of every cloud-sync error."""


class IdentityError(CloudSyncError, SetupError):
    """The gateway's key file cannot be used."""


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
