"""The folder of one database's job files: large payloads, results and outputs, every log, and
the large functions stored once (`shared/`).

Why it exists: those files are named by job id, and job ids start at 1 in every database. A
folder shared by two databases (two in one directory, or a new database beside a deleted one's
files) would hand one database's results and logs to the other. So each database has its own
folder, named for the database file (`jobs.db` → `jobs.db.files/`), and the folder carries a
marker file holding the workspace id stored in the database. A folder whose marker names another
id, or an unmarked folder that already holds files, is refused (`WorkspaceConflict`): it is never
read, written or removed.

Every path into the folder is built here, and nothing here speaks SQL: the store reads the id
and what its rows point to, and hands them over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import StorageError, WorkspaceConflict
from .oslayer import make_private_dir

log = logging.getLogger(__name__)

#: Bytes, or anything that exposes its memory as bytes (a memoryview of an array).
Buffer = bytes | bytearray | memoryview

#: The file in the folder that names the database it belongs to (its workspace id).
MARKER = "workspace-id"
#: The folder of the functions stored once (`store/shared.py`), beside the job folders.
SHARED_FOLDER = "shared"
#: Where every database in a directory kept its files before workspaces had ids.
LEGACY_FOLDER = "jobs"
#: The folder of files on their way to a job (`Workspace.incoming`).
INCOMING = "incoming"
#: Seconds after which a file left in INCOMING is an upload that never ended (a server that
#: died mid-request): removed when the store opens.
INCOMING_STALE = 24 * 3600.0
_TEMP_PREFIX = f".{MARKER}."


def folder_for(db_path: Path) -> Path:
    """The workspace folder of the database at `db_path`: `<file name>.files` beside it."""
    return db_path.with_name(db_path.name + ".files")


def write_private(path: Path | str, data: Buffer | list[Buffer], append: bool = False) -> int:
    """Write (or append) bytes to a 0600 file whatever the umask; returns the file's size.
    `data` may come in parts (a framed pickle's, buffers.py), written one after the other."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        write_all(fd, data)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def write_all(fd: int, data: Buffer | list[Buffer]) -> None:
    """Write all of `data` (or of each of its parts) to a file descriptor, without copies."""
    for part in data if isinstance(data, list) else [data]:
        view = memoryview(part).cast("B")
        while view:
            view = view[os.write(fd, view) :]


@dataclass(frozen=True)
class Reference:
    """A file a database row points to, relative to the folder, with the size the row records."""

    path: str
    size: int


class Workspace:
    """One database's folder; `open()` must succeed before anything is read or written in it."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.root = folder_for(db_path)

    # -- paths ---------------------------------------------------------------------------------

    def job_folder(self, job_id: int) -> Path:
        return self.root / str(job_id)

    def log_file(self, job_id: int) -> Path:
        return self.job_folder(job_id) / "log"

    @property
    def start_logs(self) -> Path:
        """The folder of the consumers' start logs (`start_log.py`)."""
        return self.root / "starts"

    def start_log(self, consumer_id: str) -> Path:
        """Where `consumer_id`'s workers write down the attempts they begin, named by a digest
        of the id (which holds characters some file systems refuse)."""
        digest = hashlib.sha256(consumer_id.encode("utf-8", "surrogateescape")).hexdigest()
        return self.start_logs / digest[:16]

    def file(self, relative: str) -> Path:
        """The file a blob row points to (its `path` column, relative to the folder)."""
        return self.root / relative

    # -- files ---------------------------------------------------------------------------------

    def write(self, job_id: int, name: str, data: bytes) -> tuple[Path, str]:
        """Write a job's file (0600, in a 0700 job folder); its path and the row's `path`."""
        target = self._make_job_folder(job_id) / name
        write_private(target, data)
        return target, f"{job_id}/{name}"

    def write_shared(self, sha256: str, data: bytes) -> tuple[Path, str]:
        """Write a function stored once (`store/shared.py`) into `shared/`; its path and the
        row's `path`. Each write gets a new name, so removing a freed function's file after
        its commit never removes the file of the same function stored again meanwhile."""
        folder = self.root / SHARED_FOLDER
        if not folder.is_dir():
            make_private_dir(folder)
        name = f"{sha256}.{secrets.token_hex(4)}"
        write_private(folder / name, data)
        return folder / name, f"{SHARED_FOLDER}/{name}"

    def incoming(self) -> Path:
        """The folder of files a job will take (`adopt`): large submits the server writes as
        they arrive, large results local workers leave (made if missing)."""
        folder = self.root / INCOMING
        if not folder.is_dir():
            make_private_dir(folder)
        return folder

    def spool(self) -> tuple[Path, int]:
        """A new private file in `incoming` for a payload that is still arriving, open for
        writing: its path and file descriptor. A job takes it with `adopt`; whoever made it
        removes it if none does."""
        path = self.incoming() / secrets.token_hex(16)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        return path, fd

    def adopt(self, job_id: int, name: str, spooled: Path) -> tuple[Path, str]:
        """Move a spooled file into a job's folder as its file `name` (no copy); its path and
        the row's `path`, as `write` returns them."""
        target = self._make_job_folder(job_id) / name
        os.replace(spooled, target)
        return target, f"{job_id}/{name}"

    def remove_stale_spools(self, now: float) -> None:
        """Remove spooled files older than INCOMING_STALE: uploads a dead server left."""
        try:
            entries = list(os.scandir(self.root / INCOMING))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if now - entry.stat().st_mtime > INCOMING_STALE:
                    os.unlink(entry.path)
            except OSError as exc:
                log.warning("could not remove the stale upload %s: %s", entry.path, exc)

    def append_log(self, job_id: int, data: bytes) -> int:
        """Append to a job's log file; returns its new size."""
        self._make_job_folder(job_id)
        return write_private(self.log_file(job_id), data, append=True)

    def read(self, relative: str) -> bytes:
        """The bytes of the file a blob row points to; a missing file is a `StorageError`."""
        try:
            return self.file(relative).read_bytes()
        except FileNotFoundError:
            raise self._missing(relative) from None

    def _missing(self, relative: str) -> StorageError:
        return StorageError(
            f"the file {relative} of the job database {self.db_path} is missing from its "
            f"workspace {self.root}",
            {"path": relative},
        )

    def open_file(self, relative: str) -> tuple[BinaryIO, int]:
        """The file a blob row points to, open for reading, and its size."""
        try:
            file = self.file(relative).open("rb")
        except FileNotFoundError:
            raise self._missing(relative) from None
        return file, os.fstat(file.fileno()).st_size

    def remove_job(self, job_id: int) -> None:
        """Remove a job's folder; one that never existed is fine, other errors are logged."""

        def report(function: Any, target: str, exc_info: Any) -> None:
            if not isinstance(exc_info[1], FileNotFoundError):
                log.warning("could not remove %s: %s", target, exc_info[1])

        shutil.rmtree(self.job_folder(job_id), onerror=report)

    def _make_job_folder(self, job_id: int) -> Path:
        folder = self.job_folder(job_id)
        if not folder.is_dir():
            make_private_dir(folder)
        return folder

    # -- ownership -----------------------------------------------------------------------------

    def refuse_leftover(self) -> None:
        """Before a new database file is created: refuse a folder another database left."""
        if self._entries() and not self.db_path.exists():
            # (Looked at again: a process creating this database right now creates the file
            # before the folder, so a folder seen with no file is not that one's.)
            raise self._conflict("it holds files but the database does not exist")

    def open(self, workspace_id: str) -> None:
        """Create the folder marked with `workspace_id`, or check that it is marked so.

        The store calls this under its database's write lock, so two processes opening one
        database take turns here.
        """
        make_private_dir(self.root)
        marker = self.root / MARKER
        try:
            found = marker.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            if self._entries():
                raise self._conflict(f"it holds files but no {MARKER} file") from None
            found = _mark(self.root, workspace_id)
        except (OSError, UnicodeDecodeError) as exc:
            raise self._conflict(f"its {MARKER} file cannot be read ({exc})") from None
        if found != workspace_id:
            raise self._conflict(
                f"it belongs to another database (workspace id {found}; this database's is "
                f"{workspace_id})"
            )

    def _entries(self) -> list[str]:
        """What the folder holds besides marker files being written ([] when it is absent)."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return [n for n in names if not n.startswith(_TEMP_PREFIX)]

    def _conflict(self, why: str) -> WorkspaceConflict:
        return WorkspaceConflict(
            f"the job files folder {self.root} cannot be used by the job database "
            f"{self.db_path}: {why}. Nothing in it was read or changed. If it belongs to a "
            "database that was deleted, delete or move the folder; otherwise give this "
            "database another file name",
            {"workspace": str(self.root), "database": str(self.db_path)},
        )

    # -- databases from before workspace ids ---------------------------------------------------

    def adopt_legacy(
        self, workspace_id: str, references: Iterable[Reference], last_id: int
    ) -> bool:
        """Move the `jobs/` folder of a database from before workspace ids to `self.root`, when
        it can be told to be this database's; True if it moved.

        The rule: this folder does not exist yet, and `jobs/` holds only job folders with ids
        this database has given out, and every file this database's rows point to is there with
        the size its row records (at least one file). Otherwise `jobs/` is left as it is, with
        a warning: another database in the same directory may own it or share it.
        """
        legacy = self.db_path.parent / LEGACY_FOLDER
        refs = list(references)
        if self.root.exists() or not legacy.is_dir() or legacy.is_symlink() or not refs:
            return False
        why = _not_ours(legacy, refs, last_id)
        if why:
            log.warning(
                "%s is left as it is, not moved to %s: %s; %d file(s) of %s's jobs (large "
                "payloads and results, logs) are not available",
                legacy,
                self.root,
                why,
                len(refs),
                self.db_path,
            )
            return False
        _mark(legacy, workspace_id)  # before the move: a moved folder is never unmarked
        os.rename(legacy, self.root)
        os.chmod(self.root, 0o700)
        log.warning("moved the job files of %s from %s to %s", self.db_path, legacy, self.root)
        return True


def _mark(folder: Path, workspace_id: str) -> str:
    """Write the marker without ever replacing one; returns the id of the marker now in place."""
    temp = folder / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
    write_private(temp, f"{workspace_id}\n".encode("ascii"))
    try:
        os.link(temp, folder / MARKER)  # (a link is never made over an existing file)
    except FileExistsError:  # something else marked it meanwhile: the caller compares ids
        return (folder / MARKER).read_text(encoding="ascii").strip()
    finally:
        temp.unlink()
    return workspace_id


def _not_ours(legacy: Path, refs: list[Reference], last_id: int) -> str | None:
    """Why the legacy folder cannot be told to belong to the database (None: it does).

    (A marker there is this database's, put there by an open that stopped before the move;
    `Workspace.open` checks it after the move.)
    """
    for name in os.listdir(legacy):
        if name == MARKER or name.startswith(_TEMP_PREFIX):
            continue
        if not (name.isdigit() and int(name) <= last_id and (legacy / name).is_dir()):
            return f"it holds {name}, which no job of this database made"
    for ref in refs:
        try:
            size = (legacy / ref.path).stat().st_size
        except FileNotFoundError:
            return f"{ref.path} is missing"
        if size != ref.size:  # (a log two databases appended to is longer than either says)
            return f"{ref.path} has {size} bytes where this database recorded {ref.size}"
    return None
