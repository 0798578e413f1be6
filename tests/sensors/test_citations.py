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
        # checked against three copies of the text (issue 11 period work)
        "§6.3": "采样时间和频次: 正常作业期间, 连续采样5次, 每次10 min",
        "§6.5": "分析结果处理: a value below 1/4 of the largest is invalid; at least 3 values "
        "enter the mean, else resample",
    },
    # cited by other profiles for completeness rules (never as a limit)
    "GB 3095-2012": {
        "表4": "污染物浓度数据有效性的最低要求: an hourly value needs at least 45 min of data",
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
# A clause after another standard's number (on the same line) is that standard's.
_CITED = re.compile(
    r"(?P<std>(?:GB|DB)\s?[\d/]+-\d{4})|(?<!standards\.md )(?P<ref>§\s*[\d.]*\d|表\s*\d+|附录\s*[A-Z])"
)


def refs_of(text: str) -> set[str]:
    """Clause (§x.y) and table (表n) references in ``text``, normalised."""
    return {m.replace(" ", "") for m in _REF.findall(text)}


def citations(text: str, own: str) -> set[tuple[str, str]]:
    """(standard, reference) pairs in ``text``; a reference belongs to ``own`` unless
    another standard's number comes before it on the same line."""
    out: set[tuple[str, str]] = set()
    for line in text.splitlines():
        current = own
        for m in _CITED.finditer(line):
            if m.group("std"):
                # as the standards are spelt: "GB 3095-2012", "DB11/1488-2018"
                current = re.sub(r"^GB\s?", "GB ", re.sub(r"^DB\s", "DB", m.group("std")))
            else:
                out.add((current, m.group("ref").replace(" ", "")))
    return out


def unreviewed(text: str, own: str) -> set[tuple[str, str]]:
    """Cited (standard, reference) pairs not on the reviewed list."""
    return {(std, ref) for std, ref in citations(text, own) if ref not in REVIEWED.get(std, {})}


def test_cited_reads_other_standards_on_the_line() -> None:
    text = "GB 3096-2008 §3, by analogy with GB 3095-2012 表4\n表1"
    assert citations(text, "GB 3096-2008") == {
        ("GB 3096-2008", "§3"),
        ("GB 3095-2012", "表4"),
        ("GB 3096-2008", "表1"),
    }
    assert unreviewed("GB 3095-2012 表9", "GB 3096-2008") == {("GB 3095-2012", "表9")}


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
    # Evaluation periods reach event records too (period_clause, validity clause).
    for quantity, ev in profile.evaluation.items():
        assert ev.clause.startswith(profile.standard), (quantity, ev.clause)
        assert citations(ev.clause, profile.standard), f"{name}: {quantity} period cites nothing"
        for text in (ev.clause, ev.coverage_clause, ev.coverage_note):
            assert not unreviewed(text, profile.standard), (quantity, text)
    # Comments and descriptions cite clauses too (e.g. the < 1 m rule); they guide overrides.
    text = (STANDARDS_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    assert not unreviewed(text, profile.standard), f"{name}: {unreviewed(text, profile.standard)}"


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
