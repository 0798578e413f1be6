"""`offsite-edge demo` as a user runs it: one event per injected fault, seen by the cloud."""

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing


def test_demo_shows_one_event_per_fault_and_the_cloud_verifies_the_chain(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.app.cli",
            "demo",
            "--duration",
            "42",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with closing(sqlite3.connect(tmp_path / "demo.db")) as db:
        opened = Counter(
            (kind, source)
            for kind, source in db.execute(
                "SELECT json_extract(body, '$.kind'), json_extract(body, '$.source') FROM outbox"
                " WHERE json_extract(body, '$.type') = 'event' AND json_extract(body, '$.status') = 'open'"
            )
        )
        snapshot = db.execute(
            "SELECT json_extract(body, '$.detail.snapshot_path') FROM outbox"
            " WHERE json_extract(body, '$.kind') = 'violation' AND json_extract(body, '$.status') = 'open'"
        ).fetchone()[0]
    assert opened == {
        ("exceedance", "fume-01"): 1,
        ("sensor_stuck", "water-01"): 1,
        ("sensor_offline", "soil-01"): 1,
        ("violation", "kitchen-1"): 1,
    }
    assert (tmp_path / snapshot.split(str(tmp_path) + "/", 1)[1]).stat().st_size > 1000
    assert "EVENT" in result.stdout
    assert "OPEN   exceedance           fume-01" in result.stdout
    assert "CLOUD  ← alarm" in result.stdout
    assert "hash chain and signatures verified; gaps none" in result.stdout
    with closing(sqlite3.connect(tmp_path / "cloud.db")) as cloud:
        alarms = [
            json.loads(b)
            for (b,) in cloud.execute("SELECT body FROM records WHERE data_class = 'alarm'")
        ]
    assert {(a["kind"], a["source"]) for a in alarms if a["status"] == "open"} == {
        ("exceedance", "fume-01"),
        ("sensor_stuck", "water-01"),
        ("sensor_offline", "soil-01"),
    }
