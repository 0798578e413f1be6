"""A named but unset credential variable stops `run` and fails `config check`, naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import gateway_dict

from edge.app.config import GatewayConfig
from edge.app.env_secrets import missing_secrets, secret_fields

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path) -> Path:
    data = gateway_dict(tmp_path / "g.db")
    data["broker"]["username_env"] = "OFFSITE_TEST_BROKER_USER"
    data["cloud"] = {
        "uplinks": [
            {
                "type": "hj212",
                "name": "province",
                "host": "127.0.0.1",
                "port": 6000,
                "mn": "010000A8900016F000169DC0",
                "pw_env": "OFFSITE_TEST_HJ212_PW",
                "tls": {"enabled": False},
            }
        ]
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"OFFSITE_TEST_BROKER_USER", "OFFSITE_TEST_HJ212_PW"}
    }
    return subprocess.run(
        [sys.executable, "-m", "edge.app.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


def test_secret_fields_are_found_wherever_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = GatewayConfig.model_validate(yaml.safe_load(_config(tmp_path).read_text()))
    assert dict(secret_fields(config)) == {
        "broker.username_env": "OFFSITE_TEST_BROKER_USER",
        "cloud.uplinks[0].pw_env": "OFFSITE_TEST_HJ212_PW",
    }
    monkeypatch.delenv("OFFSITE_TEST_BROKER_USER", raising=False)
    monkeypatch.delenv("OFFSITE_TEST_HJ212_PW", raising=False)
    assert [p.field for p in missing_secrets(config)] == [
        "broker.username_env",
        "cloud.uplinks[0].pw_env",
    ]


def test_config_check_and_run_refuse_an_unset_variable(tmp_path: Path) -> None:
    path = _config(tmp_path)
    for command in (["config", "check", str(path)], ["run", "--config", str(path)]):
        done = _cli(*command, OFFSITE_TEST_BROKER_USER="gw")
        assert done.returncode == 2, done.stdout + done.stderr
        output = done.stdout + done.stderr
        assert "cloud.uplinks[0].pw_env" in output
        assert "OFFSITE_TEST_HJ212_PW is not set" in output
        assert "broker.username_env" not in output
        assert not (tmp_path / "g.db").exists()  # refused before anything started
    # An empty value is no secret either.
    done = _cli(
        "config", "check", str(path), OFFSITE_TEST_BROKER_USER="gw", OFFSITE_TEST_HJ212_PW=""
    )
    assert "OFFSITE_TEST_HJ212_PW is not set" in done.stdout + done.stderr
    ok = _cli(
        "config", "check", str(path), OFFSITE_TEST_BROKER_USER="gw", OFFSITE_TEST_HJ212_PW="123456"
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
