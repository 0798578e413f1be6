"""`offsite-edge demo` as a user runs it: one event per injected fault, seen by the cloud,
and a technician console that logs in with the account it prints."""

import http.cookiejar
import json
import re
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import Counter
from contextlib import closing
from pathlib import Path

from mqtt_tools import wait_for


def _console_login(url: str, user: str, password: str, page: str = "gateway") -> tuple[str, str]:
    """Log in as a browser would (cookie, CSRF token); return where it lands and ``page``."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{url}login", timeout=10) as response:
        login_page = response.read().decode()
    token = re.search(r'name="csrf" value="([^"]+)"', login_page)
    assert token, login_page[:500]
    form = {"csrf": token.group(1), "name": user, "password": password}
    with opener.open(
        f"{url}login", data=urllib.parse.urlencode(form).encode(), timeout=30
    ) as response:
        landed = str(response.geturl())
    with opener.open(f"{url}{page}", timeout=10) as response:
        return landed, response.read().decode()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}login", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_demo_shows_one_event_per_fault_and_the_cloud_verifies_the_chain(tmp_path):
    stderr = (tmp_path / "demo.stderr").open("w+")
    process = subprocess.Popen(
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
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        assert process.stdout is not None
        head = []
        for line in process.stdout:
            head.append(line)
            if line.startswith("regulator console:") or len(head) > 50:
                break
        found = re.match(
            r"technician console: (http://127\.0\.0\.1:\d+/) \(user (\S+), password (\S+)\)",
            head[-2],
        )
        assert found, "".join(head)
        url, user, password = found.groups()
        regulator = re.match(
            r"regulator console: (http://127\.0\.0\.1:\d+/regulator/) \(user (\S+), password (\S+)\)",
            head[-1],
        )
        assert regulator, "".join(head)
        # The regulator logs in with the printed account and lands on the alert list.
        regulator_landed, _ = _console_login(*regulator.groups(), page="alerts")
        assert regulator_landed.startswith(f"{regulator.group(1)}alerts"), regulator_landed
        assert wait_for(lambda: _answers(url), 60, 0.2), "the console URL does not answer"
        landed, gateway_page = _console_login(url, user, password)
        assert landed == f"{url}sensors"
        # The gateway page names the demo's cloud uplink with its connection state.
        assert re.search(r'class="uplink">cloud:\s*<span class="(ok|bad)">', gateway_page)
        rest, _ = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    stderr.seek(0)
    result = subprocess.CompletedProcess(
        process.args, process.returncode, "".join(head) + rest, stderr.read()
    )
    stderr.close()
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
    # GB 18483 judges each block of 5 samples (shortened to 2 s in the demo): every block
    # after the injection is its own exceedance.
    assert opened.pop(("exceedance", "fume-01")) >= 1
    assert opened == {
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
        held = {sha for (sha,) in cloud.execute("SELECT sha256 FROM evidence")}
    with closing(sqlite3.connect(tmp_path / "demo.db")) as db:
        confirmed = db.execute(
            "SELECT confirmed_by FROM evidence_uploads WHERE sha256 = ?", (Path(snapshot).stem,)
        ).fetchone()
    # The snapshot reached the cloud, and the gateway holds the regulator-signed receipt.
    assert Path(snapshot).stem in held
    assert confirmed is not None
    assert "demo-regulator" in confirmed[0]
    assert {(a["kind"], a["source"]) for a in alarms if a["status"] == "open"} == {
        ("exceedance", "fume-01"),
        ("sensor_stuck", "water-01"),
        ("sensor_offline", "soil-01"),
    }
