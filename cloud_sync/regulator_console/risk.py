"""The risk list: a per-gateway (per-site) score, explained, and the inspection it implies.

Scoring (also in docs/regulator-console.md). Each factor gives points, capped so that no
single one decides alone; the sum is scaled by the enterprise grade (A 0.8, B 1.0,
C 1.25, D 1.5, none 1.0):

| factor | points | cap |
|---|---|---|
| open alarms (not closed) | 10 each | 40 |
| open warnings | 3 each | 30 |
| exceedances in 30 days | alarm 3, warning 1, × recency (1 d 1, 7 d 0.5, 30 d 0.25) | 30 |
| kitchen violations (camera) in 30 days | same weights | 20 |
| sensor/camera offline events in 30 days | 1 each | 10 |
| maintenance/calibration events in 30 days | 1 each | 10 |
| self-declared flagged minutes (M, C, D, F…) | 1 per 60 | 10 |
| records lost in gaps | 1 per 10 | 15 |
| refused commands | 2 each | 10 |
| records stamped with an unsynchronised clock | 1 per 100 | 5 |
| chain verdict | tampered 40, unregistered 20, attention 15 | — |
| gateway silent (not heard from for offline_after_s) | 2 per hour | 20 |

Inspection frequency: score ≥ 60 weekly, ≥ 30 monthly, ≥ 10 quarterly, else yearly (random
spot checks); grade D inspects at least monthly and C at least quarterly.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cloud_sync.regulator_console.schema import SEVERITY_RANK, day_of

GRADE_FACTOR = {"A": 0.8, "B": 1.0, "C": 1.25, "D": 1.5}
FREQUENCIES = ("yearly", "quarterly", "monthly", "weekly")
_THRESHOLDS = ((60.0, "weekly"), (30.0, "monthly"), (10.0, "quarterly"))
_GRADE_FLOOR = {"D": "monthly", "C": "quarterly"}
VERDICT_POINTS = {"tampered": 40.0, "unregistered": 20.0, "attention": 15.0}


@dataclass(slots=True, kw_only=True)
class SiteFacts:
    """What the score of one gateway is computed from."""

    gateway: str
    site: str | None = None
    open_alarms: int = 0
    open_warnings: int = 0
    exceedance_weight: float = 0.0
    exceedances: int = 0
    violation_weight: float = 0.0
    violations: int = 0
    offline_events: int = 0
    maintenance_events: int = 0
    flagged_minutes: int = 0
    gap_records: int = 0
    refused_commands: int = 0
    clock_unsynced: int = 0
    verdict: str = "ok"
    silent_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Contribution:
    """One factor of a score: what was counted and the points it gave."""

    factor: str
    count: float
    points: float


@dataclass(slots=True, kw_only=True)
class Risk:
    """A gateway's score, its factors and the inspection frequency it implies."""

    gateway: str
    site: str | None
    score: float
    grade: str | None
    frequency: str
    verdict: str
    contributions: list[Contribution] = field(default_factory=list)


def frequency_of(score: float, grade: str | None) -> str:
    """The inspection frequency a score implies, never below the grade's floor."""
    freq = next((f for limit, f in _THRESHOLDS if score >= limit), "yearly")
    floor = _GRADE_FLOOR.get(grade or "")
    if floor and FREQUENCIES.index(floor) > FREQUENCIES.index(freq):
        return floor
    return freq


def score(facts: SiteFacts, grade: str | None = None) -> Risk:
    """Score one gateway (pure): every factor with its points, the total and frequency."""
    rows: list[tuple[str, float, float, float]] = [
        ("open alarms", facts.open_alarms, 10.0 * facts.open_alarms, 40.0),
        ("open warnings", facts.open_warnings, 3.0 * facts.open_warnings, 30.0),
        ("exceedances (30 days, weighted)", facts.exceedances, facts.exceedance_weight, 30.0),
        ("kitchen violations (30 days, weighted)", facts.violations, facts.violation_weight,
         20.0),
        ("offline events (30 days)", facts.offline_events, float(facts.offline_events), 10.0),
        ("maintenance/calibration (30 days)", facts.maintenance_events,
         float(facts.maintenance_events), 10.0),
        ("self-declared flagged minutes", facts.flagged_minutes, facts.flagged_minutes / 60,
         10.0),
        ("records lost in gaps", facts.gap_records, facts.gap_records / 10, 15.0),
        ("refused commands", facts.refused_commands, 2.0 * facts.refused_commands, 10.0),
        ("unsynchronised clock records", facts.clock_unsynced, facts.clock_unsynced / 100, 5.0),
        ("silent hours", round(facts.silent_s / 3600, 1), 2.0 * facts.silent_s / 3600, 20.0),
    ]  # fmt: skip
    contributions = [
        Contribution(name, count, round(min(points, cap), 2))
        for name, count, points, cap in rows
        if points > 0
    ]
    if facts.verdict in VERDICT_POINTS:
        contributions.append(
            Contribution(f"chain verdict {facts.verdict}", 1, VERDICT_POINTS[facts.verdict])
        )
    factor = GRADE_FACTOR.get(grade or "", 1.0)
    total = round(sum(c.points for c in contributions) * factor, 1)
    return Risk(
        gateway=facts.gateway,
        site=facts.site,
        score=total,
        grade=grade,
        frequency=frequency_of(total, grade),
        verdict=facts.verdict,
        contributions=sorted(contributions, key=lambda c: -c.points),
    )


