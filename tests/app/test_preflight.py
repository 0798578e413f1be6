"""`config check` refuses exactly what `run` refuses, with the same one line, exit code 2.

Each case is a mistake a technician makes (issue 12): the file is valid field by field,
yet the gateway could not run on it. Both commands run as real processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import cli, gateway_dict, sensor


def _noise(**standard: Any) -> dict[str, Any]:
    return sensor(
        "noise-01",
        "t/noise",
        standard={"profile": "gb3096-2008", "params": {"zone": "2"}, **standard},
    )


def _water(unit: str = "mg/L", **standard: Any) -> dict[str, Any]:
    return {
        "id": "water-01",
        "kind": "water",
        "topic": "t/water",
        "decoder": {"type": "json", "fields": {"DO": "do"}},
        "quantities": [{"name": "DO", "unit": unit, "range": [0, 20]}],
        "standard": {
            "profile": "gb3838-2002",
            "params": {"class": "III", "water_body": "river"},
            **standard,
        },
    }


def _broker(**broker: Any) -> dict[str, Any]:
    return {"broker": {"host": "127.0.0.1", "port": 1, **broker}}


CASES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown profile": (
        {"sensors": [_noise(profile="gb9999-2099")]},
        "sensors[0].standard: sensor noise-01: unknown standard profile 'gb9999-2099'",
    ),
    "zone 5": (
        {"sensors": [_noise(params={"zone": "5"})]},
        "sensors[0].standard: sensor noise-01: gb3096-2008: zone='5' not one of",
    ),
    "unknown parameter": (
        {"sensors": [_noise(params={"zone": "2", "zoen": "2"})]},
        "sensor noise-01: gb3096-2008: unknown parameter 'zoen'",
    ),
    "quantity the profile does not know": (
        {"sensors": [_water(quantity_map={"DO": "D0"})]},
        "sensors[0].standard.quantity_map.DO: sensor water-01: gb3838-2002 has no quantity 'D0'",
    ),
    "deadband of an unknown quantity": (
        {"sensors": [_noise(deadband={"LB": 1.0})]},
        "unknown quantity 'LB'",
    ),
    "time zone typo": (
        {"sensors": [_noise(timezone="Asia/Shangai")]},
        "sensors[0].standard.timezone: sensor noise-01: unknown time zone 'Asia/Shangai'",
    ),
    "unit that contradicts the profile": (
        {"sensors": [_water(unit="dB")]},
        "sensor water-01: incompatible units",
    ),
    "unset credential variable": (
        _broker(username_env="OFFSITE_TEST_UNSET_USER"),
        "broker.username_env: environment variable OFFSITE_TEST_UNSET_USER is not set",
    ),
    "missing CA file": (
        _broker(tls={"enabled": True, "ca_file": "/nonexistent/ca.pem"}),
        "broker.tls.ca_file: file /nonexistent/ca.pem does not exist",
    ),
}


def _write(tmp_path: Path, overrides: dict[str, Any]) -> Path:
    data = gateway_dict(tmp_path / "g.db", port=1)
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if key == "broker" else value
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OFFSITE_TEST_UNSET")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_and_run_refuse_alike_in_one_line(tmp_path, case):
    overrides, expected = CASES[case]
    path = _write(tmp_path, overrides)
    check = cli("config", "check", str(path), env=_env())
    run = cli("run", "--config", str(path), env=_env())
    assert check.returncode == 2, check.stdout + check.stderr
    assert check.stdout == ""
    lines = check.stderr.splitlines()
    assert len(lines) == 1, check.stderr
    assert lines[0].startswith(f"{path}:")
    assert expected in lines[0]
    assert run.returncode == 2, run.stderr
    assert lines[0] in run.stderr.splitlines()
    assert "Traceback" not in check.stderr + run.stderr
    assert not (tmp_path / "g.db").exists(), "run refused before opening the store"


def test_check_names_the_line_of_the_field(tmp_path):
    path = _write(tmp_path, {"sensors": [_noise(timezone="Asia/Shangai")]})
    line = next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if "Asia/Shangai" in text
    )
    check = cli("config", "check", str(path))
    assert check.stderr.startswith(f"{path}:{line}: sensors[0].standard.timezone:")


def test_a_missing_model_is_refused_before_start(tmp_path):
    from vision.synthetic import demo_config

    vision = demo_config(tmp_path / "missing.onnx", tmp_path / "missing.avi")
    path = _write(tmp_path, {"vision": vision.model_dump(mode="json")})
    check = cli("config", "check", str(path))
    assert check.returncode == 2
    assert "vision.detector.model_path: model file" in check.stderr
    assert "missing.onnx does not exist" in check.stderr


def test_a_good_file_passes_and_the_example_too(tmp_path):
    path = _write(tmp_path, {"sensors": [_noise(), _water()]})
    assert cli("config", "check", str(path)).stdout == f"{path}: OK\n"
    example = Path(__file__).resolve().parents[2] / "configs" / "gateway.example.yaml"
    ok = cli("config", "check", str(example))
    assert ok.returncode == 0, ok.stderr


def test_log_level_in_any_case_and_version():
    lower = cli("--log-level", "debug", "config", "schema")
    assert lower.returncode == 0, lower.stderr
    bad = cli("--log-level", "loud", "config", "schema")
    assert bad.returncode == 2
    assert "invalid choice: 'LOUD'" in bad.stderr
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("offsite-edge ")


def test_simulate_with_the_broker_down_is_one_line(tmp_path):
    path = _write(tmp_path, {})
    result = cli("simulate", "--config", str(path), "--duration", "1")
    assert result.returncode == 2
    assert result.stderr.strip() == "cannot reach the broker at 127.0.0.1:1: Connection refused"


def test_a_database_from_a_newer_gateway_is_refused_before_start(tmp_path):
    import asyncio
    import sqlite3
    from contextlib import closing

    from edge.schema import SCHEMA_VERSION
    from edge.store import Store

    async def create() -> None:
        async with await Store.open(tmp_path / "g.db"):
            pass

    asyncio.run(create())
    with closing(sqlite3.connect(tmp_path / "g.db")) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
        db.commit()
    path = _write(tmp_path, {})
    for command in (["config", "check", str(path)], ["run", "--config", str(path)]):
        result = cli(*command)
        assert result.returncode == 2
        (line,) = result.stderr.splitlines()
        assert f"store.path: database {tmp_path / 'g.db'} has schema {SCHEMA_VERSION + 1}" in line
