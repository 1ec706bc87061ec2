"""Job types registered from kernels, kept in the job database so that they outlive the kernel
and the server (`job_types.py` says what a type is; installed types are not kept here).

A row holds the type's name, JSON schema and description, who registered it and where its jobs
run (the kernel's interpreter and working directory), and names the dill bytes of its run and
summarize functions, stored once (`store/shared.py`: its typed jobs name them too, instead of a
copy each); nothing here loads them. A row from before keeps its bytes in `functions`.
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
from ..shared import Function
from . import shared as stored_once

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .connection import Database
    from .files import JobFiles
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
    files: JobFiles
    shared: stored_once.SharedBytes

    def _tx(self) -> AbstractContextManager[Tx]:  # provided by Store
        raise NotImplementedError

    def put_type(self, job_type: JobType, functions: bytes) -> JobType:
        """Keep a kernel's type (a checked `JobType`) with its functions' bytes (stored once),
        replacing one of the same name; the stored type."""
        function = Function.of(bytes(functions))
        with self._tx() as tx:
            before = _functions_named(tx.conn, job_type.name)
            stored_once.ensure(tx, self.files, [function])
            tx.conn.execute(
                "INSERT INTO job_types (name, description, schema, summarize, owner, "
                "interpreter, cwd, functions, shared, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, x'', ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET description = excluded.description, "
                "schema = excluded.schema, summarize = excluded.summarize, "
                "owner = excluded.owner, interpreter = excluded.interpreter, cwd = excluded.cwd, "
                "functions = excluded.functions, shared = excluded.shared, "
                "created_at = excluded.created_at",
                (
                    job_type.name, job_type.description, json.dumps(job_type.schema),
                    int(job_type.has_summarize), job_type.owner, job_type.interpreter,
                    job_type.cwd, function.sha256, now(),
                ),
            )  # fmt: skip
            stored_once.free(tx, self.files, [before])
            return load(tx.conn, job_type.name)

    def get_type(self, name: str) -> JobType:
        """A kernel's type by name (`JobTypeNotFound` if none)."""
        with self._db.read() as conn:
            return load(conn, name)

    def types(self) -> list[JobType]:
        """Every type kernels registered, by name."""
        with self._db.read() as conn:
            return [_from_row(r) for r in conn.execute(f"{SELECT} ORDER BY name").fetchall()]

    def type_functions(self, name: str) -> tuple[JobType, Function | bytes]:
        """A kernel's type and its functions (opaque: for a typed job's payload): the stored
        function they are, or the bytes of a type registered before functions were stored
        once. The function comes with its bytes (read once per process: `SharedBytes`), so a
        job submitted while the type is replaced stores them again if they were freed."""
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {', '.join(COLUMNS)}, functions, shared FROM job_types WHERE name = ?",
                (name,),
            ).fetchone()
            if row is None:
                raise JobTypeNotFound.named(name)
            if row[-1] is None:
                return _from_row(row[:-2]), bytes(row[-2])
            return _from_row(row[:-2]), Function(row[-1], self.shared.read(conn, row[-1]))

    def delete_type(self, name: str) -> None:
        """Forget a kernel's type; jobs already submitted keep its functions (they name them,
        or have a copy)."""
        with self._tx() as tx:
            before = _functions_named(tx.conn, name)
            if tx.conn.execute("DELETE FROM job_types WHERE name = ?", (name,)).rowcount == 0:
                raise JobTypeNotFound.named(name)
            stored_once.free(tx, self.files, [before])


def _functions_named(conn: sqlite3.Connection, name: str) -> str:
    """The stored function the type `name` names ("" for none)."""
    row = conn.execute("SELECT shared FROM job_types WHERE name = ?", (name,)).fetchone()
    return row[0] or "" if row else ""
