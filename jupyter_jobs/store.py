"""The only module that speaks SQL: one SQLite file plus a workspace folder per job.

Why it is built this way:

- Every verb is one short transaction. A verb that reads and then writes starts with
  `BEGIN IMMEDIATE`, so two processes never both decide on the same row: this is what makes claims
  exactly-once per attempt, fencing reliable and idempotency keys unique.
- WAL with `synchronous=NORMAL`: a commit survives `kill -9` of any process without an fsync per
  job. WAL needs shared memory, which network filesystems do not provide, so there the store uses
  the rollback journal (or refuses, when WAL was asked for explicitly).
- Bytes over `inline_limit`, and logs, live in files in the database's own workspace folder
  (workspace.py), which refuses another database's files; a row that points to a file is written
  after the file, so a committed row never points to a missing file. Small jobs need no folder.
- The rules of a job's life live here once: the retry rule (`_end_attempt`), dependency
  resolution (`_resolve_dependents`), and every move is checked with `models.can_move`.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .doorbell import Doorbell, Listener
from .errors import (
    DatabaseNotFound,
    IllegalTransition,
    InvalidRequest,
    JobNotFound,
    ResultNotReady,
    StorageError,
    status_phrase,
)
from .models import (
    TERMINAL,
    Change,
    Job,
    JobError,
    JobSpec,
    Kind,
    Outcome,
    Page,
    Progress,
    Reason,
    Status,
    can_move,
    now,
)
from .oslayer import filesystem_type, make_private_dir
from .workspace import Reference, Workspace

log = logging.getLogger(__name__)

#: Filesystems where SQLite's WAL (shared-memory index) cannot work reliably.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "fuse.sshfs",
        "9p",
        "lustre",
        "gpfs",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "afs",
        "beegfs",
        "davfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
        "panfs",
    }
)

#: Failure reasons that the automatic retry rule retries (a payload or dependency failure would
#: fail the same way again; an expired job must not start late).
RETRYABLE = frozenset({Reason.ERROR, Reason.TIMEOUT, Reason.WORKER_LOST, Reason.INTERRUPTED})
MAX_PAGE = 500
#: Backoff doubles per attempt; past this exponent it stops growing (and floats stay finite).
_MAX_BACKOFF_EXPONENT = 30
BLOB_KINDS = ("payload", "result", "outputs")
#: Finished jobs are kept this long by default: the server's `JobsApp.retention_days`, and what
#: a bare `jupyter jobs gc` collects.
DEFAULT_RETENTION_DAYS = 30.0


def _sql(*statuses: Status) -> str:
    """Statuses as an SQL list, so SQL text names them through the `Status` enum."""
    return ", ".join(f"'{s.value}'" for s in statuses)


_PENDING = _sql(Status.PENDING)
_QUEUED = _sql(Status.QUEUED)
_RUNNING = _sql(Status.RUNNING)
_SUCCEEDED = _sql(Status.SUCCEEDED)
_FINISHED = _sql(*sorted(TERMINAL))
_BROKEN = _sql(Status.FAILED, Status.CANCELLED)
#: Running and claimed jobs, and only they, hold a lease (`Job.claimed`, models.TRANSITIONS).
_LEASED = "lease_until IS NOT NULL"

#: Forward migrations; `PRAGMA user_version` is how many have been applied. Append, never edit.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            owner TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            reason TEXT,
            priority INTEGER NOT NULL DEFAULT 0,
            attempt INTEGER NOT NULL DEFAULT 0,
            retries INTEGER NOT NULL DEFAULT 0,
            retry_delay REAL NOT NULL DEFAULT 1.0,
            retry_base INTEGER NOT NULL DEFAULT 0,
            worker_losses INTEGER NOT NULL DEFAULT 0,
            timeout REAL,
            after_ids TEXT NOT NULL DEFAULT '[]',
            hold INTEGER NOT NULL DEFAULT 0,
            run_at REAL,
            expires_at REAL,
            not_before REAL,
            created_at REAL NOT NULL,
            queued_at REAL,
            started_at REAL,
            finished_at REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            progress_done REAL,
            progress_total REAL,
            progress_message TEXT,
            progress_at REAL,
            error_type TEXT,
            error_message TEXT,
            error_traceback TEXT,
            interpreter TEXT,
            cwd TEXT,
            idempotency_key TEXT,
            options TEXT NOT NULL DEFAULT '{}',
            consumer TEXT,
            lease_until REAL,
            payload_size INTEGER NOT NULL DEFAULT 0,
            result_size INTEGER,
            log_size INTEGER NOT NULL DEFAULT 0,
            log_attempt INTEGER NOT NULL DEFAULT 0,
            log_truncated INTEGER NOT NULL DEFAULT 0,
            has_outputs INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE deps (
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            after_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            PRIMARY KEY (job_id, after_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX deps_after ON deps(after_id)",
        """CREATE TABLE blobs (
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0,
            size INTEGER NOT NULL,
            data BLOB,
            path TEXT,
            PRIMARY KEY (job_id, kind)
        )""",
        # partial: the many jobs without a key cost no index entry
        "CREATE UNIQUE INDEX jobs_key ON jobs(idempotency_key) WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX jobs_claim ON jobs(status, priority, owner, id)",
        "CREATE INDEX jobs_status ON jobs(status, id)",
        "CREATE INDEX jobs_owner ON jobs(owner, id)",
        "CREATE INDEX jobs_expires ON jobs(expires_at) WHERE expires_at IS NOT NULL",
        "CREATE INDEX jobs_not_before ON jobs(not_before) WHERE not_before IS NOT NULL",
        "CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL",
    ],
    [
        # when each owner last had a job claimed: the round-robin tie-break of fair share
        "CREATE TABLE owners (owner TEXT PRIMARY KEY, last_claim REAL NOT NULL) WITHOUT ROWID",
    ],
    [
        # Every arrival in a terminal status, numbered in commit order (writes are serialized),
        # so a waiter in another process reads only what finished since its mark.
        "CREATE TABLE finished_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER)",
        f"""CREATE TRIGGER finished_log_update AFTER UPDATE OF status ON jobs
            WHEN NEW.status IN ({_FINISHED}) AND OLD.status IS NOT NEW.status
            BEGIN INSERT INTO finished_log (job_id) VALUES (NEW.id); END""",
        f"""CREATE TRIGGER finished_log_insert AFTER INSERT ON jobs
            WHEN NEW.status IN ({_FINISHED})
            BEGIN INSERT INTO finished_log (job_id) VALUES (NEW.id); END""",
    ],
    [
        # The workspace id names this database's job files folder (workspace.py). A database
        # that already had jobs kept their files in a shared `jobs/` folder: `legacy_workspace`
        # asks the next open to move that folder, if it can be told to be this database's.
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        "INSERT INTO meta (key, value) VALUES ('workspace_id', lower(hex(randomblob(16))))",
        "INSERT INTO meta (key, value) SELECT 'legacy_workspace', '1' "
        "WHERE EXISTS (SELECT 1 FROM jobs)",
    ],
    [
        # The jobs consumers hold (running, or claimed and about to start): counted per owner on
        # every claim, scanned by recovery, their leases watched, without visiting the queue.
        f"CREATE INDEX jobs_leased ON jobs(lease_until) WHERE {_LEASED}",
    ],
]

#: How many finished_log entries to keep; a waiter whose mark is older re-reads its jobs.
_FINISHED_LOG_KEEP = 100_000

_COLUMNS = (
    "id, name, kind, owner, status, reason, priority, attempt, retries, retry_delay, "
    "worker_losses, timeout, after_ids, run_at, expires_at, not_before, created_at, queued_at, "
    "started_at, finished_at, cancel_requested, progress_done, progress_total, progress_message, "
    "progress_at, error_type, error_message, error_traceback, interpreter, cwd, idempotency_key, "
    "options, consumer, lease_until, payload_size, result_size, log_size, has_outputs"
)
_SELECT_JOBS = f"SELECT {_COLUMNS} FROM jobs"
_IDS = "(SELECT value FROM json_each(?))"

_INSERT_JOB = (
    "INSERT INTO jobs (name, kind, owner, status, reason, priority, retries, retry_delay, timeout, "
    "after_ids, hold, run_at, expires_at, created_at, queued_at, finished_at, error_type, "
    "error_message, interpreter, cwd, idempotency_key, options, payload_size) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_ELIGIBLE = "(not_before IS NULL OR not_before <= ?1) AND (expires_at IS NULL OR expires_at > ?1)"
# Queued jobs not claimed yet. (Claimed ones are the oldest few of their owners: a seek steps
# over at most the executors' slots.)
_CLAIMABLE = f"status = {_QUEUED} AND lease_until IS NULL"
_TOP_PRIORITY = (
    f"SELECT priority FROM jobs WHERE {_CLAIMABLE} AND priority < ?2 ORDER BY priority DESC LIMIT 1"
)
_FIRST_OWNER = (
    f"SELECT owner, id FROM jobs WHERE {_CLAIMABLE} AND priority = ?2 AND {_ELIGIBLE} "
    "ORDER BY owner, id LIMIT 1"
)
_NEXT_OWNER = (
    f"SELECT owner, id FROM jobs WHERE {_CLAIMABLE} AND priority = ?2 AND owner > ?3 "
    f"AND {_ELIGIBLE} ORDER BY owner, id LIMIT 1"
)
_NEXT_OF_OWNER = (
    f"SELECT id FROM jobs WHERE {_CLAIMABLE} AND priority = ?2 AND owner = ?3 "
    f"AND id > ?4 AND {_ELIGIBLE} ORDER BY id LIMIT 1"
)


def default_db_path() -> Path:
    """`{jupyter_data_dir}/jupyter_jobs/jobs.db`."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "jupyter_jobs" / "jobs.db"


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = text.partition(":")
        if version != "v1":
            raise ValueError(version)
        last_id = int(value)
        if not 0 <= last_id < 2**63:  # SQLite integers are 64-bit
            raise ValueError(value)
        return last_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(f"invalid cursor {cursor!r}") from None


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with LIKE's wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _job_from_row(r: Sequence[Any]) -> Job:
    progress = None
    if r[21] is not None:
        progress = Progress(done=r[21], total=r[22], message=r[23], at=r[24])
    error = None
    if r[25] is not None:
        error = JobError(type=r[25], message=r[26] or "", traceback=r[27] or "")
    return Job(
        id=r[0],
        name=r[1],
        kind=Kind(r[2]),
        owner=r[3],
        status=Status(r[4]),
        reason=Reason(r[5]) if r[5] else None,
        priority=r[6],
        attempt=r[7],
        retries=r[8],
        retry_delay=r[9],
        worker_losses=r[10],
        timeout=r[11],
        after=json.loads(r[12]) if r[12] != "[]" else [],
        run_at=r[13],
        expires_at=r[14],
        not_before=r[15],
        created_at=r[16],
        queued_at=r[17],
        started_at=r[18],
        finished_at=r[19],
        cancel_requested=bool(r[20]),
        progress=progress,
        error=error,
        interpreter=r[28],
        cwd=r[29],
        idempotency_key=r[30],
        options=json.loads(r[31]) if r[31] != "{}" else {},
        consumer=r[32],
        lease_until=r[33],
        payload_size=r[34],
        result_size=r[35],
        log_size=r[36],
        has_outputs=bool(r[37]),
    )


