"""Regulator accounts, sessions and the failed-login throttle.

Accounts live in the receiver's database (``reg_users``): a name, a role (``read-only``
sees everything; ``handling`` may also take handling steps) and an Argon2id hash (a
memory-hard KDF). :func:`add_user` issues a one-time password, printed once by the CLI;
the regulator must choose their own at the first login. Sessions live in the database
too (``reg_sessions``, by the SHA-256 of the cookie's token, so a copy of the database
does not hand out live sessions) and so survive a receiver restart; each carries a CSRF
token that every POST form must echo.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections import deque
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cloud_sync.errors import CloudSyncError
from cloud_sync.regulator_console.schema import ensure_schema
from edge.errors import SetupError
from edge.web import MAX_PASSWORD, password_problem

ROLES = ("read-only", "handling")
NAME_PATTERN = r"[a-z][a-z0-9._-]{1,31}"
COOKIE = "offsite_regulator"

# RFC 9106's second recommended option (64 MiB, 3 passes).
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=2)


class AccountError(CloudSyncError, SetupError):
    """An account cannot be created or changed (the message says why)."""


@functools.cache
def _dummy_hash() -> str:
    """Checked for an unknown name, so a wrong name costs as long as a wrong password."""
    return _HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class Account:
    """A regulator as stored."""

    name: str
    role: str
    must_change: bool


def add_user(db_path: Path | str, name: str, role: str, *, reset: bool = False) -> str:
    """Create a regulator account (or, with ``reset``, re-issue its password and role).

    Returns the one-time password (show it once). Raises :class:`AccountError` for an
    invalid name or role, an existing account without ``reset`` or a missing one with it.
    Safe while the receiver runs (its own short transaction on the WAL database).
    """
    if not re.fullmatch(NAME_PATTERN, name):
        raise AccountError(
            f"account name {name!r} must be 2-32 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter"
        )
    if role not in ROLES:
        raise AccountError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    one_time = secrets.token_urlsafe(12)
    hashed = _HASHER.hash(one_time)
    with closing(sqlite3.connect(str(db_path), isolation_level=None, timeout=10)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        ensure_schema(conn)
        exists = conn.execute("SELECT 1 FROM reg_users WHERE name = ?", (name,)).fetchone()
        if exists and not reset:
            raise AccountError(f"regulator account {name!r} exists; use --reset for a new password")
        if reset and not exists:
            raise AccountError(f"no regulator account {name!r} to reset")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO reg_users (name, role, password_hash, must_change, created_at)"
            " VALUES (?, ?, ?, 1, ?) ON CONFLICT (name) DO UPDATE SET role = excluded.role,"
            " password_hash = excluded.password_hash, must_change = 1, changed_at = ?",
            (name, role, hashed, time.time(), time.time()),
        )
        # A reset ends the account's sessions: whoever held the old password is out.
        conn.execute("DELETE FROM reg_sessions WHERE user = ?", (name,))
        conn.execute("COMMIT")
    return one_time


def stored(conn: sqlite3.Connection, name: str) -> tuple[Account, str] | None:
    """The account named ``name`` and its password hash."""
    row = conn.execute(
        "SELECT role, password_hash, must_change FROM reg_users WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else (Account(name, str(row[0]), bool(row[2])), str(row[1]))


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches the hash (blocking: Argon2 is slow, run it in a thread).

    ``None`` (an unknown name) is checked against a dummy hash: it costs as long as a
    wrong password, so timing tells nobody which names exist.
    """
    if len(password) > MAX_PASSWORD:
        return False
    try:
        matched = _HASHER.verify(password_hash or _dummy_hash(), password)
        return matched and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_password_hash(password: str) -> str:
    """Hash a regulator's own new password (blocking); AccountError when not acceptable."""
    problem = password_problem(password)
    if problem is not None:
        raise AccountError(problem)
    return _HASHER.hash(password)


def store_password(conn: sqlite3.Connection, name: str, password_hash: str) -> None:
    """Keep a new password hash; the account no longer needs a change."""
    conn.execute(
        "UPDATE reg_users SET password_hash = ?, must_change = 0, changed_at = ? WHERE name = ?",
        (password_hash, time.time(), name),
    )


