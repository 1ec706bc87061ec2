"""Schedules in the store: their rows, and firing them as jobs in one transaction.

The rules (next times, catch-up, overlap) are `schedules.py`'s; this module applies them. Firing
is one `BEGIN IMMEDIATE` transaction that reads the due schedules, inserts their runs as ordinary
jobs and advances `next_run`: two consumers on one database take turns on it, so the second sees
the first's `next_run` and fires nothing, and the unique index on (schedule_id, scheduled_time)
refuses a time fired twice whatever happens. `ScheduleVerbs` is mixed into `Store`.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import job_types, notebooks
from .. import schedules as rules
from ..errors import InvalidRequest, ScheduleNotFound
from ..models import NOBODY, Job, JobSpec, JobUser, Kind, Page, Status, now
from . import submit
from .queries import MAX_PAGE, decode_cursor, encode_cursor, filters
from .schema import SELECT_JOBS, job_from_row, sql_list
from .transaction import Tx

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .connection import Database
    from .files import JobFiles

ACTIVE = sql_list(Status.PENDING, Status.QUEUED, Status.RUNNING)
COLUMNS = (
    "id", "name", "owner", "target", "cron", "every", "timezone", "overlap", "catch_up", "paused",
    "job", "created_at", "next_run", "user", "user_display_name",
)  # fmt: skip
SELECT = f"SELECT {', '.join(COLUMNS)} FROM schedules"


def _from_row(conn: sqlite3.Connection, row: tuple[Any, ...]) -> rules.Schedule:
    values = dict(zip(COLUMNS, row, strict=True))
    values["target"] = json.loads(values["target"])
    values["job"] = json.loads(values["job"])
    values["paused"] = bool(values["paused"])
    schedule = rules.Schedule(**values)
    last = conn.execute(
        "SELECT id, status, scheduled_time, finished_at FROM jobs WHERE schedule_id = ? "
        "ORDER BY scheduled_time DESC LIMIT 1",
        (schedule.id,),
    ).fetchone()
    if last is not None:
        keys = ("job_id", "status", "scheduled_time", "finished_at")
        schedule.last_run = dict(zip(keys, last, strict=True))
    return schedule


def load(conn: sqlite3.Connection, schedule_id: int) -> rules.Schedule:
    row = conn.execute(f"{SELECT} WHERE id = ?", (schedule_id,)).fetchone()
    if row is None:
        raise ScheduleNotFound(schedule_id)
    return _from_row(conn, row)


def _first_run(spec: rules.ScheduleSpec, anchor: float, at: float) -> float | None:
    if spec.paused:
        return None
    timing = rules.Timing(spec.cron, spec.every, spec.timezone or "UTC", anchor)
    return timing.next_after(at)


def _run(schedule: rules.Schedule, stored: bytes, at: float) -> tuple[JobSpec, bytes]:
    """The spec and payload of the run at `at`: the schedule's name, owner and job options; a
    function's stored call as it is; a notebook, or a job type (its type and parameters in the
    record, as a typed submit's), with the run's parameters (`rules.run_parameters`)."""
    kind = Kind(schedule.target["kind"])
    timezone = schedule.timezone or "UTC"
    options: dict[str, Any] = {}
    typed: dict[str, Any] = {}
    payload = stored
    if kind is Kind.NOTEBOOK:
        notebook = json.loads(stored)
        declared = rules.declares_parameter(notebook, rules.SCHEDULED_TIME)
        given = schedule.target.get("parameters") or {}
        parameters = rules.run_parameters(given, declared, at, timezone)
        kernel_name = schedule.target.get("kernel_name")
        payload = notebooks.encode_payload(notebook, parameters, kernel_name)
        shown = {k: schedule.target.get(k) for k in ("path", "parameters", "kernel_name")}
        options["notebook"] = shown
    elif kind is Kind.TYPED:
        built = job_types.decode_payload(stored)
        declared = built.takes_scheduled_time
        parameters = rules.run_parameters(built.parameters, declared, at, timezone)
        if declared:  # the stored payload has the schedule's parameters, not the run's
            built.parameters, built.takes_scheduled_time = parameters, False
            payload = job_types.encode_payload(built)
        typed = {"type": schedule.target["type"], "parameters": parameters}
    spec = JobSpec(
        kind=kind, name=schedule.name, owner=schedule.owner, options=options, **typed,
        **schedule.job,
    )  # fmt: skip
    return spec, payload


def fire(tx: Tx, files: JobFiles, at: float) -> list[int]:
    """Insert the runs of every due schedule and advance their `next_run`; the new job ids."""
    rows = tx.conn.execute(
        f"{SELECT} WHERE paused = 0 AND next_run <= ? ORDER BY next_run", (at,)
    ).fetchall()
    ids: list[int] = []
    for row in rows:
        schedule = _from_row(tx.conn, row)
        assert schedule.next_run is not None
        timing = schedule.timing
        due = timing.due(schedule.next_run, at, schedule.catch_up)
        active = tx.conn.execute(
            f"SELECT 1 FROM jobs WHERE schedule_id = ? AND status IN ({ACTIVE}) LIMIT 1",
            (schedule.id,),
        ).fetchone()
        times = rules.runs_to_fire(due, schedule.overlap, active is not None)
        if times:
            (stored,) = tx.conn.execute(
                "SELECT payload FROM schedules WHERE id = ?", (schedule.id,)
            ).fetchone()
            runs = [_run(schedule, stored, t) for t in times]
            prepared = [(spec, payload, json.dumps(spec.options)) for spec, payload in runs]
            user = JobUser(schedule.user, schedule.user_display_name)
            new = submit.insert(tx, files, prepared, {}, user)  # its runs are its user's
            for job_id, t in zip(new, times, strict=True):
                tx.update(job_id, schedule_id=schedule.id, scheduled_time=t)
                tx.snapshots[job_id] = dataclasses.replace(
                    tx.snapshots[job_id], schedule_id=schedule.id, scheduled_time=t
                )
            ids += new
        tx.conn.execute(
            "UPDATE schedules SET next_run = ? WHERE id = ?",
            (timing.next_after(max(at, schedule.next_run)), schedule.id),
        )
    return ids


def runs(
    conn: sqlite3.Connection,
    schedule_id: int,
    statuses: Sequence[Status],
    limit: int,
    cursor: str | None,
) -> Page:
    """A page of one schedule's runs (in `statuses`, if any), newest first, with counts per
    status of all its runs."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
    where, values = ["schedule_id = ?"], [schedule_id]
    if statuses:
        where.append(f"status IN ({sql_list(*statuses)})")
    if cursor:
        where.append("id < ?")
        values.append(decode_cursor(cursor))
    rows = conn.execute(
        f"{SELECT_JOBS} WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        (*values, limit + 1),
    ).fetchall()
    jobs = [job_from_row(r) for r in rows[:limit]]
    next_cursor = encode_cursor(jobs[-1].id) if len(rows) > limit else None
    found = {s.value: 0 for s in Status}
    found.update(
        conn.execute(
            "SELECT status, COUNT(*) FROM jobs WHERE schedule_id = ? GROUP BY status",
            (schedule_id,),
        ).fetchall()
    )
    return Page(jobs, next_cursor, found)


