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
import sqlite3
import threading
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
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (`BEGIN IMMEDIATE`), committed on leaving, rolled back on an
        exception."""
        conn = self.conn()
        with self._writing:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

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
    def deferred_checkpoints(self) -> Iterator[None]:
        """Within: this thread's commits leave the WAL to grow, for the caller to `checkpoint`
        between its transactions; a commit that copies the WAL back holds the write lock for
        as long as that takes (tens of milliseconds while a large gc writes)."""
        conn = self.conn()
        (pages,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")

    def shrink(self) -> None:
        """Give free pages back to the filesystem, `VACUUM_PAGES` per transaction, then copy
        the WAL back so the file gets shorter.

        Only files made with `auto_vacuum = INCREMENTAL` (every one this version creates) can;
        an older one keeps its size and reuses its free pages for new jobs.
        """
        conn = self.conn()
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2: incremental
            return
        while conn.execute("PRAGMA freelist_count").fetchone()[0] > 0:
            with self._writing:
                try:  # (`execute` would free one page per call: the pragma's rows have no columns)
                    conn.executescript(
                        f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({VACUUM_PAGES}); COMMIT;"
                    )
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            self.checkpoint()

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