def account(conn: sqlite3.Connection, name: str) -> Account | None:
    """The account named ``name``."""
    row = conn.execute("SELECT role, must_change FROM reg_users WHERE name = ?", (name,)).fetchone()
    return None if row is None else Account(name, str(row[0]), bool(row[1]))


# -- sessions -----------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Session:
    """One browser's session: anonymous (``user`` None) until a login succeeds."""

    token: str
    csrf: str
    user: str | None = None
    notice: str | None = None

    def csrf_ok(self, token: str | None) -> bool:
        """Whether a form's CSRF token is this session's (constant-time)."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Sessions in ``reg_sessions``; idle ones expire, anonymous ones are bounded."""

    MAX_ANONYMOUS = 1000

    def __init__(self, conn: sqlite3.Connection, idle_s: float) -> None:
        self.conn = conn
        self.idle_s = idle_s

    def new(self, user: str | None = None) -> Session:
        """A fresh session (a login always gets a new token: no fixation)."""
        now = time.time()
        self.conn.execute("DELETE FROM reg_sessions WHERE last_used < ?", (now - self.idle_s,))
        self.conn.execute(
            "DELETE FROM reg_sessions WHERE user IS NULL AND token_sha256 IN (SELECT token_sha256"
            " FROM reg_sessions WHERE user IS NULL ORDER BY last_used DESC LIMIT -1 OFFSET ?)",
            (self.MAX_ANONYMOUS - 1,),
        )
        session = Session(
            token=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), user=user
        )
        self.conn.execute(
            "INSERT INTO reg_sessions (token_sha256, user, csrf, last_used) VALUES (?, ?, ?, ?)",
            (_key(session.token), user, session.csrf, now),
        )
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie token (its use is recorded at most once a minute)."""
        if not token or len(token) > 100:
            return None
        key = _key(token)
        row = self.conn.execute(
            "SELECT user, csrf, last_used, notice FROM reg_sessions WHERE token_sha256 = ?", (key,)
        ).fetchone()
        now = time.time()
        if row is None or now - row[2] > self.idle_s:
            return None
        if now - row[2] > 60 or row[3] is not None:
            self.conn.execute(
                "UPDATE reg_sessions SET last_used = ?, notice = NULL WHERE token_sha256 = ?",
                (now, key),
            )
        return Session(token=token, csrf=str(row[1]), user=row[0], notice=row[3])

    def note(self, session: Session, notice: str) -> None:
        """A message for the next page this session sees (after a redirect)."""
        self.conn.execute(
            "UPDATE reg_sessions SET notice = ? WHERE token_sha256 = ?",
            (notice[:300], _key(session.token)),
        )

    def drop(self, token: str) -> None:
        """End a session (logout, or replaced at login)."""
        self.conn.execute("DELETE FROM reg_sessions WHERE token_sha256 = ?", (_key(token),))

    def drop_user(self, user: str, *, keep: str) -> None:
        """End every other session of ``user`` (after a password change)."""
        self.conn.execute(
            "DELETE FROM reg_sessions WHERE user = ? AND token_sha256 != ?", (user, _key(keep))
        )


class Throttle:
    """Failed logins per account name within a window; more are refused until it passes."""

    MAX_TRACKED = 10_000

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def wait_s(self, name: str) -> float:
        """Seconds until ``name`` may try again (0: now)."""
        times = self._recent(name)
        return times[0] + self.window_s - time.monotonic() if len(times) >= self.limit else 0.0

    def failed(self, name: str) -> None:
        """Count a failure."""
        if len(self._failures) >= self.MAX_TRACKED:
            self._failures.clear()  # a flood of names: forget rather than grow
        self._recent(name).append(time.monotonic())

    def succeeded(self, name: str) -> None:
        """A correct password clears the account's failures."""
        self._failures.pop(name, None)

    def _recent(self, name: str) -> deque[float]:
        times = self._failures.setdefault(name, deque())
        while times and times[0] <= time.monotonic() - self.window_s:
            times.popleft()
        return times