class ScheduleVerbs:
    """The schedule verbs of `Store` (the server, `JobQueue`, the CLI and the consumer)."""

    _db: Database
    files: JobFiles

    def _tx(self) -> AbstractContextManager[Tx]:  # provided by Store
        raise NotImplementedError

    def add_schedule(
        self,
        spec: rules.ScheduleSpec,
        owner: str,
        payload: bytes,
        at: float | None = None,
        user: JobUser = NOBODY,
    ) -> rules.Schedule:
        """Store a checked schedule of `user` (its runs are that user's jobs) with its
        target's snapshot (`payload`); first run after `at`."""
        spec.validate()
        _check_payload(spec.target, payload)
        at = now() if at is None else at
        with self._tx() as tx:
            cursor = tx.conn.execute(
                "INSERT INTO schedules (name, owner, target, cron, every, timezone, overlap, "
                "catch_up, paused, job, payload, created_at, next_run, user, user_display_name) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.name, owner, json.dumps(spec.target), spec.cron, spec.every,
                    spec.timezone, spec.overlap, spec.catch_up, int(spec.paused),
                    json.dumps(spec.job), bytes(payload), at, _first_run(spec, at, at),
                    user.username, user.display_name,
                ),
            )  # fmt: skip
            return load(tx.conn, cursor.lastrowid)

    def get_schedule(self, schedule_id: int) -> rules.Schedule:
        with self._db.read() as conn:
            return load(conn, schedule_id)

    def schedules(self, owner: str | None = None, user: str | None = None) -> list[rules.Schedule]:
        """Every schedule (of `owner`, of `user`), oldest first."""
        where, params = filters(owner, None, user)
        with self._db.read() as conn:
            rows = conn.execute(f"{SELECT} WHERE {' AND '.join(['1', *where])} ORDER BY id", params)
            rows = rows.fetchall()
            return [_from_row(conn, r) for r in rows]

    def update_schedule(
        self,
        schedule_id: int,
        changes: dict[str, Any],
        payload: bytes | None = None,
        at: float | None = None,
    ) -> rules.Schedule:
        """Apply a PATCH (`changes`: any ScheduleSpec fields; `payload` a new target snapshot).

        A change of timing, or a resume, starts from the next time after `at`: the times a
        paused schedule missed are not caught up."""
        at = now() if at is None else at
        with self._tx() as tx:
            old = load(tx.conn, schedule_id)
            spec = old.merged(changes)
            if spec.target["kind"] != old.target["kind"]:
                raise InvalidRequest("target.kind: a schedule's kind of target cannot change")
            if payload is not None:
                _check_payload(spec.target, payload)
            elif spec.target["kind"] == Kind.TYPED.value and spec.target != old.target:
                raise InvalidRequest(
                    "target: a typed schedule's new target needs its payload, checked against "
                    "its type (`TypeRegistry.schedule_payload`)"
                )
            timing = (spec.cron, spec.every, spec.timezone)
            same = timing == (old.cron, old.every, old.timezone) and spec.paused == old.paused
            next_run = old.next_run if same else _first_run(spec, old.created_at, at)
            tx.conn.execute(
                "UPDATE schedules SET name = ?, target = ?, cron = ?, every = ?, timezone = ?, "
                "overlap = ?, catch_up = ?, paused = ?, job = ?, next_run = ?, "
                "payload = coalesce(?, payload) WHERE id = ?",
                (
                    spec.name, json.dumps(spec.target), spec.cron, spec.every, spec.timezone,
                    spec.overlap, spec.catch_up, int(spec.paused), json.dumps(spec.job),
                    next_run, payload, schedule_id,
                ),
            )  # fmt: skip
            return load(tx.conn, schedule_id)

    def pause_schedule(self, schedule_id: int) -> rules.Schedule:
        return self.update_schedule(schedule_id, {"paused": True})

    def resume_schedule(self, schedule_id: int, at: float | None = None) -> rules.Schedule:
        return self.update_schedule(schedule_id, {"paused": False}, at=at)

    def delete_schedule(self, schedule_id: int) -> None:
        """Remove a schedule; its runs stay, as jobs, with their `schedule_id`."""
        with self._tx() as tx:
            if tx.conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount == 0:
                raise ScheduleNotFound(schedule_id)

    def fire_schedules(self, at: float | None = None) -> list[Job]:
        """Create the runs of the schedules due at `at` (now); the new jobs."""
        at = now() if at is None else at
        due = self.next_schedule_run()
        if due is None or due > at:  # the common case costs one indexed read, no write lock
            return []
        with self._tx() as tx:
            ids = fire(tx, self.files, at)
        return [tx.snapshots[i] for i in ids]

    def next_schedule_run(self) -> float | None:
        """The earliest `next_run` of the running schedules."""
        return (
            self._db.conn()
            .execute("SELECT MIN(next_run) FROM schedules WHERE paused = 0")
            .fetchone()[0]
        )

    def schedule_runs(
        self,
        schedule_id: int,
        limit: int = 50,
        cursor: str | None = None,
        status: Sequence[str] | None = None,
    ) -> Page:
        """A page of a schedule's runs (the job list's `?schedule=` filter)."""
        statuses = [Status(s) for s in dict.fromkeys(status or [])]
        with self._db.read() as conn:
            return runs(conn, schedule_id, statuses, limit, cursor)


def _check_payload(target: dict[str, Any], payload: bytes) -> None:
    """A notebook target's snapshot must be a notebook; a typed target's payload the one
    `TypeRegistry.schedule_payload` built for it (read as JSON, never loaded)."""
    if target["kind"] == Kind.NOTEBOOK.value:
        _check_notebook(payload)
    elif target["kind"] == Kind.TYPED.value:
        built = job_types.decode_payload(payload)
        if (built.type, built.parameters) != (target["type"], target["parameters"]):
            raise InvalidRequest("target: the payload is not that of this job type and parameters")


def _check_notebook(payload: bytes) -> None:
    try:
        notebook = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("target: the notebook is not JSON") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise InvalidRequest("target: the notebook has no cells (not an nbformat 4 notebook)")
