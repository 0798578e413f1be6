"""`offsite-edge console add-user`: create a technician account with a one-time password."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_add_user(args: argparse.Namespace) -> int:
    """Create (or ``--reset``) an account and print its one-time password, once."""
    from edge.app.config_file import load_config
    from edge.errors import SetupError

    try:
        from edge.app.console.users import add_user, users_path
    except ImportError as exc:
        raise SetupError(
            f"the console needs its extra ({exc}): pip install 'offsite-edge[console]'"
        ) from exc

    config = load_config(args.config)
    path = users_path(config)
    password = add_user(path, args.name, reset=args.reset)
    action = "password reset" if args.reset else "created"
    print(f"console account {args.name} {action} in {path}")
    print(f"one-time password: {password}")
    print("it works once: the console asks for a new password at the first login")
    if config.console is None or not config.console.enabled:
        print("note: the config has no enabled console: section; the console is not served")
    return 0


def add_console_commands(commands: Any) -> None:
    """Register `console add-user` on the top-level subcommands."""
    console = commands.add_parser("console", help="technician console accounts")
    console_commands = console.add_subparsers(dest="console_command", required=True)
    add = console_commands.add_parser(
        "add-user", help="create a technician account; prints a one-time password"
    )
    add.add_argument("name", help="account name: 2-32 of a-z, 0-9, '.', '_', '-'")
    add.add_argument("--config", required=True)
    add.add_argument(
        "--reset", action="store_true", help="issue a new one-time password for an account"
    )
    add.set_defaults(func=cmd_add_user)
