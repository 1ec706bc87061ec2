"""Databases as earlier versions left them, for the upgrade tests: the schema up to, not
including, the migration that brought a given table, column or trigger."""

from __future__ import annotations

import sqlite3

from jupyter_jobs.store.schema import MIGRATIONS


def migration_bringing(text: str) -> int:
    """The index of the first migration with a statement that mentions `text`."""
    return next(i for i, m in enumerate(MIGRATIONS) if any(text in str(s) for s in m))


def schema_before(conn: sqlite3.Connection, text: str) -> int:
    """Apply to `conn` every migration before `migration_bringing(text)`, record that version,
    and return it (later migrations may follow the one named: the upgrade runs them all)."""
    version = migration_bringing(text)
    for migration in MIGRATIONS[:version]:
        for step in migration:
            step(conn) if callable(step) else conn.execute(step)
    conn.execute(f"PRAGMA user_version = {version}")
    return version
