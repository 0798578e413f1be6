"""One gateway per database: an exclusive ``flock`` on ``<db>.lock`` holding the pid.

Two gateways on one config would take each other's MQTT session (same client id) every
second and write to one database. The lock is taken before the store opens and held for
the life of the process; the kernel releases it when the process ends, even after
``kill -9``, so a stale file never blocks a restart. ``status`` asks the same lock whether
a gateway runs, and which.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from edge.errors import SetupError


class AlreadyRunningError(SetupError):
    """Another gateway process holds the database's lock."""


class LockFileError(SetupError):
    """The lock file beside the database cannot be created (wrong path or permissions)."""


def lock_path(db: Path) -> Path:
    """The lock file of the database at ``db``."""
    return db.with_name(db.name + ".lock")


class GatewayLock:
    """The held lock of one database; :meth:`release` (or process exit) frees it."""

    def __init__(self, db: Path, fd: int) -> None:
        self.db = db
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, db: Path) -> GatewayLock:
        """Take the lock of ``db`` or raise :class:`AlreadyRunningError` naming the holder."""
        path = lock_path(db)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            # The first write beside the database: a wrong store.path or owner shows here.
            raise LockFileError(
                f"cannot create {path}: {exc.strerror or exc}; is store.path right and its "
                "folder writable by the gateway's user?"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder is not None else "pid unknown"
            raise AlreadyRunningError(
                f"a gateway is already running ({who}) on {db}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(db, fd)

    def release(self) -> None:
        """Free the lock (the file stays: removing it would race with the next holder)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> GatewayLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(db: Path) -> int | None:
    """The pid of the gateway running on ``db`` (0: its pid not written yet), else None.

    Asks the lock itself, so a pid left in the file by a killed gateway is not taken
    for a running one.
    """
    try:
        fd = os.open(lock_path(db), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