def _error_columns(error: JobError | None) -> dict[str, Any]:
    if error is None:
        return {"error_type": None, "error_message": None, "error_traceback": None}
    return {
        "error_type": error.type,
        "error_message": error.message,
        "error_traceback": error.traceback,
    }


@dataclass
class Claimed:
    """A job the consumer now holds (still queued until it starts), with the payload bytes to
    hand to the executor."""

    job: Job
    payload: bytes


@dataclass
class _Tx:
    """What one write transaction did, for what follows its commit (or rollback)."""

    conn: sqlite3.Connection
    now: float
    #: (what, job id, previous status) in order; one "transition" per job (the first previous)
    events: list[tuple[str, int, Status | None]] = field(default_factory=list)
    snapshots: dict[int, Job] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    obsolete: list[Path] = field(default_factory=list)
    doomed_jobs: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    moved: set[int] = field(default_factory=set)
    #: claims given back (no status changes: they were queued all along): others may take them
    released: bool = False

    def record(self, what: str, job_id: int, previous: Status | None = None) -> None:
        if what == "transition":
            if job_id in self.moved:
                return
            self.moved.add(job_id)
        self.events.append((what, job_id, previous))


def _refuse_foreign_file(path: Path) -> None:
    """A path to some other file (a typo in `--db`) is an error, before anything is changed:
    its mode, a workspace folder beside it."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot open the job database {path}: {exc}") from None
    if head and head != b"SQLite format 3\x00":
        raise StorageError(f"{path} is not a job database (not an SQLite file)")


class Store:
    """A job store on one SQLite file. Thread-safe: one connection per thread.

    Every verb is one short transaction (`BEGIN IMMEDIATE` for read-then-write). After a commit
    that changes jobs, subscribers get the `Change`s (in the calling thread), and other processes
    waiting on this database are woken through the doorbell.
    """

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
        poison_limit: int = 3,
    ) -> None:
        """Open the database at `path`, creating it unless `create=False` (then a missing file
        is `DatabaseNotFound`); its workspace folder must be its own (`WorkspaceConflict`)."""
        if journal_mode not in ("auto", "wal", "delete"):
            raise InvalidRequest(f"journal_mode must be auto, wal or delete, not {journal_mode!r}")
        self.path = Path(path if path is not None else default_db_path()).expanduser().absolute()
        self.workspace = Workspace(self.path)
        self.workspace_root = self.workspace.root
        self.log_limit = log_limit
        self.inline_limit = inline_limit
        self.poison_limit = poison_limit
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # This store's threads (a server's request threads and its consumer's writer) take
        # turns here: waiting on SQLite's lock instead sleeps 1, 2, 5... ms per try.
        self._writing = threading.Lock()
        self._subscribers: list[Callable[[list[Change]], None]] = []
        self._closed = False
        _refuse_foreign_file(self.path)
        if not self.path.exists():
            if not create:
                raise DatabaseNotFound(
                    f"there is no job database at {self.path}",
                    {"database": str(self.path)},
                )
            self.workspace.refuse_leftover()
        make_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        self.journal_mode = self._choose_journal_mode(journal_mode)
        conn = self._conn()
        try:
            self._set_journal_mode(conn)
            self._migrate(conn)
            self._open_workspace(conn)
        except BaseException:  # refused (e.g. another database's folder): nothing stays open
            self._closed = True
            conn.close()
            raise
        self._protect_side_files()
        self.doorbell = Doorbell(self.path.with_name(self.path.name + ".bells"))

    # -- connection, schema -------------------------------------------------------------------

    def _choose_journal_mode(self, requested: str) -> str:
        fstype = filesystem_type(self.path.parent)
        if requested == "delete" or fstype not in NETWORK_FILESYSTEMS:
            return "delete" if requested == "delete" else "wal"
        if requested == "wal":
            raise StorageError(
                f"the job database {self.path} is on a network filesystem ({fstype}), where "
                "SQLite's WAL mode is unsafe; use a local path for the database "
                "(e.g. under /tmp or a local disk), or journal_mode='auto'"
            )
        log.warning(
            "the job database %s is on a network filesystem (%s): using the rollback journal "
            "instead of WAL, which is slower and unsafe for several hosts; "
            "a local path for the database is better",
            self.path,
            fstype,
        )
        return "delete"

    def _set_journal_mode(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute(f"PRAGMA journal_mode = {self.journal_mode.upper()}").fetchone()[0]
        if mode.lower() != self.journal_mode:
            raise StorageError(
                f"could not switch {self.path} to journal_mode {self.journal_mode} (it is {mode}); "
                "is another process holding it open?"
            )

    def _protect_side_files(self) -> None:
        for suffix in ("-wal", "-shm", "-journal"):
            side = self.path.with_name(self.path.name + suffix)
            with suppress(FileNotFoundError):
                os.chmod(side, 0o600)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._write_tx(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StorageError(
                    f"{self.path} has schema version {version}, newer than this jupyter_jobs "
                    f"knows ({len(MIGRATIONS)}): upgrade jupyter_jobs"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number]:
                    conn.execute(statement)
            if version != len(MIGRATIONS):
                conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def _open_workspace(self, conn: sqlite3.Connection) -> None:
        """Check (or create) the workspace folder for this database's id; first, for a database
        from before workspace ids, take over its old `jobs/` folder when it is its own.

        Under the write lock, so two processes opening an old database do not both move it.
        """
        with self._write_tx(conn):
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

    @contextmanager
    def _write_tx(self, conn: sqlite3.Connection) -> Iterator[None]:
        with self._writing:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StorageError(f"the store on {self.path} is closed")
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn = conn
        with self._lock:
            self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection (of every thread) and the doorbell."""
        self._closed = True
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
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
    def _tx(self) -> Iterator[_Tx]:
        """One write transaction; after commit, tell subscribers and ring the doorbell."""
        conn = self._conn()
        with self._writing:
            conn.execute("BEGIN IMMEDIATE")
            tx = _Tx(conn, now())
            try:
                yield tx
                self._resolve_dependents(tx, tx.finished)
                self._snapshot(tx)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                for path in tx.written:
                    path.unlink(missing_ok=True)
                raise
        for path in tx.obsolete:
            path.unlink(missing_ok=True)
        for job_id in tx.doomed_jobs:
            self.workspace.remove_job(job_id)
        if tx.events or tx.released:
            self._publish(tx)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A short read transaction, so several SELECTs see one snapshot."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _snapshot(self, tx: _Tx) -> None:
        """Load the final state of every job the transaction touched (before COMMIT)."""
        missing = {e[1] for e in tx.events if e[1] not in tx.snapshots}
        if missing:
            tx.snapshots.update(self._load(tx.conn, missing))

    def _publish(self, tx: _Tx) -> None:
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
        with self._lock:
            subscribers = list(self._subscribers) if changes else []
        for callback in subscribers:
            try:
                callback(changes)
            except Exception:
                log.exception("job store subscriber %r failed", callback)
        if ring:
            try:
                self.doorbell.ring()
            except (
                OSError
            ) as exc:  # committed already: a failed wake-up must not look like a failure
                log.warning("could not ring the doorbell in %s: %s", self.doorbell.directory, exc)

    def _load(self, conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, Job]:
        rows = conn.execute(f"{_SELECT_JOBS} WHERE id IN {_IDS}", (json.dumps(list(ids)),))
        return {r[0]: _job_from_row(r) for r in rows.fetchall()}

    def _load_one(self, conn: sqlite3.Connection, job_id: int) -> Job:
        row = conn.execute(f"{_SELECT_JOBS} WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _job_from_row(row)

    def _move(self, tx: _Tx, job_id: int, current: Status, target: Status, **columns: Any) -> None:
        """The one place a status changes: checked against the transition table, recorded."""
        if not can_move(current, target):
            raise IllegalTransition.move(job_id, current, target)
        self._update(tx, job_id, status=target.value, **columns)
        tx.record("transition", job_id, current)
        if target in TERMINAL:
            tx.finished.append(job_id)

    @staticmethod
    def _update(tx: _Tx, job_id: int, **columns: Any) -> None:
        """Set columns of one row (a status goes through `_move`)."""
        assignments = ", ".join(f"{name} = ?" for name in columns)
        tx.conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*columns.values(), job_id))

    # -- files ---------------------------------------------------------------------------------

    def _put_blob(self, tx: _Tx, job_id: int, kind: str, attempt: int, data: bytes) -> None:
        """Store bytes inline or, when large, in a workspace file written before its row."""
        old = tx.conn.execute(
            "SELECT path FROM blobs WHERE job_id = ? AND kind = ?", (job_id, kind)
        ).fetchone()
        path = None
        if len(data) > self.inline_limit:
            name = kind if kind == "payload" else f"{kind}.{attempt}"
            target, path = self.workspace.write(job_id, name, data)
            tx.written.append(target)
        tx.conn.execute(
            "INSERT OR REPLACE INTO blobs (job_id, kind, attempt, size, data, path) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, kind, attempt, len(data), None if path else data, path),
        )
        if old and old[0] and old[0] != path:
            tx.obsolete.append(self.workspace.file(old[0]))

    def _get_blob(self, conn: sqlite3.Connection, job_id: int, kind: str) -> bytes | None:
        row = conn.execute(
            "SELECT data, path FROM blobs WHERE job_id = ? AND kind = ?", (job_id, kind)
        ).fetchone()
        if row is None:
            return None
        return self._blob_bytes(row[0], row[1])

    def _blob_bytes(self, data: bytes | None, path: str | None) -> bytes:
        if path is None:
            return bytes(data or b"")
        return self.workspace.read(path)

    # -- submit --------------------------------------------------------------------------------

    def enqueue(self, spec: JobSpec, payload: bytes) -> Job:
        """Store one job; with a known `idempotency_key`, return the existing job instead."""
        return self.enqueue_many([(spec, payload)])[0]

    def enqueue_many(self, items: Sequence[tuple[JobSpec, bytes]]) -> list[Job]:
        """Store many jobs in one transaction (all or none), in order; ids increase with order."""
        prepared = []
        for spec, payload in items:
            spec.validate()
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                raise InvalidRequest(f"payload must be bytes, got {type(payload).__name__}")
            try:
                options = json.dumps(spec.options, allow_nan=False)  # NaN is no JSON
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"options must be JSON: {exc}") from None
            prepared.append((spec, bytes(payload), options))
        if not prepared:
            return []
        with self._tx() as tx:  # numbers are in range: `validate` checked them
            after = {a for s, _, _ in prepared for a in s.after}
            ids = self._insert_jobs(tx, prepared, self._dep_statuses(tx.conn, after))
        return [tx.snapshots[job_id] for job_id in ids]

    def _dep_statuses(self, conn: sqlite3.Connection, after: set[int]) -> dict[int, Status]:
        if not after:
            return {}
        rows = conn.execute(
            f"SELECT id, status FROM jobs WHERE id IN {_IDS}", (json.dumps(sorted(after)),)
        ).fetchall()
        found = {r[0]: Status(r[1]) for r in rows}
        for job_id in sorted(after):
            if job_id not in found:
                raise JobNotFound(job_id)
        return found

    def _initial_state(
        self, spec: JobSpec, dep_status: dict[int, Status], at: float
    ) -> tuple[Status, Reason | None, JobError | None]:
        for after_id in spec.after:
            if dep_status[after_id] in (Status.FAILED, Status.CANCELLED):
                return Status.FAILED, Reason.DEPENDENCY_FAILED, self._dep_error(after_id)
        waiting = any(dep_status[a] is not Status.SUCCEEDED for a in spec.after)
        if spec.hold or waiting or (spec.run_at is not None and spec.run_at > at):
            return Status.PENDING, None, None
        return Status.QUEUED, None, None

    @staticmethod
    def _dep_error(after_id: int, what: str = "failed or was cancelled") -> JobError:
        return JobError("DependencyFailed", f"job {after_id}, which this job runs after, {what}")

    def _insert_jobs(
        self, tx: _Tx, prepared: list[tuple[JobSpec, bytes, str]], dep_status: dict[int, Status]
    ) -> list[int]:
        """Insert rows (a run of key-less jobs in one executemany), then payloads and deps."""
        ids: list[int] = []
        fresh: list[tuple[int, JobSpec, bytes, tuple[Any, ...]]] = []
        run: list[tuple[JobSpec, bytes, tuple[Any, ...]]] = []

        def flush() -> None:
            if not run:
                return
            tx.conn.executemany(_INSERT_JOB, [row for _, _, row in run])
            last = tx.conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            for offset, (spec, payload, row) in enumerate(run):
                job_id = last - len(run) + 1 + offset
                ids.append(job_id)
                fresh.append((job_id, spec, payload, row))
            run.clear()

        for spec, payload, options in prepared:
            status, reason, error = self._initial_state(spec, dep_status, tx.now)
            row = (
                spec.name,
                spec.kind.value,
                spec.owner,
                status.value,
                reason.value if reason else None,
                spec.priority,
                spec.retries,
                float(spec.retry_delay),
                spec.timeout,
                json.dumps(spec.after),
                int(spec.hold),
                spec.run_at,
                spec.expires_at,
                tx.now,
                tx.now if status is Status.QUEUED else None,
                tx.now if status is Status.FAILED else None,
                error.type if error else None,
                error.message if error else None,
                spec.interpreter,
                spec.cwd,
                spec.idempotency_key,
                options,
                len(payload),
            )
            if spec.idempotency_key is None:
                run.append((spec, payload, row))
                continue
            flush()
            cursor = tx.conn.execute(
                _INSERT_JOB
                + " ON CONFLICT(idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
                row,
            )
            if cursor.rowcount == 1:
                ids.append(cursor.lastrowid)
                fresh.append((cursor.lastrowid, spec, payload, row))
            else:
                existing = tx.conn.execute(
                    "SELECT id FROM jobs WHERE idempotency_key = ?", (spec.idempotency_key,)
                ).fetchone()[0]
                ids.append(existing)
                tx.snapshots[existing] = self._load_one(tx.conn, existing)
        flush()
        inline = []
        for job_id, spec, payload, row in fresh:
            if len(payload) > self.inline_limit:
                self._put_blob(tx, job_id, "payload", 0, payload)
            else:
                inline.append((job_id, len(payload), payload))
            tx.snapshots[job_id] = self._fresh_job(job_id, spec, row)
            tx.record("created", job_id)
            if row[3] == Status.FAILED.value:
                tx.finished.append(job_id)
        tx.conn.executemany(
            "INSERT INTO blobs (job_id, kind, attempt, size, data) VALUES (?, 'payload', 0, ?, ?)",
            inline,
        )
        tx.conn.executemany(
            "INSERT INTO deps (job_id, after_id) VALUES (?, ?)",
            [(job_id, a) for job_id, spec, _, _ in fresh for a in dict.fromkeys(spec.after)],
        )
        return ids

    @staticmethod
    def _fresh_job(job_id: int, spec: JobSpec, row: tuple[Any, ...]) -> Job:
        """The Job just inserted, built without reading it back (enqueue is on the hot path)."""
        error = JobError(row[16], row[17]) if row[16] else None
        return Job(
            id=job_id,
            name=spec.name,
            kind=spec.kind,
            owner=spec.owner,
            status=Status(row[3]),
            reason=Reason(row[4]) if row[4] else None,
            priority=spec.priority,
            retries=spec.retries,
            retry_delay=float(spec.retry_delay),
            timeout=spec.timeout,
            after=list(spec.after),
            run_at=spec.run_at,
            expires_at=spec.expires_at,
            created_at=row[13],
            queued_at=row[14],
            finished_at=row[15],
            error=error,
            interpreter=spec.interpreter,
            cwd=spec.cwd,
            idempotency_key=spec.idempotency_key,
            options=json.loads(row[21]) if row[21] != "{}" else {},
            payload_size=row[22],
        )

    # -- consumer ------------------------------------------------------------------------------

    def claim(self, consumer: str, limit: int, lease: float) -> list[Claimed]:
        """Claim up to `limit` queued jobs for `consumer`, in priority, fair-share, FIFO order.

        A claimed job is leased to `consumer` and its attempt is counted, so no other consumer
        takes it and every report about it is fenced; it stays queued until `start`. Within a
        priority, the owner with the fewest jobs held by consumers (counting this batch) goes
        first, so one notebook's thousand jobs do not starve another's one. The order is found
        with index seeks per owner, never a scan of the whole queue.
        """
        if limit <= 0:
            return []
        if not can_move(Status.QUEUED, Status.RUNNING):
            raise IllegalTransition("the transition table does not let queued jobs start")
        with self._tx() as tx:
            claimed = self._claim(tx, consumer, limit, lease)
        return self._claimed(tx, claimed)

    def _claim(
        self, tx: _Tx, consumer: str, limit: int, lease: float
    ) -> list[tuple[int, bytes | None, str | None]]:
        """Inside a transaction: lease the picked jobs; their ids and payload places.

        Not a change anyone is told of: the jobs are as queued as before, until they start."""
        ids = self._pick(tx.conn, limit, tx.now)
        if not ids:
            return []
        tx.conn.execute(
            "UPDATE jobs SET attempt = attempt + 1, started_at = NULL, consumer = ?, "
            "lease_until = ?, cancel_requested = 0, not_before = NULL, progress_done = NULL, "
            "progress_total = NULL, progress_message = NULL, progress_at = NULL "
            f"WHERE id IN {_IDS}",
            (consumer, tx.now + lease, json.dumps(ids)),
        )
        tx.snapshots.update(self._load(tx.conn, ids))
        blobs = {
            r[0]: (r[1], r[2])
            for r in tx.conn.execute(
                f"SELECT job_id, data, path FROM blobs WHERE kind = 'payload' AND job_id IN {_IDS}",
                (json.dumps(ids),),
            ).fetchall()
        }
        return [(i, *blobs.get(i, (b"", None))) for i in ids]

    def _claimed(
        self, tx: _Tx, claimed: list[tuple[int, bytes | None, str | None]]
    ) -> list[Claimed]:
        """After the commit: the claimed jobs as records with their payload bytes."""
        return [Claimed(tx.snapshots[i], self._blob_bytes(data, path)) for i, data, path in claimed]

    def _pick(self, conn: sqlite3.Connection, limit: int, at: float) -> list[int]:
        """Ids to claim: priority, then fewest held per owner, then round-robin, then FIFO.

        Owners with as many jobs running or claimed are served in turn (the one claimed from
        longest ago first), so one worker still alternates between notebooks instead of draining
        the oldest.
        """
        # (Without INDEXED BY, SQLite would rather walk the owner index of every job.)
        running = dict(
            conn.execute(
                f"SELECT owner, COUNT(*) FROM jobs INDEXED BY jobs_leased WHERE {_LEASED} "
                "GROUP BY owner"
            ).fetchall()
        )
        picked: list[int] = []
        served: dict[str, int] = {}
        bound: float = float("inf")
        while len(picked) < limit:
            top = conn.execute(_TOP_PRIORITY, (at, bound)).fetchone()
            if top is None:
                break
            priority = bound = top[0]
            first: dict[str, int] = {}
            row = conn.execute(_FIRST_OWNER, (at, priority)).fetchone()
            while row is not None:
                first[row[0]] = row[1]
                row = conn.execute(_NEXT_OWNER, (at, priority, row[0])).fetchone()
            last_claim = dict(
                conn.execute(
                    f"SELECT owner, last_claim FROM owners WHERE owner IN {_IDS}",
                    (json.dumps(list(first)),),
                ).fetchall()
            )
            # (running, last served, order served in this batch, head id, owner)
            heads = [
                (
                    running.get(o, 0),
                    at if o in served else last_claim.get(o, 0.0),
                    served.get(o, 0),
                    i,
                    o,
                )
                for o, i in first.items()
            ]
            heapq.heapify(heads)
            while heads and len(picked) < limit:
                count, _, _, job_id, owner = heapq.heappop(heads)
                picked.append(job_id)
                running[owner] = count + 1
                served[owner] = len(picked)
                if len(picked) == limit:
                    break
                following = conn.execute(_NEXT_OF_OWNER, (at, priority, owner, job_id)).fetchone()
                if following is not None:
                    heapq.heappush(heads, (count + 1, at, len(picked), following[0], owner))
        conn.executemany(
            "INSERT INTO owners (owner, last_claim) VALUES (?, ?) "
            "ON CONFLICT(owner) DO UPDATE SET last_claim = excluded.last_claim",
            [(owner, at) for owner in served],
        )
        return picked

    def heartbeat(self, consumer: str, job_ids: Iterable[int], lease: float) -> list[int]:
        """Extend the lease of `consumer`'s running and claimed jobs; returns those asked to
        cancel."""
        ids = json.dumps(list(job_ids))
        with self._tx() as tx:
            tx.conn.execute(
                f"UPDATE jobs SET lease_until = ? WHERE {_LEASED} AND consumer = ? "
                f"AND id IN {_IDS}",
                (tx.now + lease, consumer, ids),
            )
            rows = tx.conn.execute(
                f"SELECT id FROM jobs WHERE {_LEASED} AND consumer = ? "
                f"AND cancel_requested = 1 AND id IN {_IDS}",
                (consumer, ids),
            ).fetchall()
        return [r[0] for r in rows]

    def cancel_requested(self, consumer: str) -> list[tuple[int, int]]:
        """(id, attempt) of `consumer`'s running or claimed jobs that someone asked to cancel."""
        rows = (
            self._conn()
            .execute(
                f"SELECT id, attempt FROM jobs WHERE {_LEASED} AND consumer = ? "
                "AND cancel_requested = 1",
                (consumer,),
            )
            .fetchall()
        )
        return [(r[0], r[1]) for r in rows]

    def set_progress(self, job_id: int, attempt: int, progress: Progress) -> bool:
        """Record progress of a running attempt; False (nothing written) for a stale attempt."""
        return self.set_progress_many([(job_id, attempt, progress)])[0]

    def set_progress_many(self, items: Sequence[tuple[int, int, Progress]]) -> list[bool]:
        """`set_progress` for many jobs in one transaction."""
        if not items:
            return []
        with self._tx() as tx:
            return [self._set_progress(tx, *item) for item in items]

    def _set_progress(self, tx: _Tx, job_id: int, attempt: int, progress: Progress) -> bool:
        cursor = tx.conn.execute(
            "UPDATE jobs SET progress_done = ?, progress_total = ?, progress_message = ?, "
            f"progress_at = ? WHERE id = ? AND status = {_RUNNING} AND attempt = ?",
            (
                progress.done,
                progress.total,
                progress.message,
                progress.at if progress.at is not None else tx.now,
                job_id,
                attempt,
            ),
        )
        if cursor.rowcount == 1:
            tx.record("progress", job_id)
        return cursor.rowcount == 1

    def append_log(self, job_id: int, attempt: int, data: bytes) -> int:
        """Append to the job's log; returns the new log size, or -1 for a stale attempt."""
        return self.append_log_many([(job_id, attempt, data)])[0]

    def append_log_many(self, items: Sequence[tuple[int, int, bytes]]) -> list[int]:
        """`append_log` for many chunks (any jobs) in one transaction, in order."""
        if not items:
            return []
        sizes = []
        with self._tx() as tx:
            for job_id, attempt, data in items:
                sizes.append(self._append_log(tx, job_id, attempt, bytes(data)))
        return sizes

    def _append_log(self, tx: _Tx, job_id: int, attempt: int, data: bytes) -> int:
        row = tx.conn.execute(
            "SELECT status, attempt, log_size, log_attempt, log_truncated FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        if row is None or row[0] != Status.RUNNING.value or row[1] != attempt:
            return -1
        size, log_attempt, truncated = row[2], row[3], row[4]
        if truncated or not data:
            return size
        if attempt > 1 and log_attempt != attempt:
            data = f"--- attempt {attempt} ---\n".encode() + data
        room = max(0, self.log_limit - size)
        if len(data) > room:
            data = (
                data[:room]
                + f"\n[jupyter_jobs: log truncated at {self.log_limit} bytes]\n".encode()
            )
            truncated = 1
        size = self.workspace.append_log(job_id, data)
        tx.conn.execute(
            "UPDATE jobs SET log_size = ?, log_attempt = ?, log_truncated = ? WHERE id = ?",
            (size, attempt, truncated, job_id),
        )
        return size

    def start(self, job_id: int, attempt: int, at: float | None = None) -> bool:
        """Record that a claimed attempt's code began in a worker at `at` (default: now):
        `queued -> running`, `started_at = at`. False (nothing written) for a stale attempt."""
        with self._tx() as tx:
            return self._start(tx, job_id, attempt, tx.now if at is None else at)

    def _start(self, tx: _Tx, job_id: int, attempt: int, at: float) -> bool:
        # Fenced like every report: only this attempt's claim starts (not a retry's queued row).
        if not can_move(Status.QUEUED, Status.RUNNING):
            raise IllegalTransition("the transition table does not let queued jobs start")
        cursor = tx.conn.execute(
            f"UPDATE jobs SET status = ?, started_at = ? WHERE id = ? AND status = {_QUEUED} "
            f"AND attempt = ? AND {_LEASED}",
            (Status.RUNNING.value, at, job_id, attempt),
        )
        if cursor.rowcount == 1:
            tx.record("transition", job_id, Status.QUEUED)
        return cursor.rowcount == 1

    def finish(self, job_id: int, attempt: int, outcome: Outcome) -> Job | None:
        """Record how an attempt ended; None (nothing written) when the attempt is stale."""
        return self.finish_many([(job_id, attempt, outcome)])[0]

    def finish_many(self, items: Sequence[tuple[int, int, Outcome]]) -> list[Job | None]:
        """`finish` for many attempts in one transaction."""
        return self.record(outcomes=items)

    def record(
        self,
        logs: Sequence[tuple[int, int, bytes]] = (),
        progress: Sequence[tuple[int, int, Progress]] = (),
        outcomes: Sequence[tuple[int, int, Outcome]] = (),
        starts: Sequence[tuple[int, int, float]] = (),
    ) -> list[Job | None]:
        """Starts, logs, progress and outcomes of many attempts, in one transaction.

        This is the consumer's flush: one commit instead of one per kind. Each item is fenced by
        its attempt like `start`, `append_log`, `set_progress` and `finish`; returns what
        `finish_many` returns for `outcomes`.
        """
        return self.record_and_claim(logs, progress, outcomes, starts=starts)[0]

    def record_and_claim(
        self,
        logs: Sequence[tuple[int, int, bytes]] = (),
        progress: Sequence[tuple[int, int, Progress]] = (),
        outcomes: Sequence[tuple[int, int, Outcome]] = (),
        claim: tuple[str, int, float] | None = None,
        starts: Sequence[tuple[int, int, float]] = (),
    ) -> tuple[list[Job | None], list[Claimed]]:
        """`record`, then `claim(*claim)` for the slots that freed up, in the same transaction.

        A consumer's steady state is "this job ended, the next one began, claim another": one
        commit for all of it keeps the cost of every job low. `starts` are (job id, attempt,
        when its code began).
        """
        for _, _, outcome in outcomes:
            if outcome.status not in TERMINAL and outcome.status is not Status.QUEUED:
                raise InvalidRequest(f"an outcome must be finished or queued, not {outcome.status}")
        if not (starts or logs or progress or outcomes or (claim and claim[1] > 0)):
            return [], []
        ending = {job_id for job_id, _, _ in outcomes}
        with self._tx() as tx:
            # A worker ends one job before it starts the next: the jobs that ended are written
            # first, so the change events of this one commit keep that order.
            self._report(tx, starts, logs, progress, lambda job_id: job_id in ending)
            done = [self._finish(tx, *item) for item in outcomes]
            self._report(tx, starts, logs, progress, lambda job_id: job_id not in ending)
            # A claim given back, or retried before it started, changed no status: no snapshot.
            ended = [i for (i, _, _), ok in zip(outcomes, done, strict=True) if ok]
            tx.snapshots.update(self._load(tx.conn, [i for i in ended if i not in tx.snapshots]))
            claimed = self._claim(tx, *claim) if claim and claim[1] > 0 else []
        finished = [
            tx.snapshots.get(job_id) if ok else None
            for (job_id, _, _), ok in zip(outcomes, done, strict=True)
        ]
        return finished, self._claimed(tx, claimed)

    def _report(
        self,
        tx: _Tx,
        starts: Sequence[tuple[int, int, float]],
        logs: Sequence[tuple[int, int, bytes]],
        progress: Sequence[tuple[int, int, Progress]],
        among: Callable[[int], bool],
    ) -> None:
        """Starts, then logs, then progress of the jobs `among` picks (a log needs its start)."""
        for job_id, attempt, at in starts:
            if among(job_id):
                self._start(tx, job_id, attempt, at)
        for job_id, attempt, data in logs:
            if among(job_id):
                self._append_log(tx, job_id, attempt, bytes(data))
        for item in progress:
            if among(item[0]):
                self._set_progress(tx, *item)

    def _finish(self, tx: _Tx, job_id: int, attempt: int, outcome: Outcome) -> bool:
        row = tx.conn.execute(
            "SELECT status, attempt, cancel_requested, lease_until FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        if row is None or row[1] != attempt or row[3] is None:  # stale, or neither held nor run
            return False
        current = Status(row[0])
        if current is Status.QUEUED and outcome.status is Status.QUEUED:
            self._unclaim(tx, job_id, attempt, bool(row[2]))
            return True
        if current is Status.QUEUED and outcome.status is Status.SUCCEEDED:
            # It ran, though no start was reported (the executor could not tell when): it
            # started as it ended, as far as anyone knows.
            self._start(tx, job_id, attempt, tx.now)
            current = Status.RUNNING
        if outcome.outputs is not None:
            self._put_blob(tx, job_id, "outputs", attempt, outcome.outputs)
            tx.conn.execute("UPDATE jobs SET has_outputs = 1 WHERE id = ?", (job_id,))
        done = {"finished_at": tx.now, "lease_until": None, "cancel_requested": 0}
        if outcome.status is Status.SUCCEEDED:
            if outcome.result is not None:
                self._put_blob(tx, job_id, "result", attempt, outcome.result)
            size = None if outcome.result is None else len(outcome.result)
            self._move(
                tx, job_id, current, Status.SUCCEEDED, reason=None, result_size=size,
                **_error_columns(None), **done,
            )  # fmt: skip
        elif outcome.status is Status.CANCELLED:
            self._move(
                tx, job_id, current, Status.CANCELLED, reason=None,
                **_error_columns(outcome.error), **done,
            )  # fmt: skip
        else:
            if outcome.result is not None:  # a failed cell's names set before its error
                self._put_blob(tx, job_id, "result", attempt, outcome.result)
            reason = outcome.reason or Reason.ERROR
            self._end_attempt(tx, job_id, reason, self._failure_error(reason, outcome))
        return True

    def _unclaim(self, tx: _Tx, job_id: int, attempt: int, cancel: bool) -> None:
        """A claimed attempt that never started (its executor stopped first) is given back
        uncounted, as if never claimed; a cancel asked for meanwhile wins."""
        if cancel:
            self._move(
                tx, job_id, Status.QUEUED, Status.CANCELLED, reason=None, finished_at=tx.now,
                lease_until=None, cancel_requested=0,
            )  # fmt: skip
            return
        self._update(
            tx, job_id, attempt=attempt - 1, consumer=None, lease_until=None, cancel_requested=0
        )
        tx.released = True

    @staticmethod
    def _failure_error(reason: Reason, outcome: Outcome) -> JobError:
        error = outcome.error or JobError(
            "WorkerLost" if reason is Reason.WORKER_LOST else reason.value.title(),
            "the worker process died" if reason is Reason.WORKER_LOST else f"failed ({reason})",
        )
        if reason is Reason.WORKER_LOST and outcome.exit and outcome.exit not in error.message:
            error = JobError(error.type, f"{error.message} ({outcome.exit})", error.traceback)
        return error

    def _end_attempt(self, tx: _Tx, job_id: int, reason: Reason, error: JobError) -> None:
        """The retry rule, in its one place: requeue with backoff while attempts remain.

        Attempts count from the last explicit retry (`retry_base`), so a retried job gets its
        retries again. A job that lost its worker `poison_limit` times is never retried: it
        probably kills whatever runs it. A job someone asked to cancel ends cancelled, whatever
        its last attempt did.
        """
        status, attempt, retries, base, delay, losses, cancel = tx.conn.execute(
            "SELECT status, attempt, retries, retry_base, retry_delay, worker_losses, "
            "cancel_requested FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        current = Status(status)  # running, or claimed (it failed before it began)
        if cancel:
            self._move(
                tx, job_id, current, Status.CANCELLED, reason=None, finished_at=tx.now,
                lease_until=None, cancel_requested=0, **_error_columns(error),
            )  # fmt: skip
            return
        if reason is Reason.WORKER_LOST:
            losses += 1
        used = attempt - base
        poisoned = reason is Reason.WORKER_LOST and losses >= self.poison_limit
        if poisoned:
            error = JobError(
                error.type,
                f"{error.message}; not retried: it lost its worker {losses} times "
                f"(poison limit {self.poison_limit})",
                error.traceback,
            )
        columns = {"worker_losses": losses, "lease_until": None, **_error_columns(error)}
        if reason in RETRYABLE and used <= retries and not poisoned:
            backoff = delay * 2 ** min(max(used - 1, 0), _MAX_BACKOFF_EXPONENT)
            again = {"queued_at": tx.now, "not_before": tx.now + backoff, "started_at": None}
            if current is Status.QUEUED:  # a claim that failed to start: it ends, still queued
                self._update(tx, job_id, **again, **columns)
                tx.released = True
            else:
                self._move(tx, job_id, current, Status.QUEUED, reason=None, **again, **columns)
        else:
            self._move(
                tx, job_id, current, Status.FAILED, reason=reason.value,
                finished_at=tx.now, **columns,
            )  # fmt: skip

    def _resolve_dependents(self, tx: _Tx, finished: list[int]) -> None:
        """Pending jobs waiting on jobs that just finished: queue them, or fail them in turn."""
        work = list(dict.fromkeys(finished))
        tx.finished = []
        while work:
            rows = tx.conn.execute(
                f"SELECT DISTINCT d.job_id FROM deps d JOIN jobs j ON j.id = d.job_id "
                f"WHERE d.after_id IN {_IDS} AND j.status = {_PENDING}",
                (json.dumps(work),),
            ).fetchall()
            work = []
            for (job_id,) in rows:
                if self._settle_pending(tx, job_id):
                    work.append(job_id)
            tx.finished = []

    def _settle_pending(self, tx: _Tx, job_id: int) -> bool:
        """Queue or fail one pending job according to its deps; True if it failed."""
        deps = tx.conn.execute(
            "SELECT d.after_id, j.status FROM deps d JOIN jobs j ON j.id = d.after_id "
            "WHERE d.job_id = ?",
            (job_id,),
        ).fetchall()
        for after_id, status in deps:
            if status in (Status.FAILED.value, Status.CANCELLED.value):
                self._move(
                    tx, job_id, Status.PENDING, Status.FAILED,
                    reason=Reason.DEPENDENCY_FAILED.value, finished_at=tx.now,
                    **_error_columns(self._dep_error(after_id, f"ended {status}")),
                )  # fmt: skip
                return True
        if any(status != Status.SUCCEEDED.value for _, status in deps):
            return False
        hold, run_at = tx.conn.execute(
            "SELECT hold, run_at FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if not hold and (run_at is None or run_at <= tx.now):
            self._move(tx, job_id, Status.PENDING, Status.QUEUED, queued_at=tx.now)
        return False

    def promote(self) -> list[Job]:
        """Expire jobs past `expires_at`; queue pending jobs whose time came and deps succeeded."""
        with self._tx() as tx:
            expired = tx.conn.execute(
                f"SELECT id, status FROM jobs WHERE expires_at <= ? "
                f"AND +status IN ({_PENDING}, {_QUEUED}) AND attempt = retry_base",
                (tx.now,),
            ).fetchall()
            for job_id, status in expired:
                self._move(
                    tx, job_id, Status(status), Status.FAILED, reason=Reason.EXPIRED.value,
                    finished_at=tx.now,
                    **_error_columns(JobError("Expired", "not started before its expires_at")),
                )  # fmt: skip
            self._resolve_dependents(tx, tx.finished)
            due = tx.conn.execute(
                f"SELECT id FROM jobs WHERE status = {_PENDING} AND hold = 0 "
                "AND (run_at IS NULL OR run_at <= ?)",
                (tx.now,),
            ).fetchall()
            for (job_id,) in due:
                self._settle_pending(tx, job_id)
            changed = [e[1] for e in tx.events]
        return [tx.snapshots[i] for i in changed]

    def recover(self, is_alive: Callable[[str], bool]) -> list[Job]:
        """End attempts whose lease ran out or whose consumer is gone (reason `interrupted`,
        retried where the job allows).

        A claimed attempt that was never recorded as started ends the same way: its start may
        have happened in the moments before its consumer died, unwritten, and an attempt that
        may have run is counted, so a job never runs more often than its attempts say. (A
        consumer that stops cleanly knows, and gives such claims back uncounted.)

        `is_alive` is called outside the transaction (it may be slow); each candidate is then
        checked again under the write lock, so a job that finished meanwhile is left alone.
        """
        at = now()
        rows = (
            self._conn()
            .execute(f"SELECT id, status, attempt, consumer, lease_until FROM jobs WHERE {_LEASED}")
            .fetchall()
        )
        alive: dict[str, bool] = {}
        lost = []
        for job_id, status, attempt, consumer, lease_until in rows:
            if consumer not in alive:
                alive[consumer] = bool(consumer) and is_alive(consumer)
            if lease_until < at:
                lost.append((job_id, status, attempt, consumer, "its lease expired"))
            elif not alive[consumer]:
                lost.append((job_id, status, attempt, consumer, "its process is gone"))
        if not lost:
            return []
        ended: list[int] = []
        with self._tx() as tx:
            for job_id, status, attempt, consumer, why in lost:
                current = tx.conn.execute(
                    f"SELECT status, attempt, consumer FROM jobs WHERE id = ? AND {_LEASED}",
                    (job_id,),
                ).fetchone()
                if current != (status, attempt, consumer):
                    continue
                ended.append(job_id)
                held = "running" if status == Status.RUNNING.value else "about to start"
                error = JobError(
                    "Interrupted", f"the consumer {consumer} holding attempt {attempt} ({held}) "
                    f"was lost ({why})",
                )  # fmt: skip
                self._end_attempt(tx, job_id, Reason.INTERRUPTED, error)
            # (a claim requeued for a retry changed no status: it has no snapshot yet)
            tx.snapshots.update(self._load(tx.conn, [i for i in ended if i not in tx.snapshots]))
        return [tx.snapshots[i] for i in ended]

    def next_due(self) -> float | None:
        """The earliest future time a time-based rule applies (call `promote` first).

        Leases of running and claimed jobs are included even when already past, so that the
        caller runs `recover` for them. (`+status` keeps SQLite on the small partial time
        indexes rather than the status index, which would visit every queued job.)
        """
        at = now()
        row = (
            self._conn()
            .execute(
                "SELECT MIN(t) FROM ("
                f"SELECT MIN(run_at) AS t FROM jobs WHERE status = {_PENDING} AND hold = 0 "
                "AND run_at > ?1 "
                f"UNION ALL SELECT MIN(not_before) FROM jobs WHERE +status = {_QUEUED} "
                "AND not_before > ?1 "
                f"UNION ALL SELECT MIN(expires_at) FROM jobs WHERE +status IN ({_PENDING}, "
                f"{_QUEUED}) AND expires_at > ?1 AND attempt = retry_base "
                f"UNION ALL SELECT MIN(lease_until) FROM jobs WHERE {_LEASED})",
                (at,),
            )
            .fetchone()
        )
        return row[0]

    # -- actions -------------------------------------------------------------------------------

    def request_cancel(self, job_id: int) -> Job:
        """Cancel a pending or queued job now; ask the consumer to stop a running one, or to
        take a claimed one back from its executor (it ends cancelled once it has)."""
        with self._tx() as tx:
            job = self._load_one(tx.conn, job_id)
            if job.status is Status.RUNNING or job.claimed:
                if not job.cancel_requested:
                    tx.conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
                    tx.record("cancel_requested", job_id)
            else:
                self._move(tx, job_id, job.status, Status.CANCELLED, finished_at=tx.now)
            self._resolve_dependents(tx, tx.finished)
            self._snapshot(tx)
            return tx.snapshots.get(job_id) or job

    def retry(self, job_id: int) -> Job:
        """Run a failed or cancelled job again (its deps must not have failed)."""
        with self._tx() as tx:
            job = self._load_one(tx.conn, job_id)
            if job.status not in (Status.FAILED, Status.CANCELLED):
                raise IllegalTransition(
                    f"job {job_id} {status_phrase(job.status)}; only failed or cancelled jobs "
                    "can be retried",
                    {"id": job_id, "status": job.status.value},
                )
            deps = tx.conn.execute(
                "SELECT d.after_id, j.status FROM deps d JOIN jobs j ON j.id = d.after_id "
                "WHERE d.job_id = ?",
                (job_id,),
            ).fetchall()
            for after_id, status in deps:
                if status in (Status.FAILED.value, Status.CANCELLED.value):
                    raise IllegalTransition(
                        f"job {job_id} runs after job {after_id}, which {status}: retry that "
                        "one first",
                        {"id": job_id, "after": after_id},
                    )
            expires_at = job.expires_at
            if expires_at is not None and expires_at <= tx.now:
                expires_at = None  # an explicit retry must not expire again at once
            self._move(
                tx, job_id, job.status, Status.QUEUED, reason=None, cancel_requested=0,
                worker_losses=0, not_before=None, started_at=None, finished_at=None,
                queued_at=tx.now, retry_base=job.attempt, expires_at=expires_at,
                lease_until=None, **_error_columns(None),
            )  # fmt: skip
            if any(status != Status.SUCCEEDED.value for _, status in deps):
                self._move(tx, job_id, Status.QUEUED, Status.PENDING, queued_at=None)
            self._snapshot(tx)
            return tx.snapshots[job_id]

    def release(self, job_id: int) -> Job:
        """Let a job submitted with `hold=True` run (queued now if its deps and time allow)."""
        with self._tx() as tx:
            job = self._load_one(tx.conn, job_id)
            if job.status is not Status.PENDING:
                raise IllegalTransition(
                    f"job {job_id} {status_phrase(job.status)}; only pending jobs can be released",
                    {"id": job_id, "status": job.status.value},
                )
            tx.conn.execute("UPDATE jobs SET hold = 0 WHERE id = ?", (job_id,))
            self._settle_pending(tx, job_id)
            self._snapshot(tx)
            return self._load_one(tx.conn, job_id)

    def delete(self, job_id: int) -> None:
        """Remove a job that is not running, with its payload, result, logs and workspace."""
        with self._tx() as tx:
            job = self._load_one(tx.conn, job_id)
            self._delete(tx, [job])

    def clear_finished(self) -> list[int]:
        """Delete every finished job in one transaction, with its files; the ids deleted.

        Pending, queued and running jobs are never touched: "finished" is `models.TERMINAL`.
        """
        with self._tx() as tx:
            ids = [
                r[0]
                for r in tx.conn.execute(
                    f"SELECT id FROM jobs WHERE status IN ({_FINISHED}) ORDER BY id"
                ).fetchall()
            ]
            if ids:
                self._delete(tx, list(self._load(tx.conn, ids).values()))
        return ids

    def _delete(self, tx: _Tx, jobs: list[Job]) -> None:
        """Delete rows; pending dependents of a deleted unfinished job fail, others re-settle."""
        for job in jobs:
            if job.status is Status.RUNNING or job.claimed:
                state = "running" if job.status is Status.RUNNING else "about to start in a worker"
                raise IllegalTransition(f"job {job.id} is {state}: cancel it first", {"id": job.id})
        ids = [job.id for job in jobs]
        dependents = [
            (r[0], r[1])
            for r in tx.conn.execute(
                f"SELECT d.job_id, d.after_id FROM deps d JOIN jobs j ON j.id = d.job_id "
                f"WHERE d.after_id IN {_IDS} AND j.status = {_PENDING}",
                (json.dumps(ids),),
            ).fetchall()
        ]
        unfinished = {job.id for job in jobs if not job.finished}
        for job in jobs:
            tx.snapshots[job.id] = job
            tx.record("deleted", job.id)
            tx.doomed_jobs.append(job.id)
        tx.conn.execute(f"DELETE FROM jobs WHERE id IN {_IDS}", (json.dumps(ids),))
        failed = []
        for dependent, after_id in dependents:
            if after_id in unfinished and dependent not in failed and dependent not in ids:
                self._move(
                    tx, dependent, Status.PENDING, Status.FAILED,
                    reason=Reason.DEPENDENCY_FAILED.value, finished_at=tx.now,
                    **_error_columns(self._dep_error(after_id, "was deleted")),
                )  # fmt: skip
                failed.append(dependent)
        for dependent, _ in dependents:
            if dependent not in failed and dependent not in ids:
                self._settle_pending(tx, dependent)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        return self._load_one(self._conn(), job_id)

    def finished_since(self, mark: int | None) -> tuple[list[int] | None, int]:
        """Ids of jobs that reached a terminal status after `mark`, and the new mark.

        `mark=None` just returns the current mark. `None` instead of ids means the log no longer
        reaches back to `mark` (it is pruned): re-read the jobs you wait for.
        """
        with self._read() as conn:
            (top,) = conn.execute("SELECT coalesce(max(seq), 0) FROM finished_log").fetchone()
            if mark is None or mark >= top:
                return ([] if mark is not None else None), top
            (low,) = conn.execute("SELECT coalesce(min(seq), 0) FROM finished_log").fetchone()
            if low > mark + 1:
                return None, top
            rows = conn.execute(
                "SELECT job_id FROM finished_log WHERE seq > ? AND seq <= ?", (mark, top)
            ).fetchall()
        return [r[0] for r in rows], top

    def get_many(self, job_ids: Iterable[int]) -> list[Job]:
        """The jobs that exist among `job_ids`, in the order asked (unknown ids are skipped)."""
        ids = list(job_ids)
        found = self._load(self._conn(), ids)
        return [found[i] for i in ids if i in found]

    def finished_among(self, job_ids: Iterable[int]) -> tuple[list[Job], list[int]]:
        """The finished jobs among `job_ids` (in the order asked), and the ids that do not exist.

        For long polls that ask about hundreds of jobs of which a few have ended: only the
        statuses of the others are read, not their whole records.
        """
        ids = list(job_ids)
        with self._read() as conn:
            sql = f"SELECT id, status IN ({_FINISHED}) FROM jobs WHERE id IN {_IDS}"
            rows = conn.execute(sql, (json.dumps(ids),)).fetchall()
            ended = [job_id for job_id, finished in rows if finished]
            found = self._load(conn, ended) if ended else {}
        exist = {r[0] for r in rows}
        return [found[i] for i in ids if i in found], [i for i in ids if i not in exist]

    def query(
        self,
        *,
        status: Sequence[str] | None = None,
        owner: str | None = None,
        q: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """A page of jobs, newest first, plus counts per status for the same owner/q filter.

        Each status is read through its own `(status, id)` index range and the ranges are merged
        here: one `status IN (...)` query would sort every matching row for each page.
        """
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
        statuses = [self._status(s) for s in dict.fromkeys(status or [])]
        filters, params = self._filters(owner, q)
        where, values = list(filters), list(params)
        if cursor:
            where.append("id < ?")
            values.append(_decode_cursor(cursor))
        with self._read() as conn:
            ranges = [
                conn.execute(
                    f"{_SELECT_JOBS} WHERE {' AND '.join([*where, 'status = ?'])} "
                    "ORDER BY id DESC LIMIT ?",
                    (*values, s.value, limit + 1),
                ).fetchall()
                for s in statuses
            ] or [
                conn.execute(
                    f"{_SELECT_JOBS} WHERE {' AND '.join([*where, '1'])} ORDER BY id DESC LIMIT ?",
                    (*values, limit + 1),
                ).fetchall()
            ]
            counts = self._counts(conn, filters, params)
        rows = list(heapq.merge(*ranges, key=lambda r: -r[0]))[: limit + 1]
        jobs = [_job_from_row(r) for r in rows[:limit]]
        next_cursor = _encode_cursor(jobs[-1].id) if len(rows) > limit else None
        return Page(jobs, next_cursor, counts)

    @staticmethod
    def _status(value: str) -> Status:
        try:
            return Status(value)
        except ValueError:
            raise InvalidRequest(
                f"unknown status {value!r}; one of {[s.value for s in Status]}"
            ) from None

    @staticmethod
    def _filters(owner: str | None, q: str | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if q:  # the sidebar's search box: a job's name, or its notebook's path
            where.append("(name LIKE ? ESCAPE '\\' OR owner LIKE ? ESCAPE '\\')")
            params += [_like(q)] * 2
        return where, params

    @staticmethod
    def _counts(conn: sqlite3.Connection, where: list[str], params: list[Any]) -> dict[str, int]:
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        counts = {s.value: 0 for s in Status}
        for status, n in conn.execute(
            f"SELECT status, COUNT(*) FROM jobs{clause} GROUP BY status", params
        ).fetchall():
            counts[status] = n
        return counts

    def counts(self, owner: str | None = None) -> dict[str, int]:
        """Jobs per status (all statuses present), optionally for one owner."""
        where, params = self._filters(owner, None)
        return self._counts(self._conn(), where, params)

    def stats(self) -> dict[str, int | float]:
        """Counts per status, database bytes (db + WAL) and workspace bytes (blobs + logs)."""
        with self._read() as conn:
            counts = self._counts(conn, [], [])
            blob_bytes = conn.execute("SELECT COALESCE(SUM(size), 0) FROM blobs").fetchone()[0]
            log_bytes = conn.execute("SELECT COALESCE(SUM(log_size), 0) FROM jobs").fetchone()[0]
        db_size = 0
        for suffix in ("", "-wal"):
            with suppress(FileNotFoundError):
                db_size += os.stat(f"{self.path}{suffix}").st_size
        return {
            **counts,
            "total": sum(counts.values()),
            "db_size": db_size,
            "workspace_bytes": blob_bytes + log_bytes,
        }

    def result(self, job_id: int) -> bytes:
        """The result bytes of a succeeded job (b"" if it succeeded without a result), or of a
        failed one whose last attempt sent some (a cell's names set before its error).

        Raises `ResultNotReady` for a job that has no result (detail: its status).
        """
        with self._read() as conn:
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
        if status == Status.FAILED.value and row is not None and row[2] != attempt:
            row = None  # an earlier attempt's (a failed cell's, since retried)
        if status != Status.SUCCEEDED.value and not (status == Status.FAILED.value and row):
            raise ResultNotReady(
                f"job {job_id} is {status}: it has no result", {"id": job_id, "status": status}
            )
        return b"" if row is None else self._blob_bytes(row[0], row[1])

    def outputs(self, job_id: int) -> bytes:
        """The captured display outputs (nbformat outputs JSON bytes; b"[]" when none)."""
        with self._read() as conn:
            self._load_one(conn, job_id)
            data = self._get_blob(conn, job_id, "outputs")
        return b"[]" if data is None else data

    def read_log(self, job_id: int, offset: int = 0, limit: int = 2**20) -> tuple[bytes, int]:
        """Log bytes from `offset` (at most `limit`), and the offset to ask for next."""
        if offset < 0 or limit < 0:
            raise InvalidRequest("offset and limit must be zero or more")
        self.get(job_id)
        try:
            with open(self.workspace.log_file(job_id), "rb") as f:
                # Past the end there is nothing yet (a seek that far can fail: EINVAL).
                if offset >= os.fstat(f.fileno()).st_size:
                    data = b""
                else:
                    f.seek(offset)
                    data = f.read(limit)
        except FileNotFoundError:
            data = b""
        return data, offset + len(data)

    # -- retention -----------------------------------------------------------------------------

    def gc(self, older_than: float | None = None, max_bytes: int | None = None) -> list[int]:
        """Delete finished jobs finished over `older_than` seconds ago, then the oldest finished
        ones until blobs plus logs take at most `max_bytes`. Unfinished jobs are never touched.
        Also prunes the finished log (see `finished_since`), so call it now and then even with
        no retention set.
        """
        with self._tx() as tx:
            tx.conn.execute(
                "DELETE FROM finished_log WHERE seq <= (SELECT max(seq) FROM finished_log) - ?",
                (_FINISHED_LOG_KEEP,),
            )
            doomed: list[int] = []
            if older_than is not None:
                doomed += [
                    r[0]
                    for r in tx.conn.execute(
                        f"SELECT id FROM jobs WHERE status IN ({_FINISHED}) AND finished_at < ? "
                        "ORDER BY finished_at",
                        (tx.now - older_than,),
                    ).fetchall()
                ]
            if max_bytes is not None:
                doomed += self._over_budget(tx.conn, set(doomed), max_bytes)
            if doomed:
                self._delete(tx, list(self._load(tx.conn, doomed).values()))
        return doomed

    @staticmethod
    def _over_budget(conn: sqlite3.Connection, doomed: set[int], max_bytes: int) -> list[int]:
        sizes = conn.execute(
            "SELECT j.id, j.status, j.log_size + COALESCE(SUM(b.size), 0) FROM jobs j "
            "LEFT JOIN blobs b ON b.job_id = j.id GROUP BY j.id "
            "ORDER BY j.finished_at IS NULL, j.finished_at, j.id"
        ).fetchall()
        total = sum(size for job_id, _, size in sizes if job_id not in doomed)
        extra = []
        for job_id, status, size in sizes:
            if total <= max_bytes:
                break
            if job_id in doomed or Status(status) not in TERMINAL:
                continue
            extra.append(job_id)
            total -= size
        return extra
