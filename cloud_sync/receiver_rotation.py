"""What an admitted key-rotation record changes for the records around it.

A rotation record at seq N (body ``{"type": "key_rotation", "new_public_key": hex}``,
signed with the key in force at N) makes the new key the only valid one from N + 1 on
(:meth:`cloud_sync.receiver_keys.KeyRegistry.key_of`). Records travel out of order
(alarms first), so when the rotation record arrives the receiver may already hold:

- records after N that were **rejected** as ``bad_signature`` because the rotation was not
  known yet: those that verify under the new key are taken back (:func:`take_back`) and
  admitted as if they had just arrived (their finding is withdrawn);
- records after N that were **admitted** under the old key: signed with a key retired
  before their seq, they are evidence of a stolen or misused old key
  (:func:`flag_retired`: finding ``retired_key``, the chain is reported tampered).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from cloud_sync.chain import verify_signature
from cloud_sync.receiver_keys import KeyRegistry
from cloud_sync.receiver_verify import finding

__all__ = ["flag_retired", "take_back"]


def flag_retired(cur: sqlite3.Cursor, keys: KeyRegistry, gateway: str, rotation_seq: int) -> int:
    """Report admitted records after ``rotation_seq`` that the new key does not sign; count."""
    flagged = 0
    for seq, rid, digest, sig in cur.execute(
        "SELECT seq, id, hash, sig FROM records WHERE gateway = ? AND seq > ?",
        (gateway, rotation_seq),
    ).fetchall():
        key = keys.key_of(gateway, seq)
        if key is not None and not verify_signature(key, digest, sig):
            finding(cur, gateway, "retired_key", seq, id=rid, rotation_seq=rotation_seq)
            flagged += 1
    return flagged


def take_back(
    cur: sqlite3.Cursor, keys: KeyRegistry, gateway: str, rotation_seq: int
) -> list[tuple[dict[str, Any], str]]:
    """Rejected ``bad_signature`` records after ``rotation_seq`` that now verify: (record, via).

    Their rejected rows and findings are removed; the caller admits them again. A record
    kept truncated (longer than the kept size) cannot be checked again and stays rejected.
    """
    back: list[tuple[dict[str, Any], str]] = []
    for n, seq, rid, text, via in cur.execute(
        "SELECT n, seq, id, record, via FROM rejected"
        " WHERE gateway = ? AND kind = 'bad_signature' AND seq > ? ORDER BY n",
        (gateway, rotation_seq),
    ).fetchall():
        try:
            record = json.loads(text)
        except ValueError:
            continue
        key = keys.key_of(gateway, seq)
        if key is None or not verify_signature(
            key, str(record.get("hash")), str(record.get("sig"))
        ):
            continue
        cur.execute("DELETE FROM rejected WHERE n = ?", (n,))
        cur.execute(
            "DELETE FROM findings WHERE n = (SELECT n FROM findings WHERE gateway = ? AND"
            " kind = 'bad_signature' AND seq = ? AND detail = ? LIMIT 1)",
            (gateway, seq, json.dumps({"id": rid}, ensure_ascii=False)),
        )
        back.append((record, str(via)))
    return back
