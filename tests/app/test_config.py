import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import gateway_dict

from edge.app.config import GatewayConfig, uscc_check_char
from edge.app.config_file import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "gateway.example.yaml"


def test_example_config_is_valid():
    config = load_config(EXAMPLE)
    assert {s.kind for s in config.sensors} == {"noise", "gas", "water", "soil"}
    assert {s.decoder.type for s in config.sensors} == {"json", "hj212", "number"}
    # Relative store paths resolve next to the config file, not the working directory.
    assert config.store.path == EXAMPLE.parent / "var" / "gateway.db"


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="site.yaml")
    return [p.render("site.yaml") for p in info.value.problems]


def test_every_problem_reported_with_path_and_line():
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("port: 1883", "port: 188300")
    text = text.replace(
        "      - {name: DO, unit: mg/L, range: [0, 20]}",
        "      - {name: DO, unit: mg/L, range: [20, 0]}",
    )
    text = text.replace("    topic: site/fume/01", "    topic: site/fume/01\n    topik: typo")
    problems = _problems(text)
    lines = text.splitlines()
    port_line = next(i for i, line in enumerate(lines, 1) if "188300" in line)
    typo_line = next(i for i, line in enumerate(lines, 1) if "topik" in line)
    assert (
        f"site.yaml:{port_line}: broker.port: Input should be less than or equal to 65535"
        in problems
    )
    assert f"site.yaml:{typo_line}: sensors[1].topik: Extra inputs are not permitted" in problems
    assert any("sensors[2].quantities[1].range: must be two finite numbers" in p for p in problems)
    assert len(problems) == 3


def test_yaml_syntax_error_has_a_line():
    (problem,) = _problems("gateway:\n  id: [unclosed\nsite: {}\n")
    assert problem.startswith("site.yaml:3: <root>: not valid YAML")


def test_duplicate_keys_are_errors(tmp_path):
    data = gateway_dict(tmp_path / "g.db")
    text = yaml.safe_dump(data, allow_unicode=True) + "gateway:\n  id: other\n"
    assert any("gateway: key repeated" in p for p in _problems(text))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["site"].update(credit_code="91350100M000100Y44"),
            "check character is '4', expected '3'",
        ),
        (lambda d: d["site"].update(credit_code="ABC"), "must be 18 characters"),
        (lambda d: d["sensors"].append(dict(d["sensors"][0])), "sensor ids repeat"),
        (lambda d: d["sensors"][0].update(topic="site/+/noise"), "must be an exact topic"),
        (
            lambda d: d["sensors"][0]["decoder"]["fields"].update(LB="x"),
            "decoder maps quantities that are not declared",
        ),
        (
            lambda d: d["sensors"][0].update(kind="radiation"),
            "Input should be 'noise', 'gas', 'water' or 'soil'",
        ),
        (
            lambda d: d["sensors"][0].update(decoder={"type": "xml"}),
            "does not match any of the expected tags",
        ),
        (
            lambda d: d["broker"].update(password_env="PW"),
            "password_env is set but username_env is not",
        ),
        (
            lambda d: d["broker"].update(tls={"enabled": True, "cert_file": "c.pem"}),
            "cert_file and key_file",
        ),
        (
            lambda d: d["sensors"][0].update(
                decoder={"type": "number"},
                quantities=[
                    {"name": "a", "unit": "x", "range": [0, 1]},
                    {"name": "b", "unit": "x", "range": [0, 1]},
                ],
            ),
            "number decoder needs exactly one quantity",
        ),
    ],
)
def test_invalid_values_are_refused(tmp_path, change, message):
    data = gateway_dict(tmp_path / "g.db")
    change(data)
    problems = _problems(yaml.safe_dump(data, allow_unicode=True))
    assert any(message in p for p in problems), problems


def test_every_field_has_a_description():
    schema = GatewayConfig.model_json_schema()
    missing = []

    def visit(name, node):
        for field, prop in node.get("properties", {}).items():
            if "description" not in prop:
                missing.append(f"{name}.{field}")

    visit("GatewayConfig", schema)
    for name, definition in schema.get("$defs", {}).items():
        visit(name, definition)
    assert missing == []


def test_check_character():
    assert uscc_check_char("91350100M000100Y4") == "3"


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "edge.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_cli_config_check_ok_and_errors(tmp_path):
    ok = _cli("config", "check", str(EXAMPLE))
    assert ok.returncode == 0
    assert ok.stdout.strip().endswith(": OK")
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace("kind: water", "kind: watr"))
    result = _cli("config", "check", str(bad))
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr
    assert "sensors[2].kind" in result.stderr


def test_cli_config_schema_is_json_schema():
    result = _cli("config", "schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "GatewayConfig"
    assert schema["additionalProperties"] is False


def test_cli_status_shows_maintenance_and_reports_a_missing_store(tmp_path):
    import asyncio

    from helpers import gateway_dict

    from edge.store import Store

    db = tmp_path / "g.db"
    config_path = tmp_path / "g.yaml"
    config_path.write_text(yaml.safe_dump(gateway_dict(db), allow_unicode=True))
    missing = _cli("status", "--config", str(config_path))
    assert missing.returncode == 1
    assert "no gateway database" in missing.stderr

    async def create():
        async with await Store.open(db):
            pass

    asyncio.run(create())
    asked = _cli(
        "sensors",
        "maintenance",
        "noise-01",
        "on",
        "--mode",
        "calibration",
        "--who",
        "tech.li",
        "--why",
        "zero gas",
        "--config",
        str(config_path),
    )
    assert asked.returncode == 0, asked.stderr
    result = _cli("status", "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    assert "noise-01: calibration since" in result.stdout
    assert "by tech.li: zero gas" in result.stdout
    as_json = json.loads(_cli("status", "--config", str(config_path), "--json").stdout)
    assert as_json["modes"]["noise-01"]["who"] == "tech.li"
