"""``offsite-edge install``: put the service in place on a Raspberry Pi (as root).

Creates the ``offsite-edge`` system user, installs the systemd unit (pointing at this
installation's ``offsite-edge``), the mosquitto snippet into ``/etc/mosquitto/conf.d`` and
the example config as ``/etc/offsite-edge/gateway.yaml`` unless one is there already. It
does not enable or start anything: the technician edits the config first.
``--root`` installs below another folder (for images and tests): no user is created and
systemd is not told.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from edge.errors import SetupError

USER = "offsite-edge"
UNIT = "etc/systemd/system/offsite-edge.service"
BROKER_SNIPPET = "etc/mosquitto/conf.d/offsite-edge.conf"
CONFIG = "etc/offsite-edge/gateway.yaml"
STATE = "var/lib/offsite-edge"
SHIPPED_EXECUTABLE = "/opt/offsite-edge/bin/offsite-edge"


class InstallError(SetupError):
    """The service could not be installed."""


def add_install_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``offsite-edge install``."""
    cmd = commands.add_parser("install", help="install the systemd service (run as root)")
    cmd.add_argument("--root", type=Path, default=Path("/"), help="install below this folder")
    cmd.set_defaults(func=_cmd_install)


def install(root: Path, executable: Path) -> list[str]:
    """Install below ``root`` for ``executable``; returns one line per thing done."""
    done: list[str] = []
    shipped = resources.files("offsite_configs")
    unit = (shipped / "systemd" / "offsite-edge.service").read_text(encoding="utf-8")
    _write(root / UNIT, unit.replace(SHIPPED_EXECUTABLE, str(executable)), 0o644, done)
    snippet = (shipped / "mosquitto" / "offsite-edge.conf").read_text(encoding="utf-8")
    _write(root / BROKER_SNIPPET, snippet, 0o644, done)
    config = root / CONFIG
    if config.exists():
        done.append(f"kept {config} (already there)")
    else:
        example = (shipped / "gateway.example.yaml").read_text(encoding="utf-8")
        example = example.replace("path: var/gateway.db", f"path: /{STATE}/gateway.db")
        _write(config, example, 0o640, done)
    if root == Path("/"):
        _system_user(done)
        # Remote config changes rewrite the file (and keep backups beside it).
        for path in (config.parent, config):
            shutil.chown(path, user=USER, group=USER)
        subprocess.run(["systemctl", "daemon-reload"], check=False)
        done.append("systemctl daemon-reload")
    return done


def _cmd_install(args: argparse.Namespace) -> int:
    if args.root == Path("/") and os.geteuid() != 0:
        raise InstallError("offsite-edge install: run it as root (sudo), or give --root")
    executable = Path(sys.argv[0]).resolve()
    if not executable.name.startswith("offsite-edge"):
        executable = Path(sys.executable).with_name("offsite-edge")
    for line in install(args.root, executable):
        print(line)
    print(
        f"next: edit /{CONFIG}, put secrets in /etc/offsite-edge/secrets.env, then\n"
        "  offsite-edge config check /etc/offsite-edge/gateway.yaml\n"
        "  systemctl enable --now offsite-edge"
    )
    return 0


def _system_user(done: list[str]) -> None:
    if subprocess.run(["id", "-u", USER], capture_output=True, check=False).returncode == 0:
        return
    subprocess.run(
        ["useradd", "--system", "--home-dir", f"/{STATE}", "--no-create-home",
         "--shell", "/usr/sbin/nologin", "--groups", "video", USER],
        check=True,
    )  # fmt: skip
    done.append(f"created system user {USER}")


def _write(path: Path, text: str, mode: int, done: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    os.replace(tmp, path)
    done.append(f"wrote {path}")
