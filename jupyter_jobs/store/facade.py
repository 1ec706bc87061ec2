"""The store's verbs: the only way into the job database for the rest of the package.

Why it is built this way:

- Every verb is one short transaction (`connection.py`): this is what makes claims exactly-once
  per attempt, fencing reliable and idempotency keys unique.
- After a commit that changes jobs, subscribers in this process get the `Change`s (in the
  calling thread), and other processes waiting on this database are woken through the doorbell.
- The verbs are the ones the consumer (`record_and_claim`, `record`, `heartbeat`, `recover`,
  `promote`, `next_due`, `gc` ...), the server, `JobQueue`, the CLI and gc use; what a move
  means is decided in `lifecycle.py`, and applied by `moves.py` and `attempts.py`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .. import lifecycle, start_log
from ..doorbell import Doorbell, Listener
from ..errors import (
    IllegalTransition,
    InvalidRequest,
    JobNotFound,
    ResultNotReady,
    WorkerNotFound,
    status_phrase,
)
from ..models import (
    NOBODY,
    TERMINAL,
    Change,
    FileBytes,
    Job,
    JobError,
    JobSpec,
    JobUser,
    Outcome,
    Page,
    Progress,
    Reason,
    Status,
    now,
)
from ..shared import Function, SharedPayload, functions_in
from ..worker_info import WorkerInfo, WorkerStatus
from ..workspace import Reference, Workspace
from . import attempts, log_streams, moves, picking, queries, retention, schema, submit
from . import shared as stored_once
from . import workers as worker_rows
from .attempts import LogItem
from .channels import ChannelVerbs
from .connection import Database, check_file, default_db_path
from .files import JobFiles, Spool
from .schedules import ScheduleVerbs
from .schema import IDS, LEASED, PENDING, QUEUED, error_columns
from .transaction import Tx
from .types import TypeVerbs

log = logging.getLogger(__name__)


@dataclass
class Claimed:
    """A job the consumer now holds (still queued until it starts), with the payload to hand to
    the executor: its bytes, or its file when it is large; for a job naming a function stored
    once, that function (its bytes) and the job's arguments (`shared.SharedPayload`)."""

    job: Job
    payload: bytes | FileBytes | SharedPayload


#: Statuses whose last attempt may leave a result all the same (`Store.result`).
_ENDED_EARLY = (Status.FAILED.value, Status.CANCELLED.value)


