"""The database's shape: migrations, the SQL names of statuses, and rows turned into records.

Migrations are append-only: `PRAGMA user_version` is how many have been applied, so an old file
is brought forward and a newer one refused (`connection.py`). Rows become `models.Job` by column
name, never by position, so a column added later cannot shift every field after it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import JobNotFound
from ..models import TERMINAL, Job, JobError, Kind, Progress, Reason, Status


def sql_list(*statuses: Status) -> str:
    """Statuses as an SQL list, so SQL text names them through the `Status` enum."""
    return ", ".join(f"'{s.value}'" for s in statuses)


PENDING = sql_list(Status.PENDING)
QUEUED = sql_list(Status.QUEUED)
RUNNING = sql_list(Status.RUNNING)
FINISHED = sql_list(*sorted(TERMINAL))
#: Running and claimed jobs, and only they, hold a lease (`Job.claimed`, models.TRANSITIONS).
LEASED = "lease_until IS NOT NULL"
#: A JSON list of ids bound to one `?`, as a subquery: `WHERE id IN {IDS}`.
IDS = "(SELECT value FROM json_each(?))"

#: The full-text index of names (`queries.py`): trigram, so any substring of three characters or
#: more is found through it. (Notebooks are few: they are searched among `user_counts`.)
FTS_TABLE = "jobs_fts"


def fts_available(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has FTS5 with the trigram tokenizer (3.34+, built with FTS5)."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.fts_probe USING fts5(a, tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp.fts_probe")
    return True


def _create_search_index(conn: sqlite3.Connection) -> None:
    """The trigram index on names, kept by triggers; none where this SQLite lacks FTS5 or
    trigram (searches then scan with LIKE: `queries.py`)."""
    if not fts_available(conn):
        return
    for statement in (
        f"""CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(name, content='jobs',
            content_rowid='id', tokenize='trigram')""",
        f"""CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN
            INSERT INTO {FTS_TABLE} (rowid, name) VALUES (NEW.id, NEW.name); END""",
        f"""CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN
            INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, name) VALUES ('delete', OLD.id, OLD.name);
            END""",
        f"""CREATE TRIGGER jobs_fts_update AFTER UPDATE OF name ON jobs BEGIN
            INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, name) VALUES ('delete', OLD.id, OLD.name);
            INSERT INTO {FTS_TABLE} (rowid, name) VALUES (NEW.id, NEW.name);
            END""",
        f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('rebuild')",
    ):
        conn.execute(statement)


def _count(table: str, key: str, values: str, delta: str) -> str:
    """An upsert adding `delta` to the count row of `key` in `table`."""
    return (
        f"INSERT INTO {table} ({key}, n) VALUES ({values}, {delta}) "
        f"ON CONFLICT ({key}) DO UPDATE SET n = n + excluded.n;"
    )


def _counted(row: str, delta: str) -> str:
    """The count statements for one row (`NEW` or `OLD`) entering (+1) or leaving (-1)."""
    return _count("status_counts", "status", f"{row}.status", delta) + _count(
        "owner_counts", "owner, status", f"{row}.owner, {row}.status", delta
    )


def _counted_by_user(row: str, delta: str) -> str:
    """The count statements, since users, for one row entering (+1) or leaving (-1): per status,
    and per notebook and user (`user_counts`, which per-notebook counts are summed from)."""
    return _count("status_counts", "status", f"{row}.status", delta) + _count(
        "user_counts", "owner, user, status", f"{row}.owner, {row}.user, {row}.status", delta
    )


def _counted_by_type(row: str, delta: str) -> str:
    """The count statement of a typed job's row entering (+1) or leaving (-1) `type_counts`."""
    columns = "type, user, owner, status"
    values = ", ".join(f"{row}.{c}" for c in columns.split(", "))
    return _count("type_counts", columns, values, delta)


#: A migration step: an SQL statement, or a function for what depends on this SQLite.
Migration = str | Callable[[sqlite3.Connection], None]