_RECENCY = "CASE WHEN day >= :d1 THEN 1.0 WHEN day >= :d7 THEN 0.5 ELSE 0.25 END"
_WEIGHT = f"(CASE sev_rank WHEN 2 THEN 3 WHEN 1 THEN 1 ELSE 0 END) * {_RECENCY}"
_DAILY_SQL = f"""
SELECT gateway,
  sum(CASE WHEN kind = 'exceedance' THEN n * {_WEIGHT} ELSE 0 END),
  sum(CASE WHEN kind = 'exceedance' THEN n ELSE 0 END),
  sum(CASE WHEN kind = 'violation' THEN n * {_WEIGHT} ELSE 0 END),
  sum(CASE WHEN kind = 'violation' THEN n ELSE 0 END),
  sum(CASE WHEN kind IN ('sensor_offline', 'camera_offline') THEN n ELSE 0 END),
  sum(CASE WHEN kind IN ('maintenance', 'calibration') THEN n ELSE 0 END)
FROM reg_daily WHERE day >= :d30 GROUP BY gateway
"""  # noqa: S608 - constant SQL
_SIGNALS = frozenset({"flagged_minutes", "gap_records", "refused_commands", "clock_unsynced"})


def gather(
    conn: sqlite3.Connection,
    verdict_of: Callable[[str], str],
    *,
    offline_after_s: float,
    now: float | None = None,
) -> list[SiteFacts]:
    """The facts of every gateway the receiver knows, from the console's running counts.

    Recency goes by UTC day: "1 day" is today and yesterday, "7 days" the six days
    before, "30 days" back to 30 days ago.
    """
    now = time.time() if now is None else now
    today = day_of(now)
    facts: dict[str, SiteFacts] = {}

    def of(gateway: str) -> SiteFacts:
        return facts.setdefault(gateway, SiteFacts(gateway=gateway))

    for gateway, last_seen in conn.execute("SELECT gateway, last_seen FROM gateways"):
        silent = now - float(last_seen)
        of(gateway).silent_s = silent if silent > offline_after_s else 0.0
    bounds = {"d1": today - 1, "d7": today - 7, "d30": today - 30}
    for gateway, *row in conn.execute(_DAILY_SQL, bounds):
        f = of(gateway)
        f.exceedance_weight, f.exceedances = float(row[0] or 0), int(row[1] or 0)
        f.violation_weight, f.violations = float(row[2] or 0), int(row[3] or 0)
        f.offline_events, f.maintenance_events = int(row[4] or 0), int(row[5] or 0)
    for gateway, rank, n in conn.execute("SELECT gateway, sev_rank, n FROM reg_open"):
        if rank == SEVERITY_RANK["alarm"]:
            of(gateway).open_alarms = int(n)
        elif rank == SEVERITY_RANK["warning"]:
            of(gateway).open_warnings = int(n)
    for gateway, signal, count in conn.execute("SELECT gateway, signal, count FROM reg_signals"):
        if signal in _SIGNALS:
            setattr(of(gateway), signal, int(count))
    for gateway, site in conn.execute("SELECT gateway, site FROM reg_sites"):
        of(gateway).site = site
    for f in facts.values():
        f.verdict = verdict_of(f.gateway)
    return list(facts.values())


def risk_list(facts: Iterable[SiteFacts], grades: Mapping[str, str]) -> list[Risk]:
    """Every gateway scored, highest risk first (ties: by gateway id)."""
    return sorted(
        (score(f, grades.get(f.gateway)) for f in facts), key=lambda r: (-r.score, r.gateway)
    )


def _cell(text: str) -> str:
    # A cell a spreadsheet would run as a formula (a gateway id or site is sender-chosen).
    return f"'{text}" if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


def risk_csv(risks: Iterable[Risk]) -> str:
    """The risk list as CSV (one row per gateway; factors as ``name=points`` pairs)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", "gateway", "site", "score", "grade", "inspection", "verdict",
                     "factors"])  # fmt: skip
    for rank, r in enumerate(risks, 1):
        factors = "; ".join(f"{c.factor}={c.points:g} ({c.count:g})" for c in r.contributions)
        writer.writerow([rank, _cell(r.gateway), _cell(r.site or ""), f"{r.score:g}",
                         r.grade or "", r.frequency, r.verdict, factors])  # fmt: skip
    return out.getvalue()


_EVENTS_OF = {
    "open alarms": {"severity": "alarm", "state": "open"},
    "open warnings": {"severity": "warning", "state": "open"},
    "exceedances (30 days, weighted)": {"kind": "exceedance"},
    "kitchen violations (30 days, weighted)": {"kind": "violation"},
    "offline events (30 days)": {"kind": "sensor_offline", "severity": "info"},
    "maintenance/calibration (30 days)": {"kind": "maintenance", "severity": "info"},
}
"""The alert-list filter that shows the events behind a factor (the explanation)."""


def as_rows(risks: Iterable[Risk]) -> list[dict[str, Any]]:
    """The risk list as plain dicts (templates); each factor with the query of its events."""
    return [
        {
            "gateway": r.gateway, "site": r.site, "score": r.score, "grade": r.grade,
            "frequency": r.frequency, "verdict": r.verdict,
            "contributions": [
                (c.factor, c.count, c.points,
                 {"gateway": r.gateway, **_EVENTS_OF[c.factor]} if c.factor in _EVENTS_OF
                 else None)
                for c in r.contributions
            ],
        }
        for r in risks
    ]  # fmt: skip