class Store(ScheduleVerbs, TypeVerbs, ChannelVerbs):
    """A job store on one SQLite file. Thread-safe: one connection per thread; the schedule
    verbs are `store/schedules.py`'s, the job type verbs `store/types.py`'s, the result-channel
    verbs `store/channels.py`'s."""

    path: Path
    workspace: Workspace
    workspace_root: Path

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        create: bool = True,
        log_limit: int = 10 * 2**20,
        inline_limit: int = 64 * 2**10,
        journal_mode: str = "auto",
        busy_timeout: float = 30.0,
        poison_limit: int = lifecycle.POISON_LIMIT,
    ) -> None:
        """Open the database at `path`, creating it unless `create=False` (then a missing file
        is `DatabaseNotFound`); its workspace folder must be its own (`WorkspaceConflict`)."""
        self.path = Path(path if path is not None else default_db_path()).expanduser().absolute()
        self.workspace = Workspace(self.path)
        self.workspace_root = self.workspace.root
        self.files = JobFiles(self.workspace, inline_limit, log_limit)
        self.shared = stored_once.SharedBytes(self.files)
        self.poison_limit = poison_limit
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[list[Change]], None]] = []
        if not check_file(self.path, create):
            self.workspace.refuse_leftover()
        self._db = Database(self.path, journal_mode, busy_timeout)
        self.journal_mode = self._db.journal_mode
        try:
            self._open_workspace()
        except BaseException:  # refused (e.g. another database's folder): nothing stays open
            self._db.close()
            raise
        self._db.protect_side_files()
        self.workspace.remove_stale_spools(time.time())
        self.doorbell = Doorbell(self.path.with_name(self.path.name + ".bells"))

    @property
    def log_limit(self) -> int:
        """The most log bytes kept per attempt (beyond, a visible marker)."""
        return self.files.log_limit

    @log_limit.setter
    def log_limit(self, value: int) -> None:
        self.files.log_limit = value

    def _open_workspace(self) -> None:
        """Check (or create) the workspace folder for this database's id; first, for a database
        from before workspace ids, take over its old `jobs/` folder when it is its own.

        Under the write lock, so two processes opening an old database do not both move it.
        """
        with self._db.write() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if "legacy_workspace" in meta:
                references = [
                    Reference(path, size)
                    for path, size in conn.execute(
                        "SELECT path, size FROM blobs WHERE path IS NOT NULL "
                        "UNION ALL SELECT id || '/log', log_size FROM jobs WHERE log_size > 0"
                    ).fetchall()
                ]
                (last_id,) = conn.execute(
                    "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'jobs'"
                ).fetchone()
                self.workspace.adopt_legacy(meta["workspace_id"], references, last_id)
                conn.execute("DELETE FROM meta WHERE key = 'legacy_workspace'")
            self.workspace.open(meta["workspace_id"])

    def close(self) -> None:
        """Close every connection (of every thread) and the doorbell."""
        self._db.close()
        self.doorbell.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, callback: Callable[[list[Change]], None]) -> Callable[[], None]:
        """Call `callback(changes)` after every commit that changed jobs; returns unsubscribe."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def listen(self) -> Listener:
        """A doorbell listener woken after commits that enqueue, finish, cancel or retry jobs."""
        return self.doorbell.listen()

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def _tx(self, checkpoint: bool = False) -> Iterator[Tx]:
        """One write transaction; pending dependents of jobs that finished in it are settled
        before the commit; after it, subscribers are told and the doorbell rung. `checkpoint`:
        see `Database.write`."""
        tx: Tx | None = None
        try:
            with self._db.write(checkpoint) as conn:
                tx = Tx(conn, now())
                yield tx
                moves.resolve_dependents(tx, tx.finished)
                tx.snapshot()
        except BaseException:
            for path in tx.written if tx else []:
                path.unlink(missing_ok=True)
            for target, source in reversed(tx.adopted if tx else []):
                with suppress(OSError):  # the caller keeps it, to store it again later
                    os.replace(target, source)
            raise
        for path in tx.obsolete:
            path.unlink(missing_ok=True)
        for job_id in tx.doomed_jobs:
            self.workspace.remove_job(job_id)
        if tx.events or tx.released:
            self._publish(tx)

    def _publish(self, tx: Tx) -> None:
        changes = [
            Change(what, tx.snapshots[job_id], previous)
            for what, job_id, previous in tx.events
            if job_id in tx.snapshots
        ]
        ring = tx.released or any(
            c.what in ("created", "cancel_requested", "deleted")
            or (c.what == "transition" and c.job.status is not Status.RUNNING)
            for c in changes
        )
        if ring:  # first: another process waking up takes longer than a subscriber's call
            try:
                self.doorbell.ring()
            except OSError as exc:  # committed already: a failed wake-up must not look like one
                log.warning("could not ring the doorbell in %s: %s", self.doorbell.directory, exc)
        with self._lock:
            subscribers = list(self._subscribers) if changes else []
        for callback in subscribers:
            try:
                callback(changes)
            except Exception:
                log.exception("job store subscriber %r failed", callback)

    # -- submit --------------------------------------------------------------------------------

    def spool(self) -> Spool:
        """A file for a payload still arriving (`Spool.stored()` is what `enqueue` takes: moved,
        not copied); the caller discards it if no job took it (`Spool.discard`)."""
        return self.files.spool()

    def incoming(self) -> Path:
        """The folder where a worker on this machine may leave a large result as a file, which
        the store then takes (`Outcome.result` as `FileBytes`)."""
        return self.files.incoming()

    def enqueue(
        self,
        spec: JobSpec,
        payload: bytes | FileBytes | SharedPayload,
        user: JobUser = NOBODY,
        others: Collection[str] | None = (),
    ) -> Job:
        """Store one job of `user`; with a known `idempotency_key`, return the existing job
        instead (whoever it belongs to: the caller checks). `others`: `enqueue_many`'s."""
        return self.enqueue_many([(spec, payload)], user, others)[0]

    def enqueue_many(
        self,
        items: Sequence[tuple[JobSpec, bytes | FileBytes | SharedPayload]],
        user: JobUser = NOBODY,
        others: Collection[str] | None = (),
    ) -> list[Job]:
        """Store many jobs of `user` in one transaction (all or none), in order; ids increase
        with order. A payload may be an incoming file (a spooled submit), which its job takes.

        A `SharedPayload`'s function is stored once, in the same transaction, unless it is
        already; `user` is recorded as one who sent its bytes (`store/shared.py`). One named by
        its sha256 alone must be stored, and sent by `user` or one of `others` (None: anyone),
        else `FunctionNotFound`. Its arguments are stored as any payload."""
        prepared: list[submit.Prepared] = []
        for spec, payload in items:
            spec.validate()
            try:
                options = json.dumps(spec.options, allow_nan=False)  # NaN is no JSON
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"options must be JSON: {exc}") from None
            if isinstance(payload, SharedPayload):
                arguments = self._stored(payload.arguments)
                prepared.append((spec, SharedPayload(payload.function, arguments), options))
            else:
                prepared.append((spec, self._stored(payload), options))
        if not prepared:
            return []
        with self._tx() as tx:  # numbers are in range: `validate` checked them
            after = {a for s, _, _ in prepared for a in s.after}
            statuses = submit.dependency_statuses(tx.conn, after)
            shared = functions_in(p for _, p, _ in prepared)
            functions = stored_once.ensure(tx, self.files, shared, user.username, others)
            ids = submit.insert(tx, self.files, prepared, statuses, user, functions)
            # A function stored now that no new job names (their keys were known) is not kept.
            stored_once.free(tx, self.files, functions)
        return [tx.snapshots[job_id] for job_id in ids]

    def _stored(self, payload: object) -> submit.Stored:
        """A payload as the store keeps it (a small incoming file as its bytes), or what it
        should have been, named."""
        if isinstance(payload, FileBytes):
            return self.files.small(payload)
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise InvalidRequest(f"payload must be bytes, got {type(payload).__name__}")
        return bytes(payload)

    def put_function(
        self, function: Function, user: str = NOBODY.username
    ) -> tuple[stored_once.StoredFunction, bool]:
        """Store a function on its own, before the jobs that will name it (a kernel's upload),
        sent by `user`; the stored function as `user` sees it, and whether it is new to them.
        Its bytes must have its sha256 (`InvalidRequest`). Unless a job names it within
        `shared.ORPHAN_GRACE`, gc frees it."""
        with self._tx() as tx:
            created = stored_once.put(tx, self.files, function, user)
            return stored_once.describe(tx.conn, function.sha256, user), created

    def describe_function(self, sha256: str, user: str | None = None) -> stored_once.StoredFunction:
        """A stored function's size and references (those of `user`'s jobs, when given;
        `FunctionNotFound` if it is not stored)."""
        with self._db.read() as conn:
            return stored_once.describe(conn, sha256, user)

    def function_users(self, sha256s: Iterable[str]) -> dict[str, set[str]]:
        """The users who sent the bytes of each stored function among `sha256s` (what naming
        one by its hash alone is checked against: `server/function_handlers.py`)."""
        with self._db.read() as conn:
            return stored_once.users(conn, list(sha256s))

    # -- consumer ------------------------------------------------------------------------------

    def record(
        self,
        logs: Sequence[LogItem] = (),
        progress: Sequence[tuple[int, int, Progress]] = (),
        outcomes: Sequence[tuple[int, int, Outcome]] = (),
        starts: Sequence[tuple[int, int, float]] = (),
    ) -> list[Job | None]:
        """Starts, logs, progress and outcomes of many attempts, in one transaction.

        This is the consumer's flush: one commit instead of one per kind. Each item is fenced by
        its attempt: a stale one writes nothing. `starts` are (job id, attempt, when its code
        began): `queued -> running`. Returns, per outcome, the job as it ended (or was requeued
        for a retry), or None for a stale attempt.
        """
        return self.record_and_claim(logs, progress, outcomes, starts=starts)[0]

    def record_and_claim(
        self,
        logs: Sequence[LogItem] = (),
        progress: Sequence[tuple[int, int, Progress]] = (),
        outcomes: Sequence[tuple[int, int, Outcome]] = (),
        claim: tuple[str, int, float] | None = None,
        starts: Sequence[tuple[int, int, float]] = (),
    ) -> tuple[list[Job | None], list[Claimed]]:
        """`record`, then claim up to `limit` queued jobs for `claim = (consumer, limit, lease)`
        in the same transaction.

        A consumer's steady state is "this job ended, the next one began, claim another": one
        commit for all of it keeps the cost of every job low. A claimed job is leased to its
        consumer and its attempt counted, so no other consumer takes it and every report about
        it is fenced; it stays queued until its start is recorded. The order is
        `store/picking.py`'s: priority, fair share between users, then between their
        notebooks, then FIFO.
        """
        for _, _, outcome in outcomes:
            if outcome.status not in TERMINAL and outcome.status is not Status.QUEUED:
                raise InvalidRequest(f"an outcome must be finished or queued, not {outcome.status}")
        claiming = claim is not None and claim[1] > 0
        if not (starts or logs or progress or outcomes or claiming):
            return [], []
        if claiming:
            attempts.check_table()
        ending = {job_id for job_id, _, _ in outcomes}
        with self._tx() as tx:
            # A worker ends one job before it starts the next: the jobs that ended are written
            # first, so the change events of this one commit keep that order.
            attempts.report(tx, self.files, starts, logs, progress, lambda i: i in ending)
            began = self._written_down()
            done = [
                attempts.finish(tx, self.files, *item, self.poison_limit, began)
                for item in outcomes
            ]
            attempts.report(tx, self.files, starts, logs, progress, lambda i: i not in ending)
            # A claim given back, or retried before it started, changed no status: no snapshot.
            tx.load_ended([i for (i, _, _), ok in zip(outcomes, done, strict=True) if ok])
            taken = attempts.claim(tx, *claim) if claim and claiming else []
            # Read under the claim: its jobs name them, so they cannot be freed meanwhile.
            named = {t[4] for t in taken if t[4] is not None}
            functions = {sha256: self.shared.read(tx.conn, sha256) for sha256 in named}
        finished = [
            tx.snapshots.get(job_id) if ok else None
            for (job_id, _, _), ok in zip(outcomes, done, strict=True)
        ]
        claimed = [Claimed(tx.snapshots[i], self._payload(functions, *blob)) for i, *blob in taken]
        for _, _, outcome in outcomes:  # a stale attempt's result file: no job took it
            if isinstance(outcome.result, FileBytes):
                Path(outcome.result.path).unlink(missing_ok=True)
        return finished, claimed

    def _payload(
        self,
        functions: dict[str, bytes],
        data: bytes | None,
        path: str | None,
        size: int,
        function: str | None,
    ) -> bytes | FileBytes | SharedPayload:
        """A claimed job's payload as its executor hands it on: its bytes or file, with the
        function it names (bytes read once per process: `SharedBytes`) beside them."""
        arguments = self.files.blob_ref(data, path, size)
        if function is None:
            return arguments
        return SharedPayload(Function(function, functions[function]), arguments)

    def heartbeat(self, consumer: str, job_ids: Iterable[int], lease: float) -> list[int]:
        """Extend the lease of `consumer`'s running and claimed jobs; returns those asked to
        cancel."""
        ids = json.dumps(list(job_ids))
        with self._tx() as tx:
            tx.conn.execute(
                f"UPDATE jobs SET lease_until = ? WHERE {LEASED} AND consumer = ? AND id IN {IDS}",
                (tx.now + lease, consumer, ids),
            )
            rows = tx.conn.execute(
                f"SELECT id FROM jobs WHERE {LEASED} AND consumer = ? "
                f"AND cancel_requested = 1 AND id IN {IDS}",
                (consumer, ids),
            ).fetchall()
        return [r[0] for r in rows]

    def cancel_requested(self, consumer: str) -> list[tuple[int, int]]:
        """(id, attempt) of `consumer`'s running or claimed jobs that someone asked to cancel."""
        rows = self._db.conn().execute(
            f"SELECT id, attempt FROM jobs WHERE {LEASED} AND consumer = ? "
            "AND cancel_requested = 1",
            (consumer,),
        )
        return [(r[0], r[1]) for r in rows.fetchall()]

    def promote(self) -> list[Job]:
        """Expire jobs past `expires_at`; queue pending jobs whose time came and deps succeeded."""
        with self._tx() as tx:
            expired = tx.conn.execute(
                f"SELECT id, status FROM jobs WHERE expires_at <= ? "
                f"AND +status IN ({PENDING}, {QUEUED}) AND attempt = retry_base",
                (tx.now,),
            ).fetchall()
            for job_id, status in expired:
                moves.fail(tx, job_id, Status(status), lifecycle.expiry())
            moves.resolve_dependents(tx, tx.finished)
            due = tx.conn.execute(
                f"SELECT id FROM jobs WHERE status = {PENDING} AND hold = 0 "
                "AND (run_at IS NULL OR run_at <= ?)",
                (tx.now,),
            ).fetchall()
            for (job_id,) in due:
                moves.settle_pending(tx, job_id)
            changed = [e[1] for e in tx.events]
        return [tx.snapshots[i] for i in changed]

    def recover(self, is_alive: Callable[[str], bool]) -> list[Job]:
        """End attempts whose lease ran out or whose consumer is gone (reason `interrupted`,
        retried where the job allows), and give back uncounted those that never began.

        A claim of a consumer whose workers write down what they begin (`start_log.py`) and
        whose process is proven gone is given back uncounted when no worker began it, as on a
        clean stop. Any other claim never recorded as started ends as interrupted: its start
        may have happened in the moments before its consumer died, unwritten, and an attempt
        that may have run is counted, so a job never runs more often than its attempts say.

        `is_alive` is called outside the transaction (it may be slow), and so are the start
        logs read; each candidate is then checked again under the write lock, so a job that
        finished meanwhile is left alone.
        """
        at = now()
        rows = self._db.conn().execute(
            f"SELECT id, status, attempt, consumer, lease_until FROM jobs WHERE {LEASED}"
        )
        alive: dict[str, bool] = {}
        lost = []
        for job_id, status, attempt, consumer, lease_until in rows.fetchall():
            if consumer not in alive:
                alive[consumer] = bool(consumer) and is_alive(consumer)
            if lease_until < at:
                lost.append((job_id, status, attempt, consumer, "its lease expired"))
            elif not alive[consumer]:
                lost.append((job_id, status, attempt, consumer, "its process is gone"))
        began = {c: self._began(c) for c in {row[3] for row in lost}}
        ended = self._end_lost(lost, began) if lost else []
        start_log.sweep(self.workspace.start_logs, self._holds_claims)
        return ended

    def start_log_of(self, consumer: str) -> start_log.StartLog:
        """Where `consumer`'s workers write down the attempts they begin (`start_log.py`)."""
        return start_log.StartLog(self.workspace.start_log(consumer), consumer)

    def _began(self, consumer: str | None) -> set[tuple[int, int]] | None:
        """The attempts `consumer`'s workers began, if it is proven gone and kept a log."""
        return start_log.started(self.workspace.start_log(consumer)) if consumer else None

    def _written_down(self) -> attempts.Began:
        """Whether a consumer's workers wrote an attempt down as begun (`start_log.py`), each
        log read once, when first asked (only a claim given back asks)."""
        read: dict[str, set[tuple[int, int]]] = {}

        def began(job_id: int, attempt: int, consumer: str | None) -> bool:
            if not consumer:
                return False
            if consumer not in read:
                read[consumer] = start_log.named(self.workspace.start_log(consumer))
            return (job_id, attempt) in read[consumer]

        return began

    def _holds_claims(self, consumer: str) -> bool:
        row = self._db.conn().execute(
            f"SELECT 1 FROM jobs WHERE {LEASED} AND consumer = ? LIMIT 1", (consumer,)
        )
        return row.fetchone() is not None

    def _end_lost(
        self,
        lost: list[tuple[int, str, int, str, str]],
        began: dict[str, set[tuple[int, int]] | None],
    ) -> list[Job]:
        """End the lost attempts (see `recover`), each checked again under the write lock."""
        ended: list[int] = []
        with self._tx() as tx:
            for job_id, status, attempt, consumer, why in lost:
                current = tx.conn.execute(
                    f"SELECT status, attempt, consumer, cancel_requested FROM jobs "
                    f"WHERE id = ? AND {LEASED}",
                    (job_id,),
                ).fetchone()
                if current is None or current[:3] != (status, attempt, consumer):
                    continue
                ended.append(job_id)
                known = began[consumer]
                if known is not None and (job_id, attempt) not in known:
                    attempts.give_back(tx, job_id, attempt, Status(status), bool(current[3]))
                    continue
                held = "running" if status == Status.RUNNING.value else "about to start"
                error = JobError(
                    "Interrupted", f"the consumer {consumer} holding attempt {attempt} ({held}) "
                    f"was lost ({why})",
                )  # fmt: skip
                moves.end_attempt(tx, job_id, Reason.INTERRUPTED, error, self.poison_limit)
            tx.load_ended(ended)
        return [tx.snapshots[i] for i in ended]

    def next_due(self) -> float | None:
        """The earliest future time a time-based rule applies (call `promote` first).

        Leases of running and claimed jobs are included even when already past, so that the
        caller runs `recover` for them. (`+status` keeps SQLite on the small partial time
        indexes rather than the status index, which would visit every queued job.)
        """
        row = self._db.conn().execute(
            "SELECT MIN(t) FROM ("
            f"SELECT MIN(run_at) AS t FROM jobs WHERE status = {PENDING} AND hold = 0 "
            "AND run_at > ?1 "
            f"UNION ALL SELECT MIN(not_before) FROM jobs WHERE +status = {QUEUED} "
            "AND not_before > ?1 "
            f"UNION ALL SELECT MIN(expires_at) FROM jobs WHERE +status IN ({PENDING}, "
            f"{QUEUED}) AND expires_at > ?1 AND attempt = retry_base "
            f"UNION ALL SELECT MIN(lease_until) FROM jobs WHERE {LEASED})",
            (now(),),
        )
        return row.fetchone()[0]

    # -- workers (store/workers.py) ------------------------------------------------------------

    def sync_workers(self, consumer: str, infos: Sequence[WorkerInfo] | None) -> list[str]:
        """Write `consumer`'s workers (`infos`; None: unchanged since the last write), and take
        the drains asked of them since: their ids, each handed out once."""
        if infos is None and not worker_rows.drains(self._db.conn(), consumer):
            return []
        with self._tx() as tx:
            if infos is not None:
                worker_rows.write(tx, consumer, infos)
            asked = worker_rows.drains(tx.conn, consumer)
            worker_rows.forget_drains(tx, consumer, asked)
        return asked

    def forget_workers(self, consumer: str) -> None:
        """`consumer` stopped: its workers are gone."""
        with self._tx() as tx:
            worker_rows.forget(tx, consumer)

    def workers(self, is_alive: Callable[[str], bool]) -> list[WorkerInfo]:
        """Every consumer's workers as it last wrote them (lately: `workers.STALE_AFTER`),
        but those of consumers `is_alive` proves gone; one asked to drain shows draining."""
        with self._db.read() as conn:
            rows = worker_rows.listing(conn, now())
        alive: dict[str, bool] = {}
        shown = []
        for consumer, info, asked in rows:
            if consumer not in alive:
                alive[consumer] = is_alive(consumer)
            if alive[consumer]:
                shown.append(_asked_to_drain(info) if asked else info)
        return shown

    def request_drain(self, worker_id: str, is_alive: Callable[[str], bool]) -> WorkerInfo:
        """Ask the consumer that runs worker `worker_id` to drain it (it does on its next
        round, within seconds); the worker as listed now. `WorkerNotFound` when no consumer
        alive lists it."""
        listed = [info for info in self.workers(is_alive) if info.id == worker_id]
        with self._tx() as tx:
            marked = worker_rows.ask_drain(tx, worker_id, [info.consumer or "" for info in listed])
        if not marked:
            raise WorkerNotFound(worker_id)
        return _asked_to_drain(listed[0])

    # -- actions -------------------------------------------------------------------------------

    def request_cancel(self, job_id: int) -> Job:
        """Cancel a pending or queued job now; ask the consumer to stop a running one, or to
        take a claimed one back from its executor (it ends cancelled once it has)."""
        with self._tx() as tx:
            job = schema.load_one(tx.conn, job_id)
            if job.status is Status.RUNNING or job.claimed:
                if not job.cancel_requested:
                    tx.update(job_id, cancel_requested=1)
                    tx.record("cancel_requested", job_id)
            else:
                tx.move(job_id, job.status, Status.CANCELLED, finished_at=tx.now)
            moves.resolve_dependents(tx, tx.finished)
            tx.snapshot()
            return tx.snapshots.get(job_id) or job

    def retry(self, job_id: int) -> Job:
        """Run a failed or cancelled job again (its deps must not have failed)."""
        with self._tx() as tx:
            job = schema.load_one(tx.conn, job_id)
            if not lifecycle.retryable(job):
                raise IllegalTransition(
                    f"job {job_id} {status_phrase(job.status)}; only failed or cancelled jobs "
                    "can be retried",
                    {"id": job_id, "status": job.status.value},
                )
            deps = schema.dependencies(tx.conn, job_id)
            refused = lifecycle.retry_refusal(deps)
            if refused is not None:
                status = dict(deps)[refused]
                raise IllegalTransition(
                    f"job {job_id} runs after job {refused}, which {status}: retry that one first",
                    {"id": job_id, "after": refused},
                )
            target, expires_at = lifecycle.after_retry(deps, job.expires_at, tx.now)
            tx.move(
                job_id, job.status, Status.QUEUED, reason=None, cancel_requested=0,
                worker_losses=0, not_before=None, started_at=None, finished_at=None,
                queued_at=tx.now, retry_base=job.attempt, expires_at=expires_at,
                lease_until=None, **error_columns(None),
            )  # fmt: skip
            if target is Status.PENDING:
                tx.move(job_id, Status.QUEUED, Status.PENDING, queued_at=None)
            tx.snapshot()
            return tx.snapshots[job_id]

    def release(self, job_id: int) -> Job:
        """Let a job submitted with `hold=True` run: queued now if the jobs it runs after have
        succeeded and its `run_at` has come (it keeps its place: priority, then submit order),
        else pending until they have. `IllegalTransition` for a job that is not held."""
        with self._tx() as tx:
            job = schema.load_one(tx.conn, job_id)
            if not lifecycle.releasable(job):
                raise IllegalTransition(
                    f"job {job_id} is not held: it {status_phrase(job.status)}; only a pending "
                    "job submitted with hold=True can be released",
                    {"id": job_id, "status": job.status.value, "held": job.held},
                )
            tx.update(job_id, hold=0)
            tx.record("released", job_id)
            moves.settle_pending(tx, job_id)
            tx.snapshot()
            return tx.snapshots[job_id]

    def delete(self, job_id: int) -> None:
        """Remove a job that is not running, with its payload, result, logs and workspace."""
        with self._tx() as tx:
            jobs = schema.load_brief(tx.conn, [job_id])
            if not jobs:
                raise JobNotFound(job_id)
            self._delete(tx, jobs)

    def clear_finished(self, user: str | None = None) -> list[int]:
        """Delete every finished job (of `user`, when given), with its files, in short batches
        (see `gc`); the ids deleted.

        Pending, queued and running jobs are never touched: "finished" is `models.TERMINAL`.
        """
        with self._db.read() as conn:
            ids = retention.finished_ids(conn, user)
        never = threading.Event()
        with self._db.checkpointing():
            deleted = self._collect(ids, None, never)
            self._db.shrink(never)
        return deleted

    def gc(
        self,
        older_than: float | None = None,
        max_bytes: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[int]:
        """Delete finished jobs finished over `older_than` seconds ago, then the oldest finished
        ones until blobs plus logs take at most `max_bytes`. Unfinished jobs are never touched.
        Also prunes the finished log (see `finished_since`), so call it now and then even with
        no retention set. Then deletes the result channel cursors that no job they read is
        left behind (`retention.prune_channel_readers`: lossless), so every reader's cursor
        goes with the last of the jobs it acknowledged. The ids deleted.

        Everything goes in batches of one short transaction each (`retention.Batches`), so
        a submit or a claim arriving meanwhile waits for one batch, not for the whole
        collection; each batch is published as one list of changes, and the WAL is copied
        back after each, by this thread alone (`Database.checkpointing`). The jobs are chosen
        by id from the indexes; a job that changed since it was chosen (retried) is spared.
        Freed pages are then given back to the filesystem, in short steps too
        (`Database.shrink`). Setting `stop` ends the collection after the batch under way:
        what is left goes at the next gc.
        """
        stop = stop or threading.Event()
        doomed: list[int] = []
        with self._db.checkpointing():
            batches = retention.Batches(size=4096, largest=65536)
            more = True
            while more and not stop.is_set():
                with self._tx(checkpoint=True) as tx:
                    more = retention.prune_finished_log(tx.conn, batches.size)
                self._between_batches(batches, stop)
            with self._tx(checkpoint=True) as tx:
                stored_once.sweep(tx, self.files, tx.now - stored_once.ORPHAN_GRACE)
            if older_than is not None:
                cutoff = now() - older_than
                with self._db.read() as conn:
                    aged = retention.finished_before(conn, cutoff)
                doomed += self._collect(aged, cutoff, stop)
            if max_bytes is not None and not stop.is_set():
                with self._db.read() as conn:
                    extra = retention.over_budget(conn, max_bytes)
                doomed += self._collect(extra, None, stop)
            self._prune_channel_readers(stop)
            self._db.shrink(stop)  # (also what a gc stopped or killed before it freed)
        return doomed

    def _prune_channel_readers(self, stop: threading.Event) -> None:
        """`retention.prune_channel_readers` over every cursor, in gc's short transactions."""
        batches = retention.Batches()
        after: tuple[str, str] | None = ("", "")
        while after is not None and not stop.is_set():
            with self._tx(checkpoint=True) as tx:
                after = retention.prune_channel_readers(tx.conn, after, batches.size)
            self._between_batches(batches, stop)

    def _collect(self, ids: list[int], before: float | None, stop: threading.Event) -> list[int]:
        """Delete the jobs among `ids` still finished (before `before`, when given) when their
        batch comes, until `stop`; the ids deleted. Call it within `Database.checkpointing`."""
        deleted: list[int] = []
        batches = retention.Batches()
        while batches.done < len(ids) and not stop.is_set():
            chunk = ids[batches.done : batches.done + batches.size]
            with self._tx(checkpoint=True) as tx:
                jobs = retention.still_to_go(tx.conn, chunk, before)
                if jobs:
                    self._delete(tx, jobs)
            self._between_batches(batches, stop)
            deleted += [job.id for job in jobs]
        return deleted

    def _between_batches(self, batches: retention.Batches, stop: threading.Event) -> None:
        """Size the next batch of a long deletion, and let other processes write."""
        batches.took(self._db.held())
        self._db.rest(stop)

    def _delete(self, tx: Tx, jobs: list[Job]) -> None:
        """Delete rows; pending dependents of a deleted unfinished job fail, others re-settle."""
        for job in jobs:
            if not lifecycle.deletable(job):
                state = "running" if job.status is Status.RUNNING else "about to start in a worker"
                raise IllegalTransition(f"job {job.id} is {state}: cancel it first", {"id": job.id})
        ids = [job.id for job in jobs]
        dependents = moves.pending_dependents(tx, ids)
        unfinished = {job.id for job in jobs if not job.finished}
        for job in jobs:
            tx.snapshots[job.id] = job
            tx.record("deleted", job.id)
            tx.doomed_jobs.append(job.id)
        functions = stored_once.named_by_jobs(tx.conn, ids)
        tx.conn.execute(f"DELETE FROM jobs WHERE id IN {IDS}", (json.dumps(ids),))
        stored_once.free(tx, self.files, functions)  # those no other job or type names
        failed = []
        for dependent, after_id in dependents:
            if after_id in unfinished and dependent not in failed and dependent not in ids:
                moves.fail(tx, dependent, Status.PENDING, lifecycle.after_deleted(after_id))
                failed.append(dependent)
        for dependent, _ in dependents:
            if dependent not in failed and dependent not in ids:
                moves.settle_pending(tx, dependent)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        return schema.load_one(self._db.conn(), job_id)

    def users_of(self, job_ids: Iterable[int]) -> dict[int, str]:
        """The user of each job among `job_ids` that exists (what authorization asks first)."""
        rows = self._db.conn().execute(
            f"SELECT id, user FROM jobs WHERE id IN {IDS}", (json.dumps(list(job_ids)),)
        )
        return dict(rows.fetchall())

    def get_many(self, job_ids: Iterable[int]) -> list[Job]:
        """The jobs that exist among `job_ids`, in the order asked (unknown ids are skipped)."""
        ids = list(job_ids)
        found = schema.load(self._db.conn(), ids)
        return [found[i] for i in ids if i in found]

    def finished_since(self, mark: int | None) -> tuple[list[int] | None, int]:
        """Ids of jobs that reached a terminal status after `mark`, and the new mark.

        `mark=None` just returns the current mark. `None` instead of ids means the log no longer
        reaches back to `mark` (it is pruned): re-read the jobs you wait for.
        """
        with self._db.read() as conn:
            return queries.finished_since(conn, mark)

    def finished_among(self, job_ids: Iterable[int]) -> tuple[list[Job], list[int]]:
        """The finished jobs among `job_ids` (in the order asked), and the ids that do not exist.

        For long polls that ask about hundreds of jobs of which a few have ended.
        """
        with self._db.read() as conn:
            return queries.finished_among(conn, list(job_ids))

    def query(
        self,
        *,
        status: Sequence[str] | None = None,
        owner: str | None = None,
        q: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        user: str | None = None,
        type: str | None = None,
    ) -> Page:
        """A page of jobs, newest first, plus counts per status for the same owner/user/type/q
        filter (`type`: typed jobs of that job type)."""
        with self._db.read() as conn:
            return queries.page(conn, status, owner, q, limit, cursor, user, type)

    def counts(
        self, owner: str | None = None, user: str | None = None, type: str | None = None
    ) -> dict[str, int]:
        """Jobs per status (all statuses present), optionally for one owner, user and/or job
        type."""
        return queries.counts(self._db.conn(), owner, user, type)

    def stats(self, user: str | None = None, type: str | None = None) -> dict[str, int | float]:
        """Counts per status (of `user`'s jobs and of job type `type`'s, when given: kept
        counts, no scan), database bytes (db + WAL) and workspace bytes (blobs + logs)."""
        with self._db.read() as conn:
            counts = queries.counts(conn, None, user, type)
            totals = queries.totals(conn)
        db_size = 0
        for suffix in ("", "-wal"):
            with suppress(FileNotFoundError):
                db_size += os.stat(f"{self.path}{suffix}").st_size
        return {
            **counts,
            "total": sum(counts.values()),
            "db_size": db_size,
            "workspace_bytes": totals["blob_bytes"] + totals["log_bytes"],
        }

    def overview(self, user: str | None = None, type: str | None = None) -> dict[str, Any]:
        """The queue in numbers (of `user`'s jobs and of job type `type`'s, when given), as
        `GET /jobs/api/stats` and `Jobs.stats()` give them: jobs per status, `running`,
        `queued` (waiting for a worker, claimed ones not started included), `pending` (held,
        or waiting for `after=` jobs or `run_at`), and the bytes used (the whole store's)."""
        numbers = self.stats(user, type)
        counts = {s.value: int(numbers.get(s.value, 0)) for s in Status}
        return {
            "counts": counts,
            "running": counts[Status.RUNNING.value],
            "queued": counts[Status.QUEUED.value],
            "pending": counts[Status.PENDING.value],
            "db_size": int(numbers["db_size"]),
            "workspace_bytes": int(numbers["workspace_bytes"]),
        }

    def peek(self) -> Job | None:
        """The job the next claim would take now, or None: the claim's own rule
        (`picking.pick`: priority, fair share, FIFO; only queued jobs whose time has come),
        asked without taking the job or noting anything."""
        with self._db.read() as conn:
            ids = picking.pick(conn, 1, now(), note=False)
            return schema.load_one(conn, ids[0]) if ids else None

    def result(self, job_id: int) -> bytes:
        """The result bytes of a succeeded job (b"" if it succeeded without a result), or of a
        failed or cancelled one whose last attempt sent some (a cell's names set before its
        error, a notebook as far as it ran).

        Raises `ResultNotReady` for a job that has no result (detail: its status).
        """
        data, path = self._result_row(job_id)
        return self.files.blob_bytes(data, path)

    def open_result(self, job_id: int) -> tuple[BinaryIO, int]:
        """`result` as an open file and its size, to be sent a piece at a time (a large
        result is never held whole); the caller closes it."""
        return self.files.open_blob(*self._result_row(job_id))

    def _result_row(self, job_id: int) -> tuple[bytes | None, str | None]:
        with self._db.read() as conn:
            found = conn.execute(
                "SELECT status, attempt FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if found is None:
                raise JobNotFound(job_id)
            row = conn.execute(
                "SELECT data, path, attempt FROM blobs WHERE job_id = ? AND kind = 'result'",
                (job_id,),
            ).fetchone()
        status, attempt = found
        if status != Status.SUCCEEDED.value and row is not None and row[2] != attempt:
            row = None  # an earlier attempt's (a failed cell's, since retried)
        if status != Status.SUCCEEDED.value and not (status in _ENDED_EARLY and row):
            raise ResultNotReady(
                f"job {job_id} is {status}: it has no result", {"id": job_id, "status": status}
            )
        return (b"", None) if row is None else (row[0], row[1])

    def outputs(self, job_id: int) -> bytes:
        """The captured display outputs (nbformat outputs JSON bytes; b"[]" when none)."""
        with self._db.read() as conn:
            schema.load_one(conn, job_id)
            data = self.files.get_blob(conn, job_id, "outputs")
        return b"[]" if data is None else data

    def read_log(self, job_id: int, offset: int = 0, limit: int = 2**20) -> tuple[bytes, int]:
        """Log bytes from `offset` (at most `limit`), and the offset to ask for next."""
        if offset < 0 or limit < 0:
            raise InvalidRequest("offset and limit must be zero or more")
        self.get(job_id)
        return self.files.read_log(job_id, offset, limit)

    def read_log_streams(
        self, job_id: int, offset: int = 0, limit: int = 2**20, stream: str | None = None
    ) -> tuple[Job, log_streams.LogSlice]:
        """The job, and `limit` bytes of its log from `offset`: of the whole log, cut by the
        stream each part belongs to, or (`stream`) of one stream, offsets in its own bytes.
        The slice lists every stream with its size."""
        with self._db.read() as conn, self.files.log_reader(job_id) as read:
            job = schema.load_one(conn, job_id)
            found = log_streams.read(conn, read, job_id, job.log_size, offset, limit, stream)
        return job, found


def _asked_to_drain(info: WorkerInfo) -> WorkerInfo:
    """A worker whose drain was asked for (its consumer has not acted yet): draining."""
    if info.state is WorkerStatus.RETIRING:
        return info
    return dataclasses.replace(info, state=WorkerStatus.DRAINING, drainable=False)