#: Forward migrations; `PRAGMA user_version` is how many have been applied. Append, never edit.
MIGRATIONS: list[list[Migration]] = [
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
            WHEN NEW.status IN ({FINISHED}) AND OLD.status IS NOT NEW.status
            BEGIN INSERT INTO finished_log (job_id) VALUES (NEW.id); END""",
        f"""CREATE TRIGGER finished_log_insert AFTER INSERT ON jobs
            WHEN NEW.status IN ({FINISHED})
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
        f"CREATE INDEX jobs_leased ON jobs(lease_until) WHERE {LEASED}",
    ],
    [
        # Counts and byte totals kept as data, in the same transaction as every write (by
        # triggers), so listing, counting and stats cost the same at a million jobs as at ten.
        """CREATE TABLE status_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL)
            WITHOUT ROWID""",
        """CREATE TABLE owner_counts (owner TEXT NOT NULL, status TEXT NOT NULL,
            n INTEGER NOT NULL, PRIMARY KEY (owner, status)) WITHOUT ROWID""",
        "CREATE TABLE totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        # a notebook's jobs of one status, newest first, without visiting its others
        "CREATE INDEX jobs_owner_status ON jobs(owner, status, id)",
        "INSERT INTO status_counts SELECT status, COUNT(*) FROM jobs GROUP BY status",
        "INSERT INTO owner_counts SELECT owner, status, COUNT(*) FROM jobs GROUP BY owner, status",
        "INSERT INTO totals SELECT 'log_bytes', COALESCE(SUM(log_size), 0) FROM jobs",
        "INSERT INTO totals SELECT 'blob_bytes', COALESCE(SUM(size), 0) FROM blobs",
        f"""CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs BEGIN {_counted("NEW", "1")}
            UPDATE totals SET value = value + NEW.log_size WHERE name = 'log_bytes'; END""",
        f"""CREATE TRIGGER jobs_counted_delete AFTER DELETE ON jobs BEGIN {_counted("OLD", "-1")}
            UPDATE totals SET value = value - OLD.log_size WHERE name = 'log_bytes'; END""",
        f"""CREATE TRIGGER jobs_counted_move AFTER UPDATE OF status, owner ON jobs
            WHEN OLD.status IS NOT NEW.status OR OLD.owner IS NOT NEW.owner
            BEGIN {_counted("OLD", "-1")} {_counted("NEW", "1")} END""",
        """CREATE TRIGGER jobs_log_bytes AFTER UPDATE OF log_size ON jobs
            WHEN OLD.log_size IS NOT NEW.log_size BEGIN
            UPDATE totals SET value = value + NEW.log_size - OLD.log_size
            WHERE name = 'log_bytes'; END""",
        # (`files.put_blob` replaces a blob by an upsert: REPLACE would skip the delete trigger)
        """CREATE TRIGGER blobs_bytes_insert AFTER INSERT ON blobs BEGIN
            UPDATE totals SET value = value + NEW.size WHERE name = 'blob_bytes'; END""",
        """CREATE TRIGGER blobs_bytes_delete AFTER DELETE ON blobs BEGIN
            UPDATE totals SET value = value - OLD.size WHERE name = 'blob_bytes'; END""",
        """CREATE TRIGGER blobs_bytes_update AFTER UPDATE OF size ON blobs BEGIN
            UPDATE totals SET value = value + NEW.size - OLD.size WHERE name = 'blob_bytes';
            END""",
        _create_search_index,
    ],
    [
        # Schedules (schedules.py): `payload` is the target's snapshot (a notebook's JSON, or a
        # pickled call the server never loads); `next_run` the earliest time not yet fired.
        """CREATE TABLE schedules (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            owner TEXT NOT NULL DEFAULT '',
            target TEXT NOT NULL,
            cron TEXT,
            every REAL,
            timezone TEXT NOT NULL,
            overlap TEXT NOT NULL,
            catch_up TEXT NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0,
            job TEXT NOT NULL DEFAULT '{}',
            payload BLOB NOT NULL,
            created_at REAL NOT NULL,
            next_run REAL
        )""",
        "CREATE INDEX schedules_next ON schedules(next_run) WHERE paused = 0",
        # A run is a job with its schedule and time; unique, so a time never fires twice.
        "ALTER TABLE jobs ADD COLUMN schedule_id INTEGER",
        "ALTER TABLE jobs ADD COLUMN scheduled_time REAL",
        "CREATE UNIQUE INDEX jobs_schedule_time ON jobs(schedule_id, scheduled_time) "
        "WHERE schedule_id IS NOT NULL",
    ],
    [
        # Job types (job_types.py): a typed job's type and JSON parameters, and the summary its
        # type's `summarize` made (JSON, written with the outcome). Types registered from a
        # kernel are kept here, their functions as dill bytes only workers load.
        "ALTER TABLE jobs ADD COLUMN type TEXT",
        "ALTER TABLE jobs ADD COLUMN parameters TEXT",
        "ALTER TABLE jobs ADD COLUMN summary TEXT",
        """CREATE TABLE job_types (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            schema TEXT NOT NULL,
            summarize INTEGER NOT NULL DEFAULT 0,
            owner TEXT NOT NULL DEFAULT '',
            interpreter TEXT,
            cwd TEXT,
            functions BLOB NOT NULL,
            created_at REAL NOT NULL
        )""",
    ],
    [
        # Result channels (`store/channels.py`): a job naming a channel is entered in
        # `channel_results` when it reaches its final status, numbered in commit order (writes
        # are serialized), so readers take them in the order they finished. An explicit retry
        # takes it out again: it is entered anew, once, when it ends again. Each reader's
        # cursor is the last number it acknowledged.
        "ALTER TABLE jobs ADD COLUMN channel TEXT",
        """CREATE TABLE channel_results (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            channel TEXT NOT NULL,
            job_id INTEGER NOT NULL UNIQUE REFERENCES jobs(id) ON DELETE CASCADE
        )""",
        "CREATE INDEX channel_results_order ON channel_results(channel, seq)",
        f"""CREATE TRIGGER channel_results_finished AFTER UPDATE OF status ON jobs
            WHEN NEW.channel IS NOT NULL AND NEW.status IN ({FINISHED})
            AND OLD.status IS NOT NEW.status
            BEGIN INSERT OR REPLACE INTO channel_results (channel, job_id)
            VALUES (NEW.channel, NEW.id); END""",
        f"""CREATE TRIGGER channel_results_inserted AFTER INSERT ON jobs
            WHEN NEW.channel IS NOT NULL AND NEW.status IN ({FINISHED})
            BEGIN INSERT INTO channel_results (channel, job_id) VALUES (NEW.channel, NEW.id);
            END""",
        f"""CREATE TRIGGER channel_results_retried AFTER UPDATE OF status ON jobs
            WHEN NEW.channel IS NOT NULL AND OLD.status IN ({FINISHED})
            AND NEW.status NOT IN ({FINISHED})
            BEGIN DELETE FROM channel_results WHERE job_id = NEW.id; END""",
        """CREATE TABLE channel_readers (
            channel TEXT NOT NULL,
            reader TEXT NOT NULL,
            acked INTEGER NOT NULL DEFAULT 0,
            acked_at REAL,
            PRIMARY KEY (channel, reader)
        ) WITHOUT ROWID""",
    ],
    [
        # A log's labelled streams (`store/log_streams.py`): the file stays the log as written;
        # once a job writes to a thread's or a child process's stream, its log is cut into runs
        # of one stream each. Stream 0 is the main one. A log without streams has no rows.
        """CREATE TABLE log_streams (
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            no INTEGER NOT NULL,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            PRIMARY KEY (job_id, no)
        ) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX log_streams_name ON log_streams(job_id, name)",
        """CREATE TABLE log_runs (
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            offset INTEGER NOT NULL,
            length INTEGER NOT NULL,
            stream INTEGER NOT NULL,
            stream_offset INTEGER NOT NULL,
            PRIMARY KEY (job_id, offset)
        ) WITHOUT ROWID""",
        "CREATE INDEX log_runs_stream ON log_runs(job_id, stream, stream_offset)",
    ],
    [
        # Who each job and schedule belongs to (`models.JobUser`); '' for those from before.
        "ALTER TABLE jobs ADD COLUMN user TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN user_display_name TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE schedules ADD COLUMN user TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE schedules ADD COLUMN user_display_name TEXT NOT NULL DEFAULT ''",
        # Fair share is per user, then per notebook (picking.py): the claim seeks by both.
        "DROP INDEX jobs_claim",
        "CREATE INDEX jobs_claim ON jobs(status, priority, user, owner, id)",
        "CREATE TABLE users (user TEXT PRIMARY KEY, last_claim REAL NOT NULL) WITHOUT ROWID",
        # "My jobs": pages through the user's indexes. The counts are kept per notebook and
        # user (one row where owner_counts had one per notebook): a notebook's are summed over
        # its users, a user's over their notebooks (by the user index), and a status change
        # still costs two upserts.
        "CREATE INDEX jobs_user ON jobs(user, id)",
        "CREATE INDEX jobs_user_status ON jobs(user, status, id)",
        """CREATE TABLE user_counts (owner TEXT NOT NULL, user TEXT NOT NULL,
            status TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (owner, user, status))
            WITHOUT ROWID""",
        "CREATE INDEX user_counts_user ON user_counts(user, owner, status)",
        "INSERT INTO user_counts SELECT owner, user, status, COUNT(*) FROM jobs "
        "GROUP BY owner, user, status",
        "DROP TRIGGER jobs_counted_insert",
        "DROP TRIGGER jobs_counted_delete",
        "DROP TRIGGER jobs_counted_move",
        "DROP TABLE owner_counts",
        f"""CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs BEGIN
            {_counted_by_user("NEW", "1")}
            UPDATE totals SET value = value + NEW.log_size WHERE name = 'log_bytes'; END""",
        f"""CREATE TRIGGER jobs_counted_delete AFTER DELETE ON jobs BEGIN
            {_counted_by_user("OLD", "-1")}
            UPDATE totals SET value = value - OLD.log_size WHERE name = 'log_bytes'; END""",
        f"""CREATE TRIGGER jobs_counted_move AFTER UPDATE OF status, owner, user ON jobs
            WHEN OLD.status IS NOT NEW.status OR OLD.owner IS NOT NEW.owner
              OR OLD.user IS NOT NEW.user
            BEGIN {_counted_by_user("OLD", "-1")} {_counted_by_user("NEW", "1")} END""",
    ],
    [
        "ALTER TABLE jobs ADD COLUMN fresh_worker INTEGER NOT NULL DEFAULT 0",
        # Each consumer's workers as its executor last described them (`store/workers.py`):
        # what `jupyter jobs workers` lists from any process, and where a drain is asked for.
        """CREATE TABLE workers (
            consumer TEXT NOT NULL,
            id TEXT NOT NULL,
            info TEXT NOT NULL,
            reported_at REAL NOT NULL,
            drain_requested INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (consumer, id)
        ) WITHOUT ROWID""",
    ],
    [
        # Functions stored once (`store/shared.py`): dill bytes by their sha256, inline or in
        # the workspace's `shared/` folder. A job's payload row names the function it calls
        # (`blobs.shared`: the row keeps only the job's arguments), a kernel's job type the
        # functions it runs; a function nothing names any more is freed by the transaction
        # that dropped the last reference (found through these indexes: no counter to drift).
        # Its bytes count once in the `blob_bytes` total.
        """CREATE TABLE shared_blobs (
            sha256 TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            data BLOB,
            path TEXT,
            created_at REAL NOT NULL
        )""",
        "ALTER TABLE blobs ADD COLUMN shared TEXT REFERENCES shared_blobs(sha256)",
        "CREATE INDEX blobs_shared ON blobs(shared) WHERE shared IS NOT NULL",
        "ALTER TABLE job_types ADD COLUMN shared TEXT REFERENCES shared_blobs(sha256)",
        "CREATE INDEX job_types_shared ON job_types(shared) WHERE shared IS NOT NULL",
        """CREATE TRIGGER shared_bytes_insert AFTER INSERT ON shared_blobs BEGIN
            UPDATE totals SET value = value + NEW.size WHERE name = 'blob_bytes'; END""",
        """CREATE TRIGGER shared_bytes_delete AFTER DELETE ON shared_blobs BEGIN
            UPDATE totals SET value = value - OLD.size WHERE name = 'blob_bytes'; END""",
        # The users who sent a function's bytes: a function is user code, so naming one by
        # its sha256 alone is for them, and for whom the authorizer lets read their jobs
        # (`server/function_handlers.py`).
        """CREATE TABLE shared_users (
            sha256 TEXT NOT NULL REFERENCES shared_blobs(sha256) ON DELETE CASCADE,
            user TEXT NOT NULL,
            PRIMARY KEY (sha256, user)
        ) WITHOUT ROWID""",
    ],
    [
        # The job list by type (`?type=`, queries.py): typed jobs paged through their own
        # indexes, counted per type, user and notebook by triggers as `user_counts` are. Jobs
        # without a type have no entry and no count row. A job's type is set when it is made.
        "CREATE INDEX jobs_type ON jobs(type, id) WHERE type IS NOT NULL",
        "CREATE INDEX jobs_type_status ON jobs(type, status, id) WHERE type IS NOT NULL",
        """CREATE TABLE type_counts (type TEXT NOT NULL, user TEXT NOT NULL, owner TEXT NOT NULL,
            status TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (type, user, owner, status))
            WITHOUT ROWID""",
        "INSERT INTO type_counts SELECT type, user, owner, status, COUNT(*) FROM jobs "
        "WHERE type IS NOT NULL GROUP BY type, user, owner, status",
        f"""CREATE TRIGGER type_counted_insert AFTER INSERT ON jobs WHEN NEW.type IS NOT NULL
            BEGIN {_counted_by_type("NEW", "1")} END""",
        f"""CREATE TRIGGER type_counted_delete AFTER DELETE ON jobs WHEN OLD.type IS NOT NULL
            BEGIN {_counted_by_type("OLD", "-1")} END""",
        f"""CREATE TRIGGER type_counted_move AFTER UPDATE OF status, owner, user ON jobs
            WHEN NEW.type IS NOT NULL AND (OLD.status IS NOT NEW.status
              OR OLD.owner IS NOT NEW.owner OR OLD.user IS NOT NEW.user)
            BEGIN {_counted_by_type("OLD", "-1")} {_counted_by_type("NEW", "1")} END""",
    ],
]

#: The columns a `Job` is read from (`job_from_row` maps them by these names).
JOB_COLUMNS = (
    "id", "name", "kind", "owner", "status", "reason", "priority", "attempt", "retries",
    "retry_delay", "worker_losses", "timeout", "after_ids", "hold", "run_at", "expires_at",
    "not_before", "created_at", "queued_at", "started_at", "finished_at", "cancel_requested",
    "progress_done", "progress_total", "progress_message", "progress_at", "error_type",
    "error_message", "error_traceback", "interpreter", "cwd", "idempotency_key", "options",
    "consumer", "lease_until", "payload_size", "result_size", "log_size", "has_outputs",
    "schedule_id", "scheduled_time", "type", "parameters", "summary",
    "channel",
    "user", "user_display_name",
    "fresh_worker",
)  # fmt: skip
SELECT_JOBS = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"

#: The columns a new job's row sets (`insert_values` names them).
INSERT_COLUMNS = (
    "name", "kind", "owner", "status", "reason", "priority", "retries", "retry_delay", "timeout",
    "after_ids", "hold", "run_at", "expires_at", "created_at", "queued_at", "finished_at",
    "error_type", "error_message", "interpreter", "cwd", "idempotency_key", "options",
    "payload_size", "type", "parameters",
    "channel",
    "user", "user_display_name",
    "fresh_worker",
)  # fmt: skip
INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(INSERT_COLUMNS))})"
)


#: A row read with `SELECT_JOBS`, its values named by column.
JobRow = namedtuple("JobRow", JOB_COLUMNS)  # type: ignore[misc]
#: `JobRow._make` without its length check (SELECT_JOBS reads exactly JOB_COLUMNS): every read
#: of a job pays this.
_as_row = tuple.__new__


def job_from_row(values: Sequence[Any]) -> Job:
    """The record of a row read with `SELECT_JOBS`."""
    r = _as_row(JobRow, values)
    progress = None
    if r.progress_done is not None:
        progress = Progress(
            done=r.progress_done,
            total=r.progress_total,
            message=r.progress_message,
            at=r.progress_at,
        )
    error = None
    if r.error_type is not None:
        error = JobError(
            type=r.error_type, message=r.error_message or "", traceback=r.error_traceback or ""
        )
    return Job(
        id=r.id,
        name=r.name,
        kind=Kind(r.kind),
        owner=r.owner,
        status=Status(r.status),
        reason=Reason(r.reason) if r.reason else None,
        priority=r.priority,
        attempt=r.attempt,
        retries=r.retries,
        retry_delay=r.retry_delay,
        worker_losses=r.worker_losses,
        timeout=r.timeout,
        after=json.loads(r.after_ids) if r.after_ids != "[]" else [],
        held=bool(r.hold),
        run_at=r.run_at,
        expires_at=r.expires_at,
        not_before=r.not_before,
        created_at=r.created_at,
        queued_at=r.queued_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
        cancel_requested=bool(r.cancel_requested),
        progress=progress,
        error=error,
        interpreter=r.interpreter,
        cwd=r.cwd,
        idempotency_key=r.idempotency_key,
        options=json.loads(r.options) if r.options != "{}" else {},
        consumer=r.consumer,
        lease_until=r.lease_until,
        payload_size=r.payload_size,
        result_size=r.result_size,
        log_size=r.log_size,
        has_outputs=bool(r.has_outputs),
        schedule_id=r.schedule_id,
        scheduled_time=r.scheduled_time,
        type=r.type,
        parameters=json.loads(r.parameters) if r.parameters is not None else None,
        summary=json.loads(r.summary) if r.summary is not None else None,
        channel=r.channel,
        user=r.user,
        user_display_name=r.user_display_name,
        fresh_worker=bool(r.fresh_worker),
    )


def error_columns(error: JobError | None) -> dict[str, Any]:
    """The columns that hold a job's error (all NULL for none)."""
    if error is None:
        return {"error_type": None, "error_message": None, "error_traceback": None}
    return {
        "error_type": error.type,
        "error_message": error.message,
        "error_traceback": error.traceback,
    }


def load(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, Job]:
    """The jobs among `ids` that exist, by id."""
    rows = conn.execute(f"{SELECT_JOBS} WHERE id IN {IDS}", (json.dumps(list(ids)),))
    return {job.id: job for job in map(job_from_row, rows.fetchall())}


#: What a deleted job's change carries (`Store._delete`): who it was, whose, how it ended and
#: whether it held a lease, which is what subscribers of a deletion use (the sidebar's counts,
#: waiters on it or on its channel). A large gc reads no more than this of each job: not its
#: error, options, parameters or summary, and builds no full record.
BRIEF_COLUMNS = (
    "id", "name", "kind", "owner", "status", "reason", "attempt", "finished_at", "lease_until",
    "schedule_id", "type", "channel", "user", "user_display_name",
)  # fmt: skip


def load_brief(
    conn: sqlite3.Connection, ids: Iterable[int], where: str = "", params: Sequence[Any] = ()
) -> list[Job]:
    """The jobs among `ids` that exist (and match `where`, SQL with `params`), as records
    of `BRIEF_COLUMNS` (the other fields keep their defaults)."""
    condition = f" AND {where}" if where else ""
    rows = conn.execute(
        f"SELECT {', '.join(BRIEF_COLUMNS)} FROM jobs WHERE id IN {IDS}{condition}",
        (json.dumps(list(ids)), *params),
    )
    return [_brief(_as_row(BriefRow, values)) for values in rows.fetchall()]


#: A row read with `BRIEF_COLUMNS`, its values named by column.
BriefRow = namedtuple("BriefRow", BRIEF_COLUMNS)  # type: ignore[misc]


def _brief(r: Any) -> Job:
    fields = r._asdict()  # `BRIEF_COLUMNS` are named as `Job`'s fields
    fields.update(
        kind=Kind(r.kind),
        status=Status(r.status),
        reason=Reason(r.reason) if r.reason else None,
    )
    return Job(**fields)


def load_one(conn: sqlite3.Connection, job_id: int) -> Job:
    """One job; `JobNotFound` when there is none."""
    row = conn.execute(f"{SELECT_JOBS} WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return job_from_row(row)


def statuses(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, Status]:
    """The status of each job among `ids` that exists."""
    rows = conn.execute(f"SELECT id, status FROM jobs WHERE id IN {IDS}", (json.dumps(list(ids)),))
    return {job_id: Status(status) for job_id, status in rows.fetchall()}


def dependencies(conn: sqlite3.Connection, job_id: int) -> list[tuple[int, Status]]:
    """(id, status) of the jobs `job_id` runs after."""
    rows = conn.execute(
        "SELECT d.after_id, j.status FROM deps d JOIN jobs j ON j.id = d.after_id "
        "WHERE d.job_id = ?",
        (job_id,),
    ).fetchall()
    return [(after_id, Status(status)) for after_id, status in rows]
