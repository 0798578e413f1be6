"""Only signed regulator commands act: the attacks of issue 9 against a real gateway process.

Unsigned (the attack as found: an unsigned config command moving the uplink), wrongly
signed, signed by an unknown key, expired, for another gateway, replayed (also after kill
-9 and a restart), a 200,000-bracket bomb and an oversized payload: each is refused, the
gateway keeps running, nothing changes, and each refusal is a signed record in the outbox
with its reason.
"""

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mqtt_tools import query, wait_for
from regulator_tools import (
    running_site,
)

from cloud_sync.envelope import MAX_ENVELOPE_BYTES


@pytest.fixture
def site(mosquitto, mosquitto_factory, tmp_path):
    with running_site(mosquitto, mosquitto_factory, tmp_path, "sc") as running:
        yield running


def _refusals(db):
    """Refusal audit records in the outbox, each with its chain signature."""
    rows = query(db, "SELECT body, hash, sig FROM outbox ORDER BY seq")
    out = []
    for body, digest, sig in rows:
        record = json.loads(body)
        if record.get("type") == "command" and "refused" in record:
            out.append((record, digest, sig))
    return out


def test_forged_foreign_expired_and_malicious_commands_are_refused_and_recorded(site):
    cloud, db, path, process = site["cloud"], site["db"], site["path"], site["process"]
    original = path.read_text()
    attacker = json.loads(json.dumps(site["data"]))
    attacker["cloud"]["uplinks"][0]["host"] = "attacker.example"
    now = int(time.time())
    intruder = Ed25519PrivateKey.generate()

    _, forged = cloud.signed("ping", key=intruder)
    forged_json = json.loads(forged)
    # Signed by the intruder but claiming the regulator's key.
    forged_json["key"] = site["data"]["cloud"]["regulator_keys"][0]["public_key"]
    attempts = {
        "unsigned": json.dumps(
            {"id": "evil-1", "type": "config", "args": {"config": attacker}}
        ).encode(),
        "unknown_key": cloud.signed("config", {"config": attacker}, key=intruder)[1],
        "bad_signature": json.dumps(forged_json).encode(),
        "expired": cloud.signed("ping", issued_at=now - 600, ttl=300)[1],
        "wrong_gateway": cloud.signed("ping", gateway="gw-elsewhere")[1],
        "too_deep": b"[" * 200_000,
        "too_large": b" " * (MAX_ENVELOPE_BYTES + 10),
    }
    for reason, payload in attempts.items():
        reply = cloud.send(payload)
        assert reply["ok"] is False, reason
        assert reply["refused"] == reason, reply
    assert process.alive()
    assert path.read_text() == original
    assert not path.with_name(path.name + ".pending").exists()
    # Each refusal is in the signed chain with its reason (the ready() probes too).
    assert wait_for(lambda: {r["refused"] for r, _, _ in _refusals(db)} >= set(attempts), 10)
    for record, digest, sig in _refusals(db):
        assert digest
        assert sig
        assert record["ok"] is False
        assert record["error"].startswith(record["refused"])
    # The gateway still obeys its regulator.
    assert cloud.command("ping")["ok"] is True


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "kill9"])
def test_a_replayed_command_is_refused_also_after_a_restart(site, how):
    cloud, db, process = site["cloud"], site["db"], site["process"]
    command_id, payload = cloud.signed(
        "maintenance", {"sensor_id": "noise-01", "on": True}, command_id="once"
    )
    assert cloud.send(payload, command_id)["ok"] is True
    again = cloud.send(payload, command_id)
    assert (again["ok"], again["refused"]) == (False, "replayed")
    process.stop(how)
    process.start()
    cloud.ready()
    after = cloud.send(payload, command_id)
    assert (after["ok"], after["refused"]) == (False, "replayed")
    maintenance = query(db, "SELECT status FROM events WHERE kind = 'maintenance'")
    assert len(maintenance) == 1, "the replays did not act"

    def replays():
        return [r for r, _, _ in _refusals(db) if r["refused"] == "replayed"]

    assert wait_for(lambda: len(replays()) == 2, 10)
    assert all(r["id"] == "once" for r in replays())


def test_the_regulator_cli_signs_and_sends_and_keygen_never_overwrites(site, tmp_path):
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )
    from regulator_tools import REGULATOR

    from cloud_sync.config import RegulatorKeyConfig

    cloud = site["cloud"]
    key_file = tmp_path / "regulator.key"
    key_file.write_bytes(REGULATOR.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    key_file.chmod(0o600)
    port = str(site["data"]["cloud"]["uplinks"][0]["port"])
    gateway_id = site["data"]["gateway"]["id"]
    base = [sys.executable, "-m", "edge.app.cli", "cloud", "command"]
    target = ["--key", str(key_file), "--gateway", gateway_id, "--mqtt-port", port]
    done = subprocess.run(
        [*base, "maintenance", *target, "--sensor", "noise-01", "--on", "--why", "CLI"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"sensor_id": "noise-01", "mode": "maintenance"}
    refused = subprocess.run(
        [*base, "ping", *target, "--ttl", "100000"], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2, "a lifetime over a day is refused before sending"
    assert cloud.command("ping")["ok"]

    new_key = tmp_path / "new.key"
    keygen = [sys.executable, "-m", "edge.app.cli", "cloud", "keygen", "--key", str(new_key)]
    made = subprocess.run([*keygen, "--name", "eeb"], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    assert new_key.stat().st_mode & 0o777 == 0o600
    entry = made.stdout.strip().splitlines()[-1].strip().removeprefix("- ")
    parsed = RegulatorKeyConfig.model_validate(yaml.safe_load(entry))
    assert parsed.name == "eeb"
    before = new_key.read_bytes()
    again = subprocess.run(keygen, capture_output=True, text=True, check=False)
    assert again.returncode == 2
    assert new_key.read_bytes() == before
