"""Files that survive a power cut: written whole or not at all.

A gateway's SD card loses power without warning; a half-written file must never stand
under its final name. :func:`write_once` writes a content-addressed file (its name is
its hash, so an existing file already holds the same bytes) through a temp file in the
same folder, fsyncs it, renames it into place and fsyncs the folder so the rename
itself is on disk.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename or a new file in it) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_once(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless ``path`` exists; True when written.

    For content-addressed files: an existing file already holds these bytes, so it is
    left alone. Creates the parent folder; a failed write leaves no temp file behind.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return True
