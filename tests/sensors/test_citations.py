"""Every clause the shipped profiles cite (and so every clause an event record carries)
is on a list a person checked against the standard's text.

A new or changed citation fails here until it is added to ``REVIEWED`` with what the
clause says, so a wrong section number cannot slip into event records unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sensors.standards import load_profiles

STANDARDS_DIR = Path(__file__).resolve().parents[2] / "configs" / "standards"

# standard -> {reference: what that clause or table says}
REVIEWED: dict[str, dict[str, str]] = {
    "GB 3096-2008": {
        "§3": "definitions, incl. 昼间 06:00-22:00 / 夜间 22:00-06:00",
        "§4": "声环境功能区分类 (classes 0-4b)",
        "§5.1": "环境噪声限值, 表1",
        "表1": "环境噪声限值 by class, day/night",
        "§5.3": "background limit 70/55 beside existing trunk railways when no train passes",
        "§5.4": "夜间突发噪声 Lmax ≤ limit + 15 dB(A)",
    },
    "GB 12348-2008": {
        "§4.1.1": "厂界环境噪声排放限值, 表1",
        "表1": "boundary limits by zone, day/night",
        "§4.1.2": "夜间频发噪声 Lmax ≤ limit + 10 dB(A)",
        "§4.1.3": "夜间偶发噪声 Lmax ≤ limit + 15 dB(A)",
        "§4.1.5": "boundary < 1 m from a sensitive building: indoors, limit - 10 dB(A)",
        "§4.2": "结构传播固定设备室内噪声排放限值, 表2",
        "表2": "indoor limits, class A/B rooms",
    },
    "GB 22337-2008": {
        "§4.1.1": "边界噪声排放限值, 表1",
        "表1": "boundary limits by zone, day/night",
        "§4.1.3": "boundary < 1 m from a sensitive building: indoors, limit - 10 dB(A)",
        "§4.2": "结构传播固定设备室内噪声排放限值, 表2",
        "表2": "indoor limits, class A/B rooms",
        "§4.2.2": "非稳态噪声 (e.g. lifts) Lmax ≤ limit + 10 dB(A)",
    },
    "GB 18483-2001": {
        "表1": "饮食业单位规模划分",
        "表2": "油烟最高允许排放浓度 2.0 mg/m³ and minimum removal efficiency",
    },
    "DB11/1488-2018": {
        "表1": "catering emission limits (fume, particulate, NMHC)",
        "附录B": "equipment-selection guidance incl. removal efficiencies: not limits (issue 11)",
    },
    "GB 3838-2002": {
        "§4": "水域功能分类 I-V",
        "表1": "地表水环境质量标准基本项目标准限值",
    },
    "GB 15618-2018": {
        "表1": "农用地土壤污染风险筛选值 (基本项目)",
        "表2": "农用地土壤污染风险筛选值 (其他项目)",
        "表3": "农用地土壤污染风险管制值",
    },
}

# "standards.md §2" points into the project's reference notes, not into a standard.
_REF = re.compile(r"(?<!standards\.md )(§\s*[\d.]*\d|表\s*\d+|附录\s*[A-Z])")


def refs_of(text: str) -> set[str]:
    """Clause (§x.y) and table (表n) references in ``text``, normalised."""
    return {m.replace(" ", "") for m in _REF.findall(text)}


def test_refs_of_reads_sections_and_tables() -> None:
    assert refs_of("GB 12348-2008 §4.1.1 表1 (昼间)") == {"§4.1.1", "表1"}
    assert refs_of("source: standards.md §2 [N2]; see (§4.1.5).") == {"§4.1.5"}


@pytest.mark.parametrize("name", sorted(load_profiles()))
def test_every_cited_clause_is_reviewed(name: str) -> None:
    profile = load_profiles()[name]
    reviewed = REVIEWED.get(profile.standard, {})
    for row in profile.limits:
        # The clause reaches event records: it must name this standard and a reviewed clause.
        assert row.clause.startswith(profile.standard), row.clause
        cited = refs_of(row.clause)
        assert cited, f"{name}: clause {row.clause!r} cites no section or table"
        assert cited <= set(reviewed), f"{name}: unreviewed {cited - set(reviewed)}"
        assert refs_of(row.note) <= set(reviewed), f"{name}: note cites {row.note!r}"
    # Comments and descriptions cite clauses too (e.g. the < 1 m rule); they guide overrides.
    text = (STANDARDS_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    assert refs_of(text) <= set(reviewed), f"{name}: unreviewed {refs_of(text) - set(reviewed)}"


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("gb12348-2008", "§4.1.4"),  # the < 1 m rule is §4.1.5
        ("gb22337-2008", "§4.2.3"),  # non-steady Lmax is §4.2.2
        ("gb22337-2008", "§4.1.2"),  # the < 1 m rule is §4.1.3
    ],
)
def test_known_wrong_citations_are_gone(name: str, wrong: str) -> None:
    text = (STANDARDS_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    assert wrong not in refs_of(text)


def test_gb3096_section_5_3_is_not_a_railway_noise_limit() -> None:
    profile = load_profiles()["gb3096-2008"]
    notes = " ".join(row.note for row in profile.limits if "§5.3" in row.note)
    assert "background" in notes
    assert "no train passes" in notes
    # No limit row cites §5.3 as its source: it is not a limit the gateway applies.
    assert not any("§5.3" in row.clause for row in profile.limits)
