"""The CLI's one error boundary: what a user must fix is one plain message and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from helpers import gateway_dict


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "edge.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_missing_secret_is_one_line_without_traceback(tmp_path):
    data = gateway_dict(tmp_path / "g.db", port=1)
    data["broker"]["username_env"] = "OFFSITE_TEST_NO_SUCH_VARIABLE"
    config = tmp_path / "g.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    env = {k: v for k, v in os.environ.items() if k != "OFFSITE_TEST_NO_SUCH_VARIABLE"}
    result = _cli("run", "--config", str(config), env=env)
    assert result.returncode == 2
    assert "environment variable OFFSITE_TEST_NO_SUCH_VARIABLE is not set" in result.stderr
    assert "Traceback" not in result.stderr
    debug = _cli("--debug", "run", "--config", str(config), env=env)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr


def test_an_invalid_file_names_file_field_and_reason(tmp_path):
    config = tmp_path / "g.yaml"
    config.write_text("gateway: {id: 7}\n")
    result = _cli("run", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}:1: gateway.id: Input should be a valid string" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_standard_profile_is_refused_before_start(tmp_path):
    data = gateway_dict(tmp_path / "g.db", port=1)
    data["sensors"][0]["standard"] = {"profile": "gb9999-2099"}
    config = tmp_path / "g.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    result = _cli("run", "--config", str(config))
    assert result.returncode == 2
    assert "unknown standard profile 'gb9999-2099'" in result.stderr
    assert "Traceback" not in result.stderr
