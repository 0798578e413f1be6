"""The last config that ran well, and starting on it when the file on disk is refused.

After a session has run for a while on a config (and no remote change awaits its
confirmation), its text is kept beside the file as ``<config>.last-good``, owner-only
(it may name hosts and paths a site keeps private). A boot with a file that does not pass
:func:`~edge.app.preflight.prepare` (a half-finished edit, a typo before a power cut)
starts on that copy instead of staying down, logs the file's problem in one line and
records a ``config_refused`` audit event; the file itself is left as it is for the
technician to fix, and a SIGHUP loads it once it is right.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cloud_sync.sync import make_outbox
from edge.app.config import GatewayConfig
from edge.app.logs import EventLog
from edge.app.preflight import prepare
from edge.errors import SetupError
from edge.events import Event, EventStatus, Severity
from edge.store import Store

log = logging.getLogger(__name__)

LAST_GOOD_AFTER_S = 10.0
"""A session that has run this long has 'run well' on its config."""


def last_good_path(config_path: Path) -> Path:
    """Where the last config that ran well is kept."""
    return config_path.with_name(config_path.name + ".last-good")


def save_last_good(config_path: Path, text: str) -> None:
    """Keep ``text`` as the last good config of ``config_path`` (owner-only, atomically)."""
    target = last_good_path(config_path)
    tmp = target.with_name(target.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when an older tmp was left with other modes
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)


def one_line(exc: BaseException) -> str:
    """An error's message on one line (a ConfigError lists one problem per line)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


@dataclass(frozen=True, slots=True, kw_only=True)
class Boot:
    """The config a gateway starts on."""

    config: GatewayConfig
    text: str
    refused: SetupError | None = None
    """Why the file itself was refused, when the gateway starts on the last good config."""


def boot(config_path: Path) -> Boot:
    """The file's config, or the last good one when the file is refused.

    Raises the file's own error when there is no usable last good config either.
    """
    try:
        usable = prepare(config_path)
    except SetupError as exc:
        fallback = last_good_path(config_path)
        if not fallback.exists():
            raise
        try:
            usable = prepare(fallback)
        except SetupError:
            raise exc from None
        log.error(
            "config refused file=%s reason=%s; starting on the last good config file=%s",
            config_path,
            one_line(exc),
            fallback,
        )
        return Boot(config=usable.config, text=usable.text, refused=exc)
    return Boot(config=usable.config, text=usable.text)


async def record_refused(config: GatewayConfig, config_path: Path, exc: SetupError) -> None:
    """Commit the ``config_refused`` audit event of a boot on the last good config."""
    event = Event(
        kind="config_refused",
        source="gateway",
        severity=Severity.WARNING,
        status=EventStatus.INSTANT,
        started_at=time.time(),
        detail={
            "trigger": "start",
            "file": str(config_path),
            "reason": one_line(exc),
            "running": str(last_good_path(config_path)),
        },
    )
    outbox = make_outbox(config.gateway.id, config.cloud, config.store.path)
    async with await Store.open(config.store.path, hook=EventLog(outbox)) as store:
        await store.emit(event)
