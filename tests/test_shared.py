"""Functions stored once (`shared.py`, `store/shared.py`): a map's function is pickled, stored,
sent to each worker and loaded there once; gc frees it with its last job; byte totals count it
once; databases and payloads from before keep working."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from jupyter_jobs import JobQueue, buffers, errors, protocol, shared
from jupyter_jobs.models import FileBytes, JobSpec, Kind, Status
from jupyter_jobs.oslayer import make_private_dir
from jupyter_jobs.payload import dumps, function_payload
from jupyter_jobs.shared import Function, HeldFunctions, LoadedFunctions, SharedPayload
from jupyter_jobs.store import Store
from jupyter_jobs.store.schema import MIGRATIONS
from jupyter_jobs.workspace import MARKER, folder_for, write_private

import jobfuncs
import old_schemas


def closing_over(data: bytes):
    """A function sent by value, `data` with it."""

    def size_plus(x: int) -> int:
        return len(data) + x

    return size_plus


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def shared_files(db: Path) -> list[str]:
    folder = db.with_name(db.name + ".files") / "shared"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def recounted_blob_bytes(db: Path) -> tuple[int, int]:
    """(the kept `blob_bytes` total, the same recounted from the rows)."""
    (kept,) = rows(db, "SELECT value FROM totals WHERE name = 'blob_bytes'")[0]
    (counted,) = rows(
        db,
        "SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs) "
        "+ (SELECT COALESCE(SUM(size), 0) FROM shared_blobs)",
    )[0]
    return kept, counted


# --- packs, and the two counts of a worker's functions ---------------------------------------


def test_a_pack_holds_the_function_and_the_arguments_apart() -> None:
    function = Function.of(b"\x80function bytes")
    body = shared.pack(function.sha256, function.data, b"\x80arguments")
    found = shared.unpack(body)
    assert found is not None and found.sha256 == function.sha256
    assert bytes(found.function) == function.data
    assert bytes(found.arguments) == b"\x80arguments"
    assert shared.unpack(function_payload(abs, (-1,))) is None  # a payload from before
    with pytest.raises(ValueError, match="cut"):
        shared.unpack(body[:40])
    with pytest.raises(ValueError, match="says"):
        shared.unpack(body[: len(body) - len(b"\x80arguments") - 3])


def test_only_a_function_large_enough_is_shared() -> None:
    small = Function.of(b"x" * (shared.SHARE_FROM - 1))
    large = Function.of(b"x" * shared.SHARE_FROM)
    assert isinstance(shared.payload_for(small, b"a"), bytes)
    assert shared.payload_for(large, b"a") == SharedPayload(large, b"a")
    assert isinstance(shared.payload_for(Function(large.sha256), b"a"), SharedPayload)
    # A group's size counts each function once.
    assert shared.parts_size([SharedPayload(large, b"a")] * 3 + [b"xy"]) == (
        5,
        {large.sha256: shared.SHARE_FROM},
    )


def test_executor_and_worker_agree_on_what_the_worker_holds() -> None:
    chance = random.Random(15)
    sizes = [chance.randint(1, 4 * shared.SHARE_FROM) for _ in range(12)]
    functions = [Function.of(os.urandom(size)) for size in sizes]
    sender = HeldFunctions(max_entries=4, max_bytes=10 * shared.SHARE_FROM)
    worker = HeldFunctions(max_entries=4, max_bytes=10 * shared.SHARE_FROM)
    cut = 0
    for n in range(500):
        function = chance.choice(functions)
        claimed = SharedPayload(function, str(n).encode())
        _, body = protocol.job_frame({}, sender.send(claimed))  # as the local executor sends it
        cut += len(body) < len(shared.packed(claimed))
        received = worker.receive(bytearray(body))  # as the runner's inbox reads it
        assert isinstance(received, shared.Unpacked)
        assert bytes(received.function) == function.data
        assert bytes(received.arguments) == str(n).encode()
    assert 100 < cut < 500  # some went whole (evicted meanwhile), most did not
    assert sender.send(b"\x80not a pack") == b"\x80not a pack"
    in_file = FileBytes("/the/arguments", 7)
    assert sender.send(in_file) is in_file


def test_arguments_in_a_file_go_as_its_path_beside_the_function(tmp_path: Path) -> None:
    function = Function.of(os.urandom(shared.SHARE_FROM))
    arguments = FileBytes(str(tmp_path / "payload"), 11)
    header, body = protocol.job_frame({"t": "job"}, SharedPayload(function, arguments))
    assert header["payload_file"] == arguments.path and header["payload_len"] == 11
    unpacked = shared.unpack(body)
    assert unpacked is not None and bytes(unpacked.function) == function.data
    assert bytes(unpacked.arguments) == b""  # they stay in their file
    (tmp_path / "payload").write_bytes(b"hello world")
    assert shared.packed(SharedPayload(function, arguments)) == shared.pack(
        function.sha256, function.data, b"hello world"
    )  # what a Dask worker, maybe elsewhere, gets


def test_a_worker_keeps_loaded_functions_for_one_directory() -> None:
    loaded = LoadedFunctions(max_entries=2)
    loads: list[bytes] = []

    def load(data: memoryview) -> bytes:
        loads.append(bytes(data))
        return bytes(data).upper()

    packs = [shared.unpack(shared.pack(Function.of(d).sha256, d, b"")) for d in (b"a", b"b", b"c")]
    assert [loaded.get(p, "/here", load) for p in packs[:2] * 3] == [b"A", b"B"] * 3
    assert loads == [b"a", b"b"]
    loaded.get(packs[2], "/here", load)  # a third: the least recently used goes
    loaded.get(packs[0], "/here", load)
    assert loads == [b"a", b"b", b"c", b"a"]
    loaded.get(packs[0], "/elsewhere", load)  # another directory: loaded again
    assert loads[-1] == b"a" and len(loads) == 5
    failing = shared.unpack(shared.pack(Function.of(b"d").sha256, b"d", b""))
    with pytest.raises(ZeroDivisionError):
        loaded.get(failing, "/elsewhere", lambda data: 1 / 0)
    assert loaded.get(failing, "/elsewhere", load) == b"D"  # a failed load kept nothing
    cut = shared.unpack(shared.pack(Function.of(b"e").sha256, b"", b""))
    with pytest.raises(ValueError, match="was not sent to this worker"):
        loaded.get(cut, "/elsewhere", load)


# --- the engine: stored once, reused, freed ---------------------------------------------------


def test_a_map_of_1000_items_stores_its_function_once(db_path: Path) -> None:
    fn = closing_over(os.urandom(200_000))  # large: its bytes go to a file
    with JobQueue(db_path) as q:
        jobs = q.map(fn, range(1000), hold=True)
        assert len(jobs) == 1000
        function = rows(db_path, "SELECT sha256, size, path FROM shared_blobs")
        assert len(function) == 1
        sha256, size, path = function[0]
        assert size > 200_000 and path is not None
        assert shared_files(db_path) == [Path(path).name]
        payloads = rows(
            db_path, "SELECT COUNT(*), COUNT(DISTINCT shared), MAX(size) FROM blobs "
            "WHERE kind = 'payload'",
        )  # fmt: skip
        assert payloads == [(1000, 1, payloads[0][2])] and payloads[0][2] < 200
        assert rows(db_path, "SELECT DISTINCT shared FROM blobs") == [(sha256,)]
        assert jobs[0].record.payload_size > size  # what the job carries: function included
        assert recounted_blob_bytes(db_path)[0] == recounted_blob_bytes(db_path)[1]
        stats = q.store.stats()
        assert size < stats["workspace_bytes"] < size + 1000 * 200


def test_the_same_function_submitted_again_reuses_the_stored_bytes(queue) -> None:
    fn = closing_over(os.urandom(5000))
    db = queue.store.path
    first = queue.map(fn, range(10))
    again = [queue.submit(fn, 100), *queue.map(fn, range(3))]
    assert [j.result(timeout=60) for j in first + again] == [
        *(5000 + i for i in range(10)),
        5100,
        5000,
        5001,
        5002,
    ]
    (stored,) = rows(db, "SELECT sha256, created_at FROM shared_blobs")
    assert rows(db, "SELECT COUNT(*) FROM blobs WHERE shared = ?", stored[0]) == [(14,)]
    assert queue.store.describe_function(stored[0]).references == 14


def test_a_small_function_travels_with_each_job(queue) -> None:
    jobs = queue.map(jobfuncs.add, range(5))  # by name: a few bytes
    assert [j.result(timeout=60) for j in jobs] == [0, 1, 2, 3, 4]
    assert rows(queue.store.path, "SELECT COUNT(*) FROM shared_blobs") == [(0,)]


def test_gc_frees_a_function_with_the_last_job_that_names_it(queue) -> None:
    db = queue.store.path
    fn = closing_over(os.urandom(100_000))
    jobs = queue.map(fn, range(6))
    assert [j.result(timeout=60) for j in jobs] == [100_000 + i for i in range(6)]
    file = shared_files(db)
    assert len(file) == 1
    for job in jobs[:5]:
        queue.delete(job.id)
    assert len(rows(db, "SELECT * FROM shared_blobs")) == 1 and shared_files(db) == file
    assert queue.store.gc(older_than=0) == [jobs[5].id]
    assert rows(db, "SELECT * FROM shared_blobs") == []
    assert shared_files(db) == []
    assert recounted_blob_bytes(db) == (0, 0)
    with pytest.raises(errors.FunctionNotFound):
        queue.store.describe_function(file[0].split(".")[0])
    # Submitted again after that: stored again, and it runs.
    assert queue.submit(fn, 1).result(timeout=60) == 100_001
    assert len(shared_files(db)) == 1 and shared_files(db) != file


def test_the_byte_budget_counts_a_function_once_with_the_last_job_naming_it(queue) -> None:
    db = queue.store.path
    fn = closing_over(os.urandom(300_000))
    mapped = queue.map(fn, range(3))
    assert [j.result(timeout=60) for j in mapped] == [300_000 + i for i in range(3)]
    later = [queue.submit(jobfuncs.blob, 100_000) for _ in range(2)]
    assert [len(j.result(timeout=60)) for j in later] == [100_000] * 2
    # ~500 KB; the function goes with the last of the map's jobs, and then 250 KB are met.
    assert sorted(queue.store.gc(max_bytes=250_000)) == sorted(j.id for j in mapped)
    assert rows(db, "SELECT COUNT(*) FROM shared_blobs") == [(0,)]
    assert 200_000 < queue.store.stats()["workspace_bytes"] < 250_000
    assert recounted_blob_bytes(db)[0] == recounted_blob_bytes(db)[1]


def test_an_upload_no_job_names_is_freed_only_after_its_grace(db_path: Path, monkeypatch) -> None:
    from jupyter_jobs.store import shared as stored_once

    with Store(db_path) as store:
        function = Function.of(b"\x80" + os.urandom(2000))
        assert store.put_function(function)[1] is True
        assert store.put_function(function)[1] is False  # stored already: nothing changes
        store.gc()
        assert store.describe_function(function.sha256).references == 0  # within its grace
        monkeypatch.setattr(stored_once, "ORPHAN_GRACE", -1.0)
        store.gc()
        with pytest.raises(errors.FunctionNotFound):
            store.describe_function(function.sha256)
        with pytest.raises(errors.InvalidRequest, match="have another sha256"):
            store.put_function(Function(function.sha256, b"other bytes"))


def test_a_job_naming_a_function_the_store_has_not_got_is_refused(db_path: Path) -> None:
    with Store(db_path) as store:
        spec = JobSpec(name="f", kind=Kind.FUNCTION)
        missing = Function.of(b"never stored")
        with pytest.raises(errors.FunctionNotFound) as refused:
            store.enqueue(spec, SharedPayload(Function(missing.sha256), b"\x80args"))
        assert refused.value.detail == {"sha256": [missing.sha256]}
        assert store.counts()["queued"] == 0


def test_big_arguments_stay_a_file_a_worker_maps_beside_their_stored_function(queue) -> None:
    import numpy as np

    db = queue.store.path
    big = np.arange(2**18, dtype=np.int64)  # 2 MiB: beside the pickle, then the job's file
    fn = closing_over(os.urandom(3000))  # large enough to be shared on its own
    jobs = [queue.submit(jobfuncs.memory_of, big), *queue.map(jobfuncs.memory_of, [big, big])]
    jobs.append(queue.submit(fn, 5))
    expected = ("mmap", True, int(big.sum()))
    assert [j.result(timeout=60) for j in jobs] == [expected] * 3 + [3005]
    # The function (a few bytes, by name) is stored once all the same: the arguments, big
    # arrays beside their pickle, are each job's own file, which the worker mapped.
    found = rows(
        db,
        "SELECT job_id, shared, path, size FROM blobs WHERE kind = 'payload' ORDER BY job_id",
    )
    assert [r[0] for r in found] == [j.id for j in jobs]
    memory_of = {r[1] for r in found[:3]}
    assert len(memory_of) == 1 and None not in memory_of
    assert all(r[2] is not None and r[3] > big.nbytes for r in found[:3])
    for _, _, path, _ in found[:3]:
        head = (queue.store.workspace_root / path).read_bytes()[: len(buffers.MAGIC)]
        assert head == buffers.MAGIC  # the framed arguments, not a pack
    assert found[3][1] is not None and found[3][1] not in memory_of and found[3][2] is None
    assert rows(db, "SELECT COUNT(*) FROM shared_blobs") == [(2,)]


def test_a_warm_worker_loads_a_maps_function_once(queue) -> None:
    seen = [j.result(timeout=60) for j in queue.map(jobfuncs.counting_loads("a"), range(60))]
    per_worker = defaultdict(set)
    for pid, loads in seen:
        per_worker[pid].add(loads)
    assert per_worker and all(loads == {1} for loads in per_worker.values()), dict(per_worker)
    # Another function: loaded once more in a worker that ran the first.
    again = [j.result(timeout=60) for j in queue.map(jobfuncs.counting_loads("b"), range(20))]
    assert {loads for pid, loads in again if pid in per_worker} == {2}


def test_a_kernel_types_jobs_name_its_stored_functions(db_path: Path) -> None:
    data = os.urandom(50_000)

    def measure(extra: int) -> int:
        return len(data) + extra

    with JobQueue(db_path) as q:
        q.register_type(measure, "measure")
        held = [q.submit_typed("measure", {"extra": i}, hold=True) for i in range(3)]
        q.backend.flush(60)
        ((sha256,),) = rows(db_path, "SELECT shared FROM job_types WHERE name = 'measure'")
        assert rows(db_path, "SELECT functions FROM job_types") == [(b"",)]
        assert rows(db_path, "SELECT COUNT(*) FROM blobs WHERE shared = ?", sha256) == [(3,)]
        assert rows(db_path, "SELECT COUNT(*) FROM shared_blobs") == [(1,)]
        q.delete_job_type("measure")  # its jobs still name the functions
        assert rows(db_path, "SELECT COUNT(*) FROM shared_blobs") == [(1,)]
        q.start_consumer(max_workers=1)
        assert [q.release(j.id).result(timeout=120) for j in held] == [50_000, 50_001, 50_002]
        q.store.clear_finished()
        assert rows(db_path, "SELECT COUNT(*) FROM shared_blobs") == [(0,)]
        # Registering a name again frees the functions it named, if no job names them.
        q.register_type(measure, "measure")
        q.register_type(jobfuncs.add, "measure")
        assert rows(db_path, "SELECT COUNT(*) FROM shared_blobs") == [(1,)]


# --- what was there before --------------------------------------------------------------------


def old_database(db: Path) -> None:
    """A database at the schema before functions were stored once: main's latest, with users,
    workers and payload files (every migration but the last)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        old_schemas.schema_before(conn, "shared_blobs")


