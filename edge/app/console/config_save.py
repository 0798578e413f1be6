"""Changing the gateway's config file from the console: checked, shown as a diff, saved.

Every edit (a commissioned sensor, a camera's zones) goes the way a technician's edit by
hand goes: the new text is checked exactly as ``offsite-edge config check`` checks a file
(:func:`edge.app.preflight.prepare_text`), a refused edit is shown with each problem's
file, line, field and reason and never written, and an accepted one is first shown as a
diff, then written atomically (the previous file kept as ``.bak``) and the gateway reloads
it the way a SIGHUP does: the supervisor checks the file again and restarts on it. The
edit names the file's SHA-256 it was made against, so two technicians cannot overwrite
each other's change unseen.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge.app.config_file import read_text
from edge.app.preflight import UsableConfig, prepare_text
from edge.app.remote_config import read_pending, write_atomically
from edge.errors import OffsiteEdgeError, SetupError

MAX_DIFF_LINES = 400


class EditRefusedError(OffsiteEdgeError):
    """An edit that cannot be saved; ``problems`` holds one line per reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """An edit checked against the file as it is now, ready to be shown and saved."""

    path: Path
    base_sha256: str
    """SHA-256 of the file the edit was made against."""
    text: str
    """The new file's text."""
    diff: list[str]
    usable: UsableConfig

    @property
    def changed(self) -> bool:
        """Whether the edit changes anything."""
        return bool(self.diff)


def sha256_text(text: str) -> str:
    """The SHA-256 of a config text (as the gateway's config digest is taken)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Dumper(yaml.SafeDumper):
    """Block style, but a list of plain values on one line: ``range: [0, 14]``, a point
    ``[40, 30]`` (a polygon stays one point a line, and a diff one change a line)."""

    def represent_sequence(self, tag: str, sequence: Any, flow_style: bool | None = None) -> Any:
        flat = all(isinstance(item, int | float | str | bool) for item in sequence)
        return super().represent_sequence(tag, sequence, flow_style=bool(sequence) and flat)


def dump(data: Any) -> str:
    """YAML as the console writes it (comments of the old file are not kept)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def propose(path: Path, edit: Callable[[Any], None]) -> Proposal:
    """Apply ``edit`` to the file's data and check the result as ``config check`` does.

    ``edit`` changes the parsed YAML in place and raises :class:`EditRefusedError` for an edit
    that makes no sense. Raises :class:`EditRefusedError` with every problem of the new config
    (``file:line: field: reason``). Blocking: run it in a thread.
    """
    try:
        old = read_text(path)
    except SetupError as exc:
        raise EditRefusedError(str(exc).splitlines()) from None
    data: Any = yaml.safe_load(old)
    if not isinstance(data, dict):
        raise EditRefusedError([f"{path}: the file in force is not a YAML mapping"])
    before = dump(data)
    edit(data)
    text = dump(data)
    try:
        usable = prepare_text(path, text)
    except SetupError as exc:
        raise EditRefusedError(str(exc).splitlines()) from None
    # The diff compares the old data as the console writes it, so it shows what changes,
    # not how the file was laid out.
    diff = list(
        difflib.unified_diff(
            before.splitlines(),
            text.splitlines(),
            fromfile=f"{path.name} (in force)",
            tofile=f"{path.name} (new)",
            lineterm="",
        )
    )[:MAX_DIFF_LINES]
    return Proposal(path=path, base_sha256=sha256_text(old), text=text, diff=diff, usable=usable)


def save(proposal: Proposal, base_sha256: str, reviewed_sha256: str | None = None) -> None:
    """Write a proposal the technician has seen (blocking; keeps the old file as ``.bak``).

    Raises :class:`EditRefusedError` when the file changed since the technician saw the diff
    (``base_sha256``), the change is not the one reviewed (``reviewed_sha256``, the new
    text's SHA-256 when the diff was shown), or a remote config change awaits confirmation.
    """
    path = proposal.path
    if reviewed_sha256 is not None and sha256_text(proposal.text) != reviewed_sha256:
        raise EditRefusedError(
            ["the change is not the one reviewed (the form changed): review it again"]
        )
    if read_pending(path) is not None:
        raise EditRefusedError(
            ["a remote config change is waiting for confirmation: save after it is confirmed"]
        )
    if proposal.base_sha256 != base_sha256:
        raise EditRefusedError(
            ["the config file changed since this change was shown: review the new diff"]
        )
    write_atomically(path, proposal.text)
