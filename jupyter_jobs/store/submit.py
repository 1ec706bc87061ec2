"""Storing new jobs: rows, payloads and dependencies, many in one transaction.

A run of jobs without an idempotency key is inserted with one `executemany`; a job with a key
that is known already is not inserted again (the existing job is returned, if it is the same
user's: another user's key refuses the whole submit). Each job's first status is
`lifecycle.when_stored`'s decision. A job whose function is stored once (`SharedPayload`) keeps
only its arguments in its payload row (bytes, or a large one's incoming file), which names the
function (`store/shared.py` stores it first, in the same transaction).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .. import lifecycle
from ..errors import JobNotFound, NotAllowed
from ..models import FileBytes, Job, JobError, JobSpec, JobUser, Reason, Status
from ..shared import SharedPayload
from . import schema
from .files import JobFiles
from .schema import INSERT_COLUMNS, INSERT_JOB
from .transaction import Tx

#: A payload as the store keeps it: bytes, or a large one's incoming file.
Stored = bytes | FileBytes
#: A job about to be stored: its spec, payload (or its arguments and the function it names)
#: and options as JSON text.
Prepared = tuple[JobSpec, Stored | SharedPayload, str]


def dependency_statuses(conn: sqlite3.Connection, after: set[int]) -> dict[int, Status]:
    """The status of every job some new job runs after; `JobNotFound` for one that is not."""
    if not after:
        return {}
    found = schema.statuses(conn, sorted(after))
    for job_id in sorted(after):
        if job_id not in found:
            raise JobNotFound(job_id)
    return found


def _values(
    spec: JobSpec,
    size: int,
    options: str,
    move: lifecycle.Move,
    at: float,
    user: JobUser,
) -> dict:
    """The new row's columns, by name (`INSERT_COLUMNS`); `size`: the payload's, function
    included."""
    error = move.error
    return {
        "name": spec.name,
        "kind": spec.kind.value,
        "owner": spec.owner,
        "status": move.target.value,
        "reason": move.reason.value if move.reason else None,
        "priority": spec.priority,
        "retries": spec.retries,
        "retry_delay": float(spec.retry_delay),
        "timeout": spec.timeout,
        "after_ids": json.dumps(spec.after),
        "hold": int(spec.hold),
        "run_at": spec.run_at,
        "expires_at": spec.expires_at,
        "created_at": at,
        "queued_at": at if move.target is Status.QUEUED else None,
        "finished_at": at if move.target is Status.FAILED else None,
        "error_type": error.type if error else None,
        "error_message": error.message if error else None,
        "interpreter": spec.interpreter,
        "cwd": spec.cwd,
        "idempotency_key": spec.idempotency_key,
        "options": options,
        "payload_size": size,
        "type": spec.type,
        "parameters": None if spec.parameters is None else json.dumps(spec.parameters),
        "channel": spec.channel,
        "user": user.username,
        "user_display_name": user.display_name,
        "fresh_worker": int(spec.fresh_worker),
    }


def insert(
    tx: Tx,
    files: JobFiles,
    prepared: list[Prepared],
    dep_status: dict[int, Status],
    user: JobUser,
    function_sizes: dict[str, int] | None = None,
) -> list[int]:
    """Insert rows, then payloads and deps, all belonging to `user`; the job ids, in order
    (existing ones for known idempotency keys, whoever they belong to). `function_sizes`: of
    the stored functions the payloads name, if any."""
    ids: list[int] = []
    fresh: list[tuple[int, JobSpec, Stored | SharedPayload, dict[str, Any]]] = []
    run: list[tuple[JobSpec, Stored | SharedPayload, dict[str, Any]]] = []

    def flush() -> None:
        if not run:
            return
        tx.conn.executemany(INSERT_JOB, [_row(values) for _, _, values in run])
        last = tx.conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        for offset, (spec, payload, values) in enumerate(run):
            job_id = last - len(run) + 1 + offset
            ids.append(job_id)
            fresh.append((job_id, spec, payload, values))
        run.clear()

    for spec, payload, options in prepared:
        deps = [(a, dep_status[a]) for a in spec.after]
        move = lifecycle.when_stored(deps, spec.hold, spec.run_at, tx.now)
        if isinstance(payload, SharedPayload):
            size = len(payload.arguments) + (function_sizes or {})[payload.function.sha256]
        else:
            size = len(payload)
        values = _values(spec, size, options, move, tx.now, user)
        if spec.idempotency_key is None:
            run.append((spec, payload, values))
            continue
        flush()
        cursor = tx.conn.execute(
            INSERT_JOB
            + " ON CONFLICT(idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
            _row(values),
        )
        if cursor.rowcount == 1:
            ids.append(cursor.lastrowid)
            fresh.append((cursor.lastrowid, spec, payload, values))
        else:
            existing = tx.conn.execute(
                "SELECT id FROM jobs WHERE idempotency_key = ?", (spec.idempotency_key,)
            ).fetchone()[0]
            ids.append(existing)
            tx.snapshots[existing] = known = schema.load_one(tx.conn, existing)
            if known.user != user.username:
                raise NotAllowed(
                    f"idempotency_key {spec.idempotency_key[:100]!r} names another user's job "
                    f"({existing}): choose another key",
                    {"id": existing},
                )
    flush()
    inline = []
    for job_id, spec, payload, values in fresh:
        data, function = payload, None
        if isinstance(payload, SharedPayload):
            data, function = payload.arguments, payload.function.sha256
        if len(data) > files.inline_limit:
            files.put_blob(tx, job_id, "payload", 0, data, shared=function)
        else:
            inline.append((job_id, len(data), data, function))
        tx.snapshots[job_id] = _fresh_job(job_id, spec, values)
        tx.record("created", job_id)
        if values["status"] == Status.FAILED.value:
            tx.finished.append(job_id)
    tx.conn.executemany(
        "INSERT INTO blobs (job_id, kind, attempt, size, data, shared) "
        "VALUES (?, 'payload', 0, ?, ?, ?)",
        inline,
    )
    tx.conn.executemany(
        "INSERT INTO deps (job_id, after_id) VALUES (?, ?)",
        [(job_id, a) for job_id, spec, _, _ in fresh for a in dict.fromkeys(spec.after)],
    )
    return ids


def _row(values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values[name] for name in INSERT_COLUMNS)


def _fresh_job(job_id: int, spec: JobSpec, values: dict[str, Any]) -> Job:
    """The Job just inserted, built without reading it back (enqueue is on the hot path)."""
    error = (
        JobError(values["error_type"], values["error_message"]) if values["error_type"] else None
    )
    return Job(
        id=job_id,
        name=spec.name,
        kind=spec.kind,
        owner=spec.owner,
        status=Status(values["status"]),
        reason=Reason(values["reason"]) if values["reason"] else None,
        priority=spec.priority,
        retries=spec.retries,
        retry_delay=float(spec.retry_delay),
        timeout=spec.timeout,
        after=list(spec.after),
        held=spec.hold,
        run_at=spec.run_at,
        expires_at=spec.expires_at,
        created_at=values["created_at"],
        queued_at=values["queued_at"],
        finished_at=values["finished_at"],
        error=error,
        interpreter=spec.interpreter,
        cwd=spec.cwd,
        idempotency_key=spec.idempotency_key,
        options=json.loads(options) if (options := values["options"]) != "{}" else {},
        payload_size=values["payload_size"],
        type=spec.type,
        parameters=json.loads(values["parameters"]) if spec.parameters is not None else None,
        channel=spec.channel,
        user=values["user"],
        user_display_name=values["user_display_name"],
        fresh_worker=spec.fresh_worker,
    )
