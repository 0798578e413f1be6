"""Run the reference receiver the way a user does: `offsite-edge cloud …` in its own process.

Run: python receiver_proc.py cloud [--db …] [register …]. It builds the same argparse
subcommands as the real CLI (``edge.app.cloud_cli``) and logs to stderr, so tests see the
receiver's log lines.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.app.cloud_cli import add_cloud_commands
from edge.errors import SetupError


def main(argv: list[str]) -> int:
    """Parse like `offsite-edge`, run the subcommand; SetupError → one line, exit 2."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="offsite-edge")
    add_cloud_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
