"""Job types registered from kernels, kept in the job database so that they outlive the kernel
and the server (`job_types.py` says what a type is; installed types are not kept here).

A row holds the type's name, JSON schema and description, who registered it and where its jobs
run (the kernel's interpreter and working directory), and the dill bytes of its run and
summarize functions, which the store hands out as opaque bytes and nothing here loads.
Registering a name again replaces the row (a notebook's cell run twice). `TypeVerbs` is mixed
into `Store`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from ..errors import JobTypeNotFound
from ..job_types import REGISTERED, JobType
from ..models import now

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .connection import Database
    from .transaction import Tx

COLUMNS = (
    "name", "description", "schema", "summarize", "owner", "interpreter", "cwd", "created_at",
)  # fmt: skip
SELECT = f"SELECT {', '.join(COLUMNS)} FROM job_types"


def _from_row(row: tuple[Any, ...]) -> JobType:
    values = dict(zip(COLUMNS, row, strict=True))
    return JobType(
        name=values["name"],
        schema=json.loads(values["schema"]),
        description=values["description"],
        source=REGISTERED,
        has_summarize=bool(values["summarize"]),
        owner=values["owner"],
        interpreter=values["interpreter"],
        cwd=values["cwd"],
        created_at=values["created_at"],
    )


def load(conn: sqlite3.Connection, name: str) -> JobType:
    row = conn.execute(f"{SELECT} WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise JobTypeNotFound.named(name)
    return _from_row(row)


class TypeVerbs:
    """The job type verbs of `Store` (the server, `JobQueue`, the CLI)."""

    _db: Database

    def _tx(self) -> AbstractContextManager[Tx]:  # provided by Store
        raise NotImplementedError

    def put_type(self, job_type: JobType, functions: bytes) -> JobType:
        """Keep a kernel's type (a checked `JobType`) with its functions' bytes, replacing
        one of the same name; the stored type."""
        with self._tx() as tx:
            tx.conn.execute(
                "INSERT INTO job_types (name, description, schema, summarize, owner, "
                "interpreter, cwd, functions, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET description = excluded.description, "
                "schema = excluded.schema, summarize = excluded.summarize, "
                "owner = excluded.owner, interpreter = excluded.interpreter, cwd = excluded.cwd, "
                "functions = excluded.functions, created_at = excluded.created_at",
                (
                    job_type.name, job_type.description, json.dumps(job_type.schema),
                    int(job_type.has_summarize), job_type.owner, job_type.interpreter,
                    job_type.cwd, bytes(functions), now(),
                ),
            )  # fmt: skip
            return load(tx.conn, job_type.name)

    def get_type(self, name: str) -> JobType:
        """A kernel's type by name (`JobTypeNotFound` if none)."""
        with self._db.read() as conn:
            return load(conn, name)

    def types(self) -> list[JobType]:
        """Every type kernels registered, by name."""
        with self._db.read() as conn:
            return [_from_row(r) for r in conn.execute(f"{SELECT} ORDER BY name").fetchall()]

    def type_functions(self, name: str) -> tuple[JobType, bytes]:
        """A kernel's type and its functions' bytes (opaque: for a typed job's payload)."""
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {', '.join(COLUMNS)}, functions FROM job_types WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise JobTypeNotFound.named(name)
        return _from_row(row[:-1]), bytes(row[-1])

    def delete_type(self, name: str) -> None:
        """Forget a kernel's type; jobs already submitted keep their copy of it."""
        with self._tx() as tx:
            if tx.conn.execute("DELETE FROM job_types WHERE name = ?", (name,)).rowcount == 0:
                raise JobTypeNotFound.named(name)
