"""The store: migrations, and every kind of record surviving a reopen."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.central.store import MIGRATIONS, CommandRecord, OverrideRow, Store, StoreError


def command(command_id: str, *, state: str = "publishing", gpu: str = "rig:0") -> CommandRecord:
    return CommandRecord(
        command_id=command_id,
        generation=7,
        gpu=gpu,
        workload="mine:kawpow",
        previous="ai:spot",
        reason="switch to mine:kawpow: +$0.05/h",
        issued_at_s=100.0,
        expires_at_s=400.0,
        state=state,
        payload=b'{"schema":1}',
    )


def test_a_new_store_is_migrated_and_reopening_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "serve.sqlite3"
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    again = Store(path)
    assert again.schema_version == len(MIGRATIONS)
    again.close()


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "serve.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema 99, newer"):
        Store(path)


def test_overrides_and_their_audit_survive_a_reopen_and_expire(tmp_path: Path) -> None:
    path = tmp_path / "serve.sqlite3"
    store = Store(path)
    store.add_override(
        OverrideRow("o1", "rig:0", "ai:acme", "customer demo", "alice", 10.0, 1000.0),
        audit_detail={"gpus": ["rig:0"]},
    )
    store.add_override(
        OverrideRow("o2", "rig:1", "idle", "maintenance", "bob", 11.0, None),
        audit_detail={"gpus": ["rig:1"]},
    )
    store.close()
    store = Store(path)
    assert [o.id for o in store.live_overrides(500.0)] == ["o1", "o2"]
    assert [o.id for o in store.live_overrides(1000.0)] == ["o2"]
    deleted = store.delete_override("o2", actor="carol", at_s=20.0)
    assert deleted is not None
    assert deleted.reason == "maintenance"
    assert store.delete_override("o2", actor="carol", at_s=21.0) is None
    assert store.live_overrides(30.0)[0].id == "o1"
    log = store.audit_log(10)
    assert [(e["action"], e["by"]) for e in log] == [
        ("override.delete", "carol"),
        ("override.create", "bob"),
        ("override.create", "alice"),
    ]


def test_commands_are_journaled_before_publishing_and_open_ones_come_back(tmp_path: Path) -> None:
    path = tmp_path / "serve.sqlite3"
    store = Store(path)
    store.record_plan(
        generation=7,
        at_s=100.0,
        trigger="price",
        net_usd_per_hour=12.5,
        commands=[command("a" * 32), command("b" * 32, gpu="rig:1")],
        summary={"switches": 2},
    )
    store.update_command(command("b" * 32, state="done", gpu="rig:1"))
    store.close()
    store = Store(path)
    assert store.last_generation() == 7
    (open_command,) = store.open_commands()
    assert open_command.command_id == "a" * 32
    assert open_command.payload == b'{"schema":1}'
    assert [c.state for c in store.recent_commands(10)] == ["publishing", "done"]
    assert store.recent_plans(1)[0]["summary"] == {"switches": 2}


def test_an_ended_command_is_found_by_id_however_many_came_after(tmp_path: Path) -> None:
    """explain's `last_switch` names the switch's target: at a large site the GPU's last switch
    can be thousands of commands back, beyond any journal kept in memory."""
    store = Store(tmp_path / "serve.sqlite3")
    first = replace(command("f" * 32, state="rolled_back"), issued_at_s=1.0)
    later = [
        replace(command(f"{n:032d}", gpu=f"rig:{n}"), issued_at_s=2.0 + n) for n in range(1500)
    ]
    store.record_plan(
        generation=7,
        at_s=100.0,
        trigger="price",
        net_usd_per_hour=1.0,
        commands=[first, *later],
        summary={},
    )
    found = store.command("f" * 32)
    assert found is not None
    assert (found.state, found.workload, found.gpu) == ("rolled_back", "mine:kawpow", "rig:0")
    assert store.command("0" * 31 + "x") is None
    store.close()


def test_the_ledger_and_quotes_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "serve.sqlite3"
    store = Store(path)
    store.save_ledger([("acme", 0.0, 48.0, 47.5)], 123.0)
    store.save_ledger([("acme", 0.0, 50.0, 49.0)], 124.0)
    store.save_quotes([("kawpow", "nicehash", "hashprice", 1e-8, 100.0, 600.0, {"source": "n"})])
    store.close()
    store = Store(path)
    assert store.load_ledger() == ([("acme", 0.0, 50.0, 49.0)], 124.0)
    assert store.load_quotes() == [
        ("kawpow", "nicehash", "hashprice", 1e-8, 100.0, 600.0, {"source": "n"})
    ]


def test_an_unwritable_store_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the store's folder"):
        Store(blocker / "sub" / "serve.sqlite3")