def old_job(db: Path, name: str, payload: bytes, user: str, in_file: bool = False) -> int:
    """A queued function job of `user` as that schema stored it: its payload inline, or in its
    file in the database's workspace (a large one)."""
    with sqlite3.connect(db) as conn:
        job_id = conn.execute(
            "INSERT INTO jobs (name, kind, status, created_at, queued_at, payload_size, user, "
            "user_display_name) VALUES (?, 'function', 'queued', 1.0, 1.0, ?, ?, ?)",
            (name, len(payload), user, user.title()),
        ).lastrowid
        path = None
        if in_file:
            (workspace_id,) = conn.execute(
                "SELECT value FROM meta WHERE key = 'workspace_id'"
            ).fetchone()
            root = folder_for(db)
            make_private_dir(root)
            write_private(root / MARKER, workspace_id.encode())
            make_private_dir(root / str(job_id))
            write_private(root / str(job_id) / "payload", payload)
            path = f"{job_id}/payload"
        conn.execute(
            "INSERT INTO blobs (job_id, kind, attempt, size, data, path) "
            "VALUES (?, 'payload', 0, ?, ?, ?)",
            (job_id, len(payload), None if path else payload, path),
        )
    return job_id


def test_a_database_from_before_is_brought_forward_and_its_jobs_run(db_path: Path) -> None:
    import numpy as np

    old_database(db_path)

    def doubled(x: int) -> int:
        return 2 * x

    big = np.arange(2**17, dtype=np.int64)  # its payload is framed, and kept in a file
    framed = function_payload(jobfuncs.memory_of, (big,))
    assert isinstance(framed, buffers.Framed)
    old = old_job(db_path, "old", bytes(function_payload(doubled, (21,))), "alice")
    old_big = old_job(db_path, "old big", bytes(framed), "bob", in_file=True)
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO job_types (name, schema, functions, created_at) VALUES "
            "('old_type', ?, ?, 1.0)",
            (json.dumps({"type": "object"}), dumps({"run": doubled, "summarize": None})),
        )
    with JobQueue(db_path) as q:
        assert rows(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        assert rows(db_path, "PRAGMA foreign_key_check") == []
        q.start_consumer(max_workers=1)
        assert q.get(old).result(timeout=120) == 42
        assert q.get(old_big).result(timeout=120) == ("mmap", True, int(big.sum()))
        assert [q.get(i).record.user for i in (old, old_big)] == ["alice", "bob"]
        # A type registered before keeps its bytes in its row, and its jobs a copy of them.
        assert q.submit_typed("old_type", {"x": 4}).result(timeout=120) == 8
        assert rows(db_path, "SELECT COUNT(*) FROM shared_blobs") == [(0,)]
        fn = closing_over(b"y" * 3000)
        assert q.map(fn, [1])[0].result(timeout=120) == 3001
        assert rows(db_path, "SELECT user FROM shared_users") == [(q.user.username,)]
        assert q.get(old).status is Status.SUCCEEDED
        assert recounted_blob_bytes(db_path)[0] == recounted_blob_bytes(db_path)[1]
