"""Technician accounts of the console: an owner-only JSON file of Argon2id password hashes.

``offsite-edge console add-user NAME`` creates an account with a one-time password that
it prints once; the technician must choose a new password at the first login. Only the
hashes are stored (Argon2id, a memory-hard KDF: a stolen file costs an attacker memory,
not just time, per guess). The file is rewritten atomically and kept at mode 0600.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from edge.app.config import GatewayConfig
from edge.errors import SetupError
from edge.web import MAX_PASSWORD, password_problem

USERS_FILE = "console-users.json"
NAME_PATTERN = r"[a-z][a-z0-9._-]{1,31}"

# RFC 9106's second recommended option (64 MiB, 3 passes): fine on a Raspberry Pi 4.
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=2)


@functools.cache
def _dummy_hash() -> str:
    """Verified against for an unknown name: a wrong name costs as long as a wrong password."""
    return _HASHER.hash(secrets.token_hex(16))


class UsersFileError(SetupError):
    """The users file cannot be read or written, or a name is invalid."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """One technician's account as stored."""

    name: str
    password_hash: str
    must_change: bool
    created_at: float
    changed_at: float | None = None


def users_path(config: GatewayConfig) -> Path:
    """Where the console's accounts live: the config's ``users_file`` or beside the database."""
    if config.console is not None and config.console.users_file is not None:
        return config.console.users_file
    return config.store.path.parent / USERS_FILE


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid account name; raise UsersFileError otherwise."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise UsersFileError(
            f"account name {name!r} must be 2-32 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter"
        )
    return name


def load_accounts(path: Path) -> dict[str, Account]:
    """Read the accounts; an absent file means none. Raises UsersFileError when unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            name: Account(
                name=name,
                password_hash=str(entry["hash"]),
                must_change=bool(entry["must_change"]),
                created_at=float(entry["created_at"]),
                changed_at=None if entry.get("changed_at") is None else float(entry["changed_at"]),
            )
            for name, entry in data["users"].items()
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsersFileError(f"console users file {path} is unreadable: {exc}") from exc


def save_accounts(path: Path, accounts: dict[str, Account]) -> None:
    """Write the accounts atomically, owner-only (mode 0600)."""
    data: dict[str, Any] = {
        "users": {
            a.name: {
                "hash": a.password_hash,
                "must_change": a.must_change,
                "created_at": a.created_at,
                "changed_at": a.changed_at,
            }
            for a in accounts.values()
        }
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        _owned_like_folder(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UsersFileError(f"cannot write console users file {path}: {exc}") from exc


def _owned_like_folder(path: Path) -> None:
    """As root, give the file to the folder's owner: `sudo offsite-edge console add-user`
    must leave a file the gateway's service user (who owns the data folder) can read."""
    if os.geteuid() != 0:
        return
    folder = path.parent.stat()
    if folder.st_uid != 0:
        os.chown(path, folder.st_uid, folder.st_gid)


def add_user(path: Path, name: str, *, reset: bool = False) -> str:
    """Create (or with ``reset``, re-issue) an account; return its one-time password.

    Raises UsersFileError for an invalid name, an existing account without ``reset``, an
    unknown one with it, or a file that cannot be read or written.
    """
    check_name(name)
    accounts = load_accounts(path)
    if name in accounts and not reset:
        raise UsersFileError(f"console account {name!r} exists; use --reset for a new password")
    if reset and name not in accounts:
        raise UsersFileError(f"no console account {name!r} to reset")
    one_time = secrets.token_urlsafe(12)
    accounts[name] = Account(
        name=name,
        password_hash=_HASHER.hash(one_time),
        must_change=True,
        created_at=accounts[name].created_at if name in accounts else time.time(),
    )
    save_accounts(path, accounts)
    return one_time


def verify(path: Path, name: str, password: str) -> Account | None:
    """The account if ``password`` is its password, else None (blocking: Argon2 is slow).

    An unknown name costs the same as a wrong password, so timing tells nobody which
    names exist.
    """
    account = load_accounts(path).get(name)
    if len(password) > MAX_PASSWORD:
        return None
    try:
        _HASHER.verify(_dummy_hash() if account is None else account.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return account


def set_password(path: Path, name: str, password: str) -> None:
    """Store a new password for ``name`` chosen by its technician (blocking).

    Raises UsersFileError when the account is gone or the password is not acceptable.
    """
    problem = password_problem(password)
    if problem is not None:
        raise UsersFileError(problem)
    accounts = load_accounts(path)
    account = accounts.get(name)
    if account is None:
        raise UsersFileError(f"no console account {name!r}")
    accounts[name] = Account(
        name=name,
        password_hash=_HASHER.hash(password),
        must_change=False,
        created_at=account.created_at,
        changed_at=time.time(),
    )
    save_accounts(path, accounts)
