"""What one write transaction did: its moves, the records they produced, the files it wrote.

Every status change goes through `Tx.move`, checked against `models.TRANSITIONS`; what the
transaction did is kept here so that, after the commit, the store can tell subscribers in order
(`events`, `snapshots`) and, after a rollback, remove the files it wrote (`written`) and put
back the files it took (`adopted`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IllegalTransition
from ..models import TERMINAL, Job, Status, can_move
from . import schema


@dataclass
class Tx:
    """One write transaction, for what follows its commit (or rollback)."""

    conn: sqlite3.Connection
    now: float
    #: (what, job id, previous status) in order; one "transition" per job (the first previous)
    events: list[tuple[str, int, Status | None]] = field(default_factory=list)
    snapshots: dict[int, Job] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    #: (where it is now, where it came from) of each incoming file a job took
    adopted: list[tuple[Path, Path]] = field(default_factory=list)
    obsolete: list[Path] = field(default_factory=list)
    doomed_jobs: list[int] = field(default_factory=list)
    #: jobs that reached a terminal status: their pending dependents are settled before commit
    finished: list[int] = field(default_factory=list)
    moved: set[int] = field(default_factory=set)
    #: claims given back (no status changes: they were queued all along): others may take them
    released: bool = False

    def record(self, what: str, job_id: int, previous: Status | None = None) -> None:
        """Note a change to tell subscribers about after the commit."""
        if what == "transition":
            if job_id in self.moved:
                return
            self.moved.add(job_id)
        self.events.append((what, job_id, previous))

    def move(self, job_id: int, current: Status, target: Status, **columns: Any) -> None:
        """The one place a status changes: checked against the transition table, recorded."""
        if not can_move(current, target):
            raise IllegalTransition.move(job_id, current, target)
        self.update(job_id, status=target.value, **columns)
        self.record("transition", job_id, current)
        if target in TERMINAL:
            self.finished.append(job_id)

    def update(self, job_id: int, **columns: Any) -> None:
        """Set columns of one row (a status goes through `move`)."""
        assignments = ", ".join(f"{name} = ?" for name in columns)
        self.conn.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ?", (*columns.values(), job_id)
        )

    def snapshot(self) -> None:
        """Load the final state of every job the transaction touched (before COMMIT)."""
        missing = {e[1] for e in self.events if e[1] not in self.snapshots}
        if missing:
            self.snapshots.update(schema.load(self.conn, missing))

    def load_ended(self, ids: list[int]) -> None:
        """Load jobs whose attempt ended without a status change (a claim given back or
        requeued before it started): they have no snapshot yet."""
        self.snapshots.update(schema.load(self.conn, [i for i in ids if i not in self.snapshots]))
