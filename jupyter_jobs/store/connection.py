"""The SQLite file: per-thread connections, transactions, the journal mode and migrations.

- WAL with `synchronous=NORMAL`: a commit survives `kill -9` of any process without an fsync per
  job. WAL needs shared memory, which network filesystems do not provide, so there the database
  uses the rollback journal (or refuses, when WAL was asked for explicitly).
- One connection per thread; this process's writers take turns on one lock (`write`), since
  waiting on SQLite's own lock sleeps 1, 2, 5... ms per try. A transaction that reads then
  writes starts with `BEGIN IMMEDIATE`, so two processes never both decide on the same row.
- The file and its side files are private (0600), whatever the umask.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import DatabaseNotFound, InvalidRequest, StorageError
from ..oslayer import filesystem_type, make_private_dir
from .schema import MIGRATIONS

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


#: Pages one step of `Database.shrink` frees (4 KiB each: 2 MiB).
VACUUM_PAGES = 512
#: The size a WAL is cut back to after a checkpoint (SQLite otherwise keeps its largest size).
WAL_LIMIT = 16 * 2**20
#: SQLite's own default: a commit that leaves the WAL over this many pages copies it back.
AUTOCHECKPOINT = 1000


def default_db_path() -> Path:
    """`{jupyter_data_dir}/jupyter_jobs/jobs.db`."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "jupyter_jobs" / "jobs.db"


def check_file(path: Path, create: bool) -> bool:
    """Whether a database file exists at `path`; refuses a path to some other file (a typo in
    `--db`) before anything is changed, and a missing one unless `create`."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        if not create:
            raise DatabaseNotFound(
                f"there is no job database at {path}", {"database": str(path)}
            ) from None
        return False
    except OSError as exc:
        raise StorageError(f"cannot open the job database {path}: {exc}") from None
    if head and head != b"SQLite format 3\x00":
        raise StorageError(f"{path} is not a job database (not an SQLite file)")
    return True


class Database:
    """One SQLite file, created private and migrated to this version's schema on open."""

    def __init__(self, path: Path, journal_mode: str = "auto", busy_timeout: float = 30.0) -> None:
        if journal_mode not in ("auto", "wal", "delete"):
            raise InvalidRequest(f"journal_mode must be auto, wal or delete, not {journal_mode!r}")
        self.path = path
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        #: threads copying the WAL back after each of their commits (`checkpointing`)
        self._checkpointers = 0
        self._closed = False
        make_private_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        self.journal_mode = self._choose_journal_mode(journal_mode)
        try:
            conn = self.conn()
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                # a new file: freed pages can be given back after a large gc (`Store._shrink`);
                # only possible before the first table
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._set_journal_mode(conn)
            self._migrate()
        except BaseException:
            self.close()
            raise

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

    def protect_side_files(self) -> None:
        """Make the WAL, shared-memory and journal files private too (once they exist)."""
        for suffix in ("-wal", "-shm", "-journal"):
            side = self.path.with_name(self.path.name + suffix)
            with suppress(FileNotFoundError):
                os.chmod(side, 0o600)

    def _migrate(self) -> None:
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StorageError(
                    f"{self.path} has schema version {version}, newer than this jupyter_jobs "
                    f"knows ({len(MIGRATIONS)}): upgrade jupyter_jobs"
                )
            for number in range(version, len(MIGRATIONS)):
                for step in MIGRATIONS[number]:
                    if isinstance(step, str):
                        conn.execute(step)
                    else:
                        step(conn)
            if version != len(MIGRATIONS):
                conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    @contextmanager
    def write(self, checkpoint: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction (`BEGIN IMMEDIATE`), committed on leaving, rolled back on an
        exception. With `checkpoint` (inside `checkpointing`), the WAL is copied back as soon
        as the write lock is let go: then another writer's commit finds a checkpoint under
        way, and does not copy (and sync) what this transaction wrote while holding the lock.
        `held()` then says how long this transaction held the lock."""
        conn = self.conn()
        with self._writing:
            self._autocheckpoint(conn)
            conn.execute("BEGIN IMMEDIATE")
            began = time.perf_counter()
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._local.held = time.perf_counter() - began
        if checkpoint:
            self.checkpoint()

    def held(self) -> float:
        """Seconds the last write transaction of this thread held the write lock."""
        return getattr(self._local, "held", 0.0)

    def rest(self, stop: threading.Event) -> None:
        """Leave the write lock alone for one to three times as long as this thread's last
        transaction held it (or until `stop`), between the transactions of a long run of
        them (a gc).

        A writer in another process waits on SQLite's own lock, which sleeps 1, 2, 5, 10,
        15, 20, 25, 25, 25, 50, 50, 100 ... ms between its tries: against transactions that
        follow each other with short gaps it misses gap after gap, for up to a second. With
        gaps longer than the transactions, each try finds the lock free more often than not;
        gaps of random length, so that tries 25 or 50 ms apart cannot keep falling in step
        with the transactions.
        """
        stop.wait(self.held() * random.uniform(1.0, 3.0))

    def _autocheckpoint(self, conn: sqlite3.Connection) -> None:
        """Let this connection's commits copy the WAL back, unless a thread of this process
        is doing it after each of its commits (`checkpointing`)."""
        pages = 0 if self._checkpointers else AUTOCHECKPOINT
        if getattr(self._local, "autocheckpoint", AUTOCHECKPOINT) != pages:
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
            self._local.autocheckpoint = pages

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A short read transaction, so several SELECTs see one snapshot."""
        conn = self.conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Copy the WAL back into the file now, without waiting for readers or writers and
        without this process's write lock (so a shrunk database is shorter on disk too);
        nothing to do with the rollback journal."""
        if self.journal_mode == "wal":
            self.conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @contextmanager
    def checkpointing(self) -> Iterator[None]:
        """Within: the caller copies the WAL back after each of its transactions
        (`write(checkpoint=True)`), and no other commit of this process does.

        A commit that copies the WAL back holds the write lock while it copies and syncs
        every page written since the last copy: during a large gc, tens of milliseconds
        (hundreds after a large transaction), which the next submit would wait for. Other
        processes' commits still copy the WAL back when it is long, but only what no
        checkpoint is copying already (they skip while one runs).
        """
        with self._lock:
            self._checkpointers += 1
        try:
            yield
        finally:
            with self._lock:
                self._checkpointers -= 1

    def shrink(self, stop: threading.Event) -> None:
        """Give free pages back to the filesystem, `VACUUM_PAGES` per transaction, each copied
        back from the WAL at once so the file gets shorter, until none is left or `stop`.

        Only files made with `auto_vacuum = INCREMENTAL` (every one this version creates) can;
        an older one keeps its size and reuses its free pages for new jobs.
        """
        conn = self.conn()
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2: incremental
            return
        while conn.execute("PRAGMA freelist_count").fetchone()[0] > 0 and not stop.is_set():
            with self._writing:
                self._autocheckpoint(conn)
                began = time.perf_counter()
                try:  # (`execute` would free one page per call: the pragma's rows have no columns)
                    conn.executescript(
                        f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({VACUUM_PAGES}); COMMIT;"
                    )
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    self._local.held = time.perf_counter() - began
            self.checkpoint()
            self.rest(stop)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
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
        # a WAL grown by a large gc is cut back to this size once it is copied back
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        self._local.conn = conn
        with self._lock:
            self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection (of every thread)."""
        self._closed = True
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
