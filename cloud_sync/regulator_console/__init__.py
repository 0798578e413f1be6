"""The regulator console served by the reference receiver (alerts, handling trail, risk list).

A :class:`~cloud_sync.receiver_extension.ReceiverExtension` (:class:`RegulatorConsole`)
that mounts server-rendered pages under ``/regulator/`` on the receiver's aiohttp app:
alerts across gateways derived incrementally from the stored records (:mod:`.alerts`),
each with its evidence, chart and the chain verdict of its gateway; the append-only
handling trail (:mod:`.trail`); webhook pushes of immediate alarms (:mod:`.push`); the
risk list (:mod:`.risk`); regulator accounts with roles (:mod:`.accounts`). See
docs/regulator-console.md.
"""

from __future__ import annotations

from cloud_sync.regulator_console.accounts import ROLES, AccountError, add_user
from cloud_sync.regulator_console.config import RegulatorConsoleConfig, WebhookConfig
from cloud_sync.regulator_console.server import RegulatorConsole

__all__ = [
    "ROLES",
    "AccountError",
    "RegulatorConsole",
    "RegulatorConsoleConfig",
    "WebhookConfig",
    "add_user",
]
