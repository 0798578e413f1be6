"""The console side of a config edit: check it in a thread, save it, audit it, reload."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from edge.app.console.config_save import EditRefusedError, Proposal, propose, save, sha256_text
from edge.app.console.state import ConsoleState, audit, log, state_of
from edge.events import Severity

RELOAD_AFTER_S = 0.3
"""The reload waits this long, so the page that saved gets its answer first."""
AUDIT_DIFF_LINES = 60

NO_FILE = (
    "This gateway runs without a config file (not `offsite-edge run`): changes cannot be "
    "saved from the console; edit its config instead."
)


def can_save(state: ConsoleState) -> bool:
    """Whether the gateway runs from a config file the console may change."""
    return state.parts.control is not None


async def review(state: ConsoleState, edit: Callable[[Any], None]) -> Proposal:
    """The edit checked against the file in force (raises EditRefusedError, with every reason)."""
    control = state.parts.control
    if control is None:
        raise EditRefusedError([NO_FILE])
    return await asyncio.to_thread(propose, control.config_path, edit)


async def commit(
    request: web.Request,
    proposal: Proposal,
    base_sha256: str,
    reviewed_sha256: str,
    *,
    kind: str,
    user: str,
    **detail: Any,
) -> None:
    """Write a reviewed edit, record it in the signed chain as ``kind``, then reload.

    Raises EditRefusedError when the file or the change differs from what was reviewed
    (``base_sha256``, ``reviewed_sha256``: see :func:`~.config_save.save`). The reload is the
    supervisor's: it checks the written file again, as after a SIGHUP, and records the
    ``config_changed`` event with both digests.
    """
    state = state_of(request)
    control = state.parts.control
    assert control is not None  # review() refused without one
    await asyncio.to_thread(save, proposal, base_sha256, reviewed_sha256)
    await audit(
        request,
        kind,
        user,
        severity=Severity.WARNING,
        file=str(proposal.path),
        old_sha256=proposal.base_sha256,
        new_sha256=sha256_text(proposal.text),
        diff=proposal.diff[:AUDIT_DIFF_LINES],
        **detail,
    )
    log.info("config saved by console file=%s who=%s kind=%s", proposal.path, user, kind)
    asyncio.get_running_loop().call_later(RELOAD_AFTER_S, control.restart.set)
