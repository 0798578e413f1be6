"""The README's config snippets are valid configs (docs that drift are worse than none)."""

import re
from pathlib import Path

import yaml

from cloud_sync.config import CloudConfig
from edge.app.config import GatewayConfig
from vision.config import VisionConfig

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
BLOCKS = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", README, re.S)]


def test_readme_has_the_config_snippets():
    assert {next(iter(b)) for b in BLOCKS} >= {"gateway", "vision", "cloud"}


def test_readme_snippets_validate():
    for block in BLOCKS:
        if "gateway" in block:
            GatewayConfig.model_validate(block)
        if "vision" in block:
            VisionConfig.model_validate(block["vision"])
        if "cloud" in block:
            CloudConfig.model_validate(block["cloud"])


def test_readme_starts_with_the_two_commands():
    first = README.split("```", 2)[1].strip().splitlines()
    assert first == [
        "python3 -m venv .venv && .venv/bin/pip install '.[demo]' && .venv/bin/offsite-edge demo",
        "bash scripts/test.sh",
    ]
