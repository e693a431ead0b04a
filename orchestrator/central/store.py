"""The store: SQLite in WAL mode, the central daemon's memory across restarts.

What it keeps: operators' overrides and curtailment windows and the audit log of every
change to them, plan
generations, the switch journal (every command: when, why, result), each GPU's last final
switch event (what it runs, in the agent's order: `gpubook`), the SLA ledger, and the last
good market quotes. Each record is written before the action it records: a
command row is committed as `publishing` before the command goes to the broker, so a
daemon killed at any moment finds on restart every command that might have gone out.

Durability: WAL with `synchronous=FULL`, one short transaction per event (a whole plan's
commands are one transaction). Schema migrations are numbered steps applied in order,
recorded in `PRAGMA user_version`; a database newer than this code is refused rather
than guessed at. The store is synchronous and cheap (milliseconds); the daemon calls it
from the event loop between awaits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.domain import SwitchState
from orchestrator.errors import PermanentError

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE overrides (
        id TEXT PRIMARY KEY,
        gpu TEXT NOT NULL,
        workload TEXT NOT NULL,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL,
        created_at_s REAL NOT NULL,
        expires_at_s REAL,
        deleted_at_s REAL,
        deleted_by TEXT
    );
    CREATE INDEX overrides_live ON overrides (deleted_at_s);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_s REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE plans (
        generation INTEGER PRIMARY KEY,
        at_s REAL NOT NULL,
        trigger TEXT NOT NULL,
        net_usd_per_hour REAL NOT NULL,
        switches INTEGER NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE TABLE commands (
        command_id TEXT PRIMARY KEY,
        generation INTEGER NOT NULL,
        gpu TEXT NOT NULL,
        workload TEXT NOT NULL,
        previous TEXT,
        reason TEXT NOT NULL,
        issued_at_s REAL NOT NULL,
        expires_at_s REAL NOT NULL,
        state TEXT NOT NULL,
        payload BLOB NOT NULL,
        acked INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 1,
        outcome TEXT NOT NULL DEFAULT '',
        finished_at_s REAL
    );
    CREATE INDEX commands_open ON commands (state);
    CREATE TABLE sla_ledger (
        contract TEXT NOT NULL,
        period_start_s REAL NOT NULL,
        committed_gpu_hours REAL NOT NULL,
        delivered_gpu_hours REAL NOT NULL,
        PRIMARY KEY (contract, period_start_s)
    );
    CREATE TABLE market_quotes (
        key TEXT NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        value REAL NOT NULL,
        fetched_at_s REAL NOT NULL,
        staleness_s REAL NOT NULL,
        provenance TEXT NOT NULL,
        PRIMARY KEY (key, source)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: each GPU's last final switch event (what it runs, in the agent's order of reports)
    """
    CREATE TABLE gpu_facts (
        gpu TEXT PRIMARY KEY,
        boot_s REAL NOT NULL,
        seq INTEGER NOT NULL,
        at_s REAL NOT NULL,
        workload TEXT,
        since_s REAL,
        state TEXT NOT NULL,
        command_id TEXT NOT NULL
    );
    """,
    # 3: curtailment windows (site cap X kW from T1 to T2), kept after they end for the record
    """
    CREATE TABLE curtailments (
        id TEXT PRIMARY KEY,
        cap_kw REAL NOT NULL,
        start_s REAL NOT NULL,
        end_s REAL NOT NULL,
        reason TEXT NOT NULL,
        source TEXT NOT NULL,
        external_id TEXT,
        actor TEXT NOT NULL,
        created_at_s REAL NOT NULL,
        cancelled_at_s REAL,
        cancelled_by TEXT,
        forecast TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX curtailments_end ON curtailments (end_s);
    CREATE UNIQUE INDEX curtailments_feed ON curtailments (source, external_id)
        WHERE external_id IS NOT NULL;
    """,
)

OPEN_COMMAND_STATES = (SwitchState.PUBLISHING.value, SwitchState.IN_FLIGHT.value)
GENERATION_TERM_BITS = 32  # a plan generation is term << 32 | plans made in the term

# key, source, kind, value, fetched_at_s, staleness_s, provenance
QuoteRow = tuple[str, str, str, float, float, float, dict[str, Any]]
# gpu, boot_s, seq, at_s, workload, since_s, state, command_id
FactRow = tuple[str, float, int, float, str | None, float | None, str, str]


class StoreError(PermanentError):
    """The database cannot be used (newer schema, corrupt file)."""


@dataclass(frozen=True, slots=True)
class OverrideRow:
    id: str
    gpu: str
    workload: str
    reason: str
    actor: str
    created_at_s: float
    expires_at_s: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "gpu": self.gpu,
            "workload": self.workload,
            "reason": self.reason,
            "by": self.actor,
            "created_at_s": self.created_at_s,
            "expires_at_s": self.expires_at_s,
        }


@dataclass(frozen=True, slots=True)
class CurtailmentRow:
    """One curtailment window as stored; `cancelled_at_s` set once cancelled."""

    id: str
    cap_kw: float
    start_s: float
    end_s: float
    reason: str
    source: str  # "operator" or the feed's name
    external_id: str | None  # the feed's own id for the window
    actor: str
    created_at_s: float
    cancelled_at_s: float | None = None
    cancelled_by: str | None = None
    forecast: dict[str, Any] | None = None  # the newest SLA forecast, None before one

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cap_kw": self.cap_kw,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "reason": self.reason,
            "source": self.source,
            "external_id": self.external_id,
            "by": self.actor,
            "created_at_s": self.created_at_s,
            "cancelled_at_s": self.cancelled_at_s,
            "cancelled_by": self.cancelled_by,
        }


_SELECT_CURTAILMENTS = (
    "SELECT id, cap_kw, start_s, end_s, reason, source, external_id, actor, created_at_s,"
    " cancelled_at_s, cancelled_by, forecast FROM curtailments"
)


def _curtailment_row(r: tuple[Any, ...]) -> CurtailmentRow:
    forecast = json.loads(r[11]) if r[11] else None
    return CurtailmentRow(
        id=r[0],
        cap_kw=r[1],
        start_s=r[2],
        end_s=r[3],
        reason=r[4],
        source=r[5],
        external_id=r[6],
        actor=r[7],
        created_at_s=r[8],
        cancelled_at_s=r[9],
        cancelled_by=r[10],
        forecast=forecast or None,
    )


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One switch command, from its planning to its end; a row of the journal."""

    command_id: str
    generation: int
    gpu: str
    workload: str
    previous: str | None
    reason: str
    issued_at_s: float
    expires_at_s: float
    state: str  # a `domain.SwitchState` value
    payload: bytes = b""
    acked: bool = False
    attempts: int = 1
    outcome: str = ""
    finished_at_s: float | None = None
    next_retry_s: float = 0.0  # not stored: a restart retries at once
    step: str | None = None  # not stored

    def to_json(self) -> dict[str, object]:
        return {
            "command_id": self.command_id,
            "generation": self.generation,
            "gpu": self.gpu,
            "workload": self.workload,
            "previous": self.previous,
            "reason": self.reason,
            "issued_at_s": self.issued_at_s,
            "state": self.state,
            "acked": self.acked,
            "attempts": self.attempts,
            "step": self.step,
            "outcome": self.outcome,
            "finished_at_s": self.finished_at_s,
        }


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(
                f"cannot create the store's folder {path.parent}: {error.strerror}"
                " (set [store] path to a writable place)"
            ) from error
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot use the store {path}: {error}") from error

    def close(self) -> None:
        self.db.close()

    @property
    def schema_version(self) -> int:
        version: int = self.db.execute("PRAGMA user_version").fetchone()[0]
        return version

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError(
                f"the store {self.path} has schema {current}, newer than this version "
                f"understands ({len(MIGRATIONS)}): upgrade the orchestrator"
            )
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            with self.transaction():
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ overrides + audit

    def add_override(self, row: OverrideRow, *, audit_detail: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO overrides (id, gpu, workload, reason, actor, created_at_s,"
                " expires_at_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.gpu,
                    row.workload,
                    row.reason,
                    row.actor,
                    row.created_at_s,
                    row.expires_at_s,
                ),
            )
            self._audit(db, row.created_at_s, row.actor, "override.create", audit_detail)

    def delete_override(self, override_id: str, *, actor: str, at_s: float) -> OverrideRow | None:
        with self.transaction() as db:
            found = self._override(db, override_id)
            if found is None:
                return None
            db.execute(
                "UPDATE overrides SET deleted_at_s = ?, deleted_by = ? WHERE id = ?",
                (at_s, actor, override_id),
            )
            self._audit(db, at_s, actor, "override.delete", found.to_json())
            return found

    def live_overrides(self, now_s: float) -> list[OverrideRow]:
        rows = self.db.execute(
            "SELECT id, gpu, workload, reason, actor, created_at_s, expires_at_s FROM overrides"
            " WHERE deleted_at_s IS NULL AND (expires_at_s IS NULL OR expires_at_s > ?)"
            " ORDER BY created_at_s",
            (now_s,),
        ).fetchall()
        return [OverrideRow(*row) for row in rows]

    def _override(self, db: sqlite3.Connection, override_id: str) -> OverrideRow | None:
        row = db.execute(
            "SELECT id, gpu, workload, reason, actor, created_at_s, expires_at_s FROM overrides"
            " WHERE id = ? AND deleted_at_s IS NULL",
            (override_id,),
        ).fetchone()
        return OverrideRow(*row) if row else None

    def audit(self, at_s: float, actor: str, action: str, detail: dict[str, Any]) -> None:
        with self.transaction() as db:
            self._audit(db, at_s, actor, action, detail)

    @staticmethod
    def _audit(
        db: sqlite3.Connection, at_s: float, actor: str, action: str, detail: dict[str, Any]
    ) -> None:
        db.execute(
            "INSERT INTO audit (at_s, actor, action, detail) VALUES (?, ?, ?, ?)",
            (at_s, actor, action, json.dumps(detail, sort_keys=True)),
        )

    def audit_log(self, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, at_s, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [
            {"id": r[0], "at_s": r[1], "by": r[2], "action": r[3], "detail": json.loads(r[4])}
            for r in rows
        ]

    # ------------------------------------------------------------------ curtailment windows

    def add_curtailment(self, row: CurtailmentRow, *, audit_detail: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO curtailments (id, cap_kw, start_s, end_s, reason, source, external_id,"
                " actor, created_at_s, cancelled_at_s, cancelled_by, forecast)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.cap_kw,
                    row.start_s,
                    row.end_s,
                    row.reason,
                    row.source,
                    row.external_id,
                    row.actor,
                    row.created_at_s,
                    None,
                    None,
                    json.dumps(row.forecast or {}, sort_keys=True),
                ),
            )
            self._audit(db, row.created_at_s, row.actor, "curtailment.create", audit_detail)

    def change_curtailment(
        self, row: CurtailmentRow, *, at_s: float, audit_detail: dict[str, Any]
    ) -> None:
        """A window's cap, times and reason as its feed now gives them (same id)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE curtailments SET cap_kw = ?, start_s = ?, end_s = ?, reason = ?"
                " WHERE id = ?",
                (row.cap_kw, row.start_s, row.end_s, row.reason, row.id),
            )
            self._audit(db, at_s, row.actor, "curtailment.change", audit_detail)

    def cancel_curtailment(
        self, window_id: str, *, actor: str, at_s: float, why: str = ""
    ) -> CurtailmentRow | None:
        """Cancel a window not cancelled yet; None when there is none by that id."""
        with self.transaction() as db:
            found = db.execute(
                _SELECT_CURTAILMENTS + " WHERE id = ? AND cancelled_at_s IS NULL",
                (window_id,),
            ).fetchone()
            if found is None:
                return None
            db.execute(
                "UPDATE curtailments SET cancelled_at_s = ?, cancelled_by = ? WHERE id = ?",
                (at_s, actor, window_id),
            )
            row = _curtailment_row(found)
            detail = {**row.to_json(), "why": why} if why else row.to_json()
            self._audit(db, at_s, actor, "curtailment.cancel", detail)
            return row

    def save_curtailment_forecast(self, window_id: str, forecast: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE curtailments SET forecast = ? WHERE id = ?",
                (json.dumps(forecast, sort_keys=True), window_id),
            )

    def live_curtailments(self, now_s: float) -> list[CurtailmentRow]:
        """Windows not cancelled that have not ended, by start."""
        rows = self.db.execute(
            _SELECT_CURTAILMENTS
            + " WHERE cancelled_at_s IS NULL AND end_s > ? ORDER BY start_s, id",
            (now_s,),
        ).fetchall()
        return [_curtailment_row(r) for r in rows]

    def curtailments(self, limit: int) -> list[CurtailmentRow]:
        """Every window, ended and cancelled ones too, the latest ending first."""
        rows = self.db.execute(
            _SELECT_CURTAILMENTS + " ORDER BY end_s DESC, id LIMIT ?",
            (limit,),
        ).fetchall()
        return [_curtailment_row(r) for r in rows]

    def feed_curtailment(self, source: str, external_id: str) -> CurtailmentRow | None:
        row = self.db.execute(
            _SELECT_CURTAILMENTS + " WHERE source = ? AND external_id = ?",
            (source, external_id),
        ).fetchone()
        return _curtailment_row(row) if row else None

    # ------------------------------------------------------------------ plans + commands

    def record_plan(
        self,
        *,
        generation: int,
        at_s: float,
        trigger: str,
        net_usd_per_hour: float,
        commands: Iterable[CommandRecord],
        summary: dict[str, Any],
        ended: Iterable[CommandRecord] = (),
    ) -> None:
        """One transaction: the plan, its commands (state `publishing`), before any is sent,
        and the new state of the commands it ended (`ended`: superseded by it)."""
        commands = list(commands)
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO plans (generation, at_s, trigger, net_usd_per_hour,"
                " switches, summary) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    generation,
                    at_s,
                    trigger,
                    net_usd_per_hour,
                    len(commands),
                    json.dumps(summary, sort_keys=True),
                ),
            )
            db.executemany(
                "INSERT INTO commands (command_id, generation, gpu, workload, previous, reason,"
                " issued_at_s, expires_at_s, state, payload, acked, attempts, outcome,"
                " finished_at_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_command_tuple(c) for c in commands],
            )
            _update_commands(db, ended)

    def add_commands(self, commands: Iterable[CommandRecord]) -> None:
        """Commands released after their plan was written (state `publishing`), in one
        transaction, before any of them is sent."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO commands (command_id, generation, gpu, workload, previous, reason,"
                " issued_at_s, expires_at_s, state, payload, acked, attempts, outcome,"
                " finished_at_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_command_tuple(c) for c in commands],
            )

    def update_command(self, row: CommandRecord) -> None:
        self.update_commands([row])

    def update_commands(
        self, rows: Iterable[CommandRecord], *, facts: Iterable[FactRow] = ()
    ) -> None:
        """Each command's new state, and the GPU facts their final events set, all in one
        transaction (one fsync, not one per row)."""
        with self.transaction() as db:
            _update_commands(db, rows)
            db.executemany(
                "INSERT OR REPLACE INTO gpu_facts (gpu, boot_s, seq, at_s, workload, since_s,"
                " state, command_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                facts,
            )

    def load_facts(self) -> list[FactRow]:
        rows = self.db.execute(
            "SELECT gpu, boot_s, seq, at_s, workload, since_s, state, command_id FROM gpu_facts"
        ).fetchall()
        return [tuple(r) for r in rows]

    def open_commands(self) -> list[CommandRecord]:
        rows = self.db.execute(
            "SELECT command_id, generation, gpu, workload, previous, reason, issued_at_s,"
            " expires_at_s, state, payload, acked, attempts, outcome, finished_at_s"
            # oldest first, by generation (it only grows, across restarts too): of two open
            # commands for one GPU, `Dispatcher.restore` keeps the later
            " FROM commands WHERE state IN (?, ?) ORDER BY generation, issued_at_s",
            OPEN_COMMAND_STATES,
        ).fetchall()
        return [_command_row(r) for r in rows]

    def command(self, command_id: str) -> CommandRecord | None:
        row = self.db.execute(
            "SELECT command_id, generation, gpu, workload, previous, reason, issued_at_s,"
            " expires_at_s, state, payload, acked, attempts, outcome, finished_at_s"
            " FROM commands WHERE command_id = ?",
            (command_id,),
        ).fetchone()
        return None if row is None else _command_row(row)

    def recent_commands(self, limit: int) -> list[CommandRecord]:
        rows = self.db.execute(
            "SELECT command_id, generation, gpu, workload, previous, reason, issued_at_s,"
            " expires_at_s, state, payload, acked, attempts, outcome, finished_at_s"
            " FROM commands ORDER BY issued_at_s DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_command_row(r) for r in rows]

    def recent_plans(self, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT generation, at_s, trigger, net_usd_per_hour, switches, summary FROM plans"
            " ORDER BY generation DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {
                "generation": r[0],
                "at_s": r[1],
                "trigger": r[2],
                "net_usd_per_hour": r[3],
                "switches": r[4],
                "summary": json.loads(r[5]),
            }
            for r in rows
        ]

    def last_generation(self) -> int:
        row = self.db.execute("SELECT MAX(generation) FROM plans").fetchone()
        return int(row[0] or 0)

    def begin_term(self) -> int:
        """Start a new leadership term; return the generation its plans count up from.

        A plan generation is `term * 2**32 + n`. Each daemon that takes charge of the site
        (today: each start of `serve`; with a leader lease: each daemon that takes the lease)
        increments the term in the store in one transaction, so every generation it issues
        is above every generation any earlier term could issue, even one a deposed leader
        keeps counting in memory. Agents refuse a command older than the newest generation
        they acted on, so once a node has acted on the new leader's command, the old
        leader's orders to it are refused (see docs/scaling.md).
        """
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'term'").fetchone()
            term = (int(row[0]) if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('term', ?)", (str(term),))
        return max(self.last_generation(), term << GENERATION_TERM_BITS)

    # ------------------------------------------------------------------ SLA ledger

    def save_ledger(
        self, rows: Iterable[tuple[str, float, float, float]], last_accrual_s: float | None
    ) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO sla_ledger (contract, period_start_s,"
                " committed_gpu_hours, delivered_gpu_hours) VALUES (?, ?, ?, ?)",
                list(rows),
            )
            if last_accrual_s is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('sla_last_accrual_s', ?)",
                    (repr(last_accrual_s),),
                )

    def load_ledger(self) -> tuple[list[tuple[str, float, float, float]], float | None]:
        rows = self.db.execute(
            "SELECT contract, period_start_s, committed_gpu_hours, delivered_gpu_hours"
            " FROM sla_ledger"
        ).fetchall()
        meta = self.db.execute("SELECT value FROM meta WHERE key = 'sla_last_accrual_s'").fetchone()
        return [tuple(r) for r in rows], (float(meta[0]) if meta else None)

    # ------------------------------------------------------------------ market

    def save_quotes(
        self, quotes: Iterable[tuple[str, str, str, float, float, float, dict[str, Any]]]
    ) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO market_quotes (key, source, kind, value, fetched_at_s,"
                " staleness_s, provenance) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*q[:6], json.dumps(q[6], sort_keys=True)) for q in quotes],
            )

    def load_quotes(self) -> list[QuoteRow]:
        rows = self.db.execute(
            "SELECT key, source, kind, value, fetched_at_s, staleness_s, provenance"
            " FROM market_quotes"
        ).fetchall()
        return [(*r[:6], json.loads(r[6])) for r in rows]


def _update_commands(db: sqlite3.Connection, rows: Iterable[CommandRecord]) -> None:
    db.executemany(
        "UPDATE commands SET state = ?, acked = ?, attempts = ?, outcome = ?,"
        " finished_at_s = ? WHERE command_id = ?",
        [
            (
                row.state,
                int(row.acked),
                row.attempts,
                row.outcome,
                row.finished_at_s,
                row.command_id,
            )
            for row in rows
        ],
    )


def _command_tuple(c: CommandRecord) -> tuple[Any, ...]:
    return (
        c.command_id,
        c.generation,
        c.gpu,
        c.workload,
        c.previous,
        c.reason,
        c.issued_at_s,
        c.expires_at_s,
        c.state,
        c.payload,
        int(c.acked),
        c.attempts,
        c.outcome,
        c.finished_at_s,
    )


def _command_row(r: tuple[Any, ...]) -> CommandRecord:
    return CommandRecord(
        command_id=r[0],
        generation=r[1],
        gpu=r[2],
        workload=r[3],
        previous=r[4],
        reason=r[5],
        issued_at_s=r[6],
        expires_at_s=r[7],
        state=r[8],
        payload=bytes(r[9]),
        acked=bool(r[10]),
        attempts=r[11],
        outcome=r[12],
        finished_at_s=r[13],
    )
