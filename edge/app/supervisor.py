"""Run the gateway from its config file; reload it safely.

SIGHUP validates the file first (:func:`~edge.app.preflight.prepare`, what ``config
check`` runs): a refused file is logged in one line and the running gateway is not
touched at all, its MQTT sessions included; only a file that passes restarts it. A remote
config change (:attr:`~edge.app.remote_config.Control.restart`) that does not load is
rolled back at once (see ``edge.app.remote_config``). One gateway per database: the
supervisor holds the database's lock (``edge.app.lock``) for as long as it runs.

A session that has run well keeps its config as the last good one, and a boot with a
refused file starts on that (``edge.app.last_good``).

Every session starts by recording what it runs on (``edge.app.audit``): a config or model
file that differs from the previous session's is an audit event with both SHA-256s,
whether it changed while the gateway was stopped (``trigger: start``) or before a SIGHUP
(``trigger: reload``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edge.app.config import GatewayConfig
from edge.app.gateway import run_gateway
from edge.app.last_good import (
    LAST_GOOD_AFTER_S,
    last_good_path,
    one_line,
    record_refused,
    save_last_good,
)
from edge.app.lock import GatewayLock
from edge.app.preflight import UsableConfig, prepare
from edge.app.remote_config import Control, read_pending, roll_back
from edge.clock import clock_synchronised
from edge.errors import SetupError
from edge.waits import wait_any

log = logging.getLogger(__name__)

Chosen = list[tuple[UsableConfig, GatewayLock | None]]
"""The config (and the lock of its database, when it moved) a SIGHUP chose."""


async def supervise(
    config_path: Path,
    config: GatewayConfig,
    stop: asyncio.Event,
    reload: asyncio.Event,
    *,
    text: str | None = None,
    refused: SetupError | None = None,
    last_good_after_s: float = LAST_GOOD_AFTER_S,
) -> None:
    """Run the gateway until ``stop``; restart it on a valid ``reload`` or a remote config.

    ``text`` is the config file's text as validated (kept as the last good config once the
    session has run well); ``refused`` is set when the file was refused at boot and
    ``config`` is the last good one (recorded as an audit event). Raises
    :class:`~edge.app.lock.AlreadyRunningError` when another gateway uses the database.
    """
    lock = GatewayLock.acquire(config.store.path)
    try:
        if clock_synchronised() is False:
            # Every record carries clock_synced=false then; say so where someone looks.
            log.warning(
                "clock not synchronised reason=the kernel reports no NTP sync; record times "
                "may be wrong (check timedatectl)%s",
                "; readings are held back from judgement until it syncs"
                if config.clock.hold_until_synced
                else "",
            )
        if refused is not None:
            await record_refused(config, config_path, refused)
        trigger = "start"
        while not stop.is_set():
            control = Control(config_path=config_path)
            session_stop = asyncio.Event()
            chosen: Chosen = []

            async with asyncio.TaskGroup() as tasks:
                relay_task = tasks.create_task(
                    _relay(
                        config_path,
                        running=config,
                        stop=stop,
                        reload=reload,
                        control=control,
                        session_stop=session_stop,
                        chosen=chosen,
                    ),
                    name="offsite-edge.supervisor.relay",
                )
                good_task = tasks.create_task(
                    _keep_good(config_path, text, session_stop, last_good_after_s),
                    name="offsite-edge.supervisor.good",
                )
                await run_gateway(
                    config, session_stop, control=control, trigger=trigger, config_text=text
                )
                relay_task.cancel()
                good_task.cancel()
            if stop.is_set():
                for _, unused in chosen:
                    if unused is not None:
                        unused.release()
                return
            reload.clear()
            trigger = "reload"
            if not chosen:
                # A remote config was installed (or rolled back): the file changed under us.
                new = await asyncio.to_thread(_next_config, config_path, config)
                if new is None:
                    if read_pending(config_path) is not None and await asyncio.to_thread(
                        roll_back, config_path
                    ):
                        log.warning("config rolled back file=%s reason=invalid", config_path)
                    continue
                chosen.append(new)
            usable, new_lock = chosen[0]
            config, text = usable.config, usable.text
            if new_lock is not None:
                lock.release()
                lock = new_lock
            log.info("config loaded file=%s", config_path)
    finally:
        lock.release()


async def _relay(
    config_path: Path,
    *,
    running: GatewayConfig,
    stop: asyncio.Event,
    reload: asyncio.Event,
    control: Control,
    session_stop: asyncio.Event,
    chosen: Chosen,
) -> None:
    """Stop the session on ``stop``, a remote restart, or a SIGHUP with a file that passes."""
    # SIGHUP: validate while the gateway runs; stop it only for a file that passes.
    while True:
        await wait_any(stop, reload, control.restart)
        if stop.is_set() or control.restart.is_set():
            break
        reload.clear()
        new = await asyncio.to_thread(_next_config, config_path, running)
        if new is not None:
            chosen.append(new)
            break
    session_stop.set()


async def _keep_good(
    config_path: Path, text: str | None, session_stop: asyncio.Event, after_s: float
) -> None:
    """Keep the session's config as the last good one once it has run ``after_s``."""
    await wait_any(session_stop, at_most=after_s)
    # A remote change is good once confirmed, not before.
    while text is not None and not session_stop.is_set():
        if read_pending(config_path) is None:
            await asyncio.to_thread(save_last_good, config_path, text)
            log.info("config kept as last good file=%s", last_good_path(config_path))
            return
        await wait_any(session_stop, at_most=1.0)


def _next_config(
    config_path: Path, running: GatewayConfig
) -> tuple[UsableConfig, GatewayLock | None] | None:
    """The file's config if it passes (with the lock of a new database), else None (logged)."""
    try:
        usable = prepare(config_path)
        new_lock = None
        if usable.config.store.path != running.store.path:
            new_lock = GatewayLock.acquire(usable.config.store.path)
    except SetupError as exc:
        log.error(
            "config refused file=%s reason=%s; the gateway keeps running on the config in force",
            config_path,
            one_line(exc),
        )
        return None
    return usable, new_lock
