"""Migration 3: a store written by the previous version gains the curtailment table, keeps
what it had, and keeps every window (cancelled and ended ones too) for the record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrator.central.store import MIGRATIONS, CurtailmentRow, Store


def test_a_version_2_store_is_migrated_and_keeps_its_overrides(tmp_path: Path) -> None:
    path = tmp_path / "serve.sqlite3"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:2]:
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
    db.execute(
        "INSERT INTO overrides (id, gpu, workload, reason, actor, created_at_s)"
        " VALUES ('o1', '[\"rig:0\"]', 'idle', 'PSU', 'alice', 1.0)"
    )
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()

    store = Store(path)
    assert store.schema_version == len(MIGRATIONS) >= 3
    assert [o.id for o in store.live_overrides(0.0)] == ["o1"]
    row = CurtailmentRow("w1", 700.0, 100.0, 200.0, "EEA1", "operator", None, "alice", 50.0)
    store.add_curtailment(row, audit_detail=row.to_json())
    feed = CurtailmentRow("w2", 500.0, 150.0, 300.0, "DR", "utility", "evt-1", "utility", 60.0)
    store.add_curtailment(feed, audit_detail=feed.to_json())
    store.save_curtailment_forecast("w1", {"checked_at_s": 60.0, "ok": True, "shortfalls": []})
    assert store.cancel_curtailment("w2", actor="bob", at_s=70.0, why="test") is not None
    assert store.cancel_curtailment("w2", actor="bob", at_s=71.0) is None
    store.close()

    again = Store(path)
    assert [r.id for r in again.live_curtailments(120.0)] == ["w1"]
    assert again.live_curtailments(200.0) == []  # ended
    kept = {r.id: r for r in again.curtailments(10)}
    assert kept["w1"].forecast == {"checked_at_s": 60.0, "ok": True, "shortfalls": []}
    assert (kept["w2"].cancelled_by, kept["w2"].external_id) == ("bob", "evt-1")
    assert again.feed_curtailment("utility", "evt-1") == kept["w2"]
    actions = [e["action"] for e in again.audit_log(10)]
    assert actions == ["curtailment.cancel", "curtailment.create", "curtailment.create"]
