"""Sessions, CSRF tokens and the failed-login throttle of the console (in memory).

A session is a random token in an HttpOnly, SameSite=Strict cookie; the server keeps
who it belongs to and its CSRF token. Every POST form carries that token, the login
form included (a visitor gets an anonymous session first), so another site can neither
log a technician in as someone else nor act in their name. Sessions end when unused
for ``console.session_idle_s`` and when the gateway restarts.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

COOKIE = "offsite_console"
MAX_SESSIONS = 500
"""Anonymous sessions are created per visit: bound them so a client loop cannot fill memory."""
MAX_TRACKED = 10_000


@dataclass(slots=True, kw_only=True)
class Session:
    """One browser's session: anonymous (``user`` None) until a login succeeds."""

    token: str
    csrf: str
    user: str | None = None
    must_change: bool = False
    last_used: float = field(default_factory=time.monotonic)
    notice: str | None = None
    """A message for the next page shown (after a redirect)."""

    def csrf_ok(self, token: str | None) -> bool:
        """Whether a form's CSRF token is this session's (constant-time)."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Sessions:
    """The live sessions, by cookie token."""

    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s
        self._by_token: dict[str, Session] = {}

    def new(self, user: str | None = None, *, must_change: bool = False) -> Session:
        """A fresh session with new token and CSRF token (a login gets a new one: no fixation)."""
        self._expire()
        if len(self._by_token) >= MAX_SESSIONS:
            # Drop the least recently used, anonymous ones first.
            victims = sorted(
                self._by_token.values(), key=lambda s: (s.user is not None, s.last_used)
            )
            for victim in victims[: len(self._by_token) - MAX_SESSIONS + 1]:
                del self._by_token[victim.token]
        session = Session(
            token=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            user=user,
            must_change=must_change,
        )
        self._by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The session of a cookie, if it exists and has not been idle too long."""
        if not token:
            return None
        session = self._by_token.get(token)
        now = time.monotonic()
        if session is None:
            return None
        if now - session.last_used > self._idle_s:
            del self._by_token[token]
            return None
        session.last_used = now
        return session

    def alive(self, token: str) -> bool:
        """Whether a session still exists and is not idle, without counting as a use."""
        session = self._by_token.get(token)
        return session is not None and time.monotonic() - session.last_used <= self._idle_s

    def drop(self, token: str) -> None:
        """End a session (logout, or replaced by a logged-in one)."""
        self._by_token.pop(token, None)

    def drop_user(self, user: str, *, keep: str | None = None) -> None:
        """End every session of ``user`` but ``keep`` (after a password change)."""
        for token in [t for t, s in self._by_token.items() if s.user == user and t != keep]:
            del self._by_token[token]

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, s in self._by_token.items() if now - s.last_used > self._idle_s]:
            del self._by_token[token]


ADDRESS_FACTOR = 4
"""A client address may fail this many times an account's limit (it may be several people)."""


class LoginThrottle:
    """Refuses logins after too many failures per account and per client address.

    An account is locked after ``limit`` failures within ``window_s``, whoever tries; an
    address after :data:`ADDRESS_FACTOR` times that, whichever accounts it tries.
    """

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _limit_of(self, key: str) -> int:
        return self._limit * (ADDRESS_FACTOR if key.startswith("addr:") else 1)

    @staticmethod
    def keys(name: str, address: str) -> tuple[str, str]:
        """What a login attempt counts against: the account and the client address."""
        return f"user:{name}", f"addr:{address}"

    def wait_s(self, keys: tuple[str, ...], now: float | None = None) -> float:
        """Seconds until a login may be tried again for these keys (0: now)."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self._limit_of(key):
                wait = max(wait, times[0] + self._window_s - now)
        return wait

    def failed(self, keys: tuple[str, ...], now: float | None = None) -> bool:
        """Count a failure; return True when it is the one that starts a lockout."""
        now = time.monotonic() if now is None else now
        if len(self._failures) >= MAX_TRACKED:
            for key in [k for k in self._failures if not self._recent(k, now)]:
                del self._failures[key]
        locked = False
        for key in keys:
            times = self._failures.setdefault(key, deque())
            self._recent(key, now)
            times.append(now)
            locked |= len(times) == self._limit_of(key)
        return locked

    def succeeded(self, name: str) -> None:
        """A correct password clears the account's failures (not the address's)."""
        self._failures.pop(f"user:{name}", None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self._window_s:
            times.popleft()
        return times


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_allowed(remote: str | None, networks: Sequence[Network]) -> bool:
    """Whether a client address lies in one of the allowed networks (None: no)."""
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
