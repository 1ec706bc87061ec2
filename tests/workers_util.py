"""Helpers for the worker-side tests: an events recorder, job functions, process checks.

Job functions live here (not in the test modules) because dill sends functions of importable
modules by reference: worker processes import this module through PYTHONPATH (conftest).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jupyter_jobs import notebooks, payload
from jupyter_jobs.executors.base import Task
from jupyter_jobs.executors.local import LocalExecutor
from jupyter_jobs.models import Kind, Outcome, Progress, Reason
from jupyter_jobs.progress import current_job, progress

_ids = itertools.count(1)


def next_id() -> int:
    return next(_ids)


class Recorder:
    """ExecutorEvents that remembers everything and lets a test await a job's end."""

    def __init__(self) -> None:
        self.logs: dict[int, list[bytes]] = {}
        #: (stream, bytes) of each log chunk: "" for the main stream (`streams.py`)
        self.streams: dict[int, list[tuple[str, bytes]]] = {}
        self.progress: dict[int, list[Progress]] = {}
        self.outcomes: dict[int, list[Outcome]] = {}
        self.started: dict[int, list[int]] = {}  # job id -> the attempts that started
        self.history: list[tuple[str, int]] = []  # ("started" | "done", job id), in order
        self.attempts: dict[int, set[int]] = {}
        self._done: dict[int, asyncio.Event] = {}
        self._log_seen: dict[int, asyncio.Event] = {}

    def _event(self, table: dict[int, asyncio.Event], job_id: int) -> asyncio.Event:
        return table.setdefault(job_id, asyncio.Event())

    def on_log(self, job_id: int, attempt: int, data: bytes, stream: str = "") -> None:
        self.logs.setdefault(job_id, []).append(data)
        self.streams.setdefault(job_id, []).append((stream, data))
        self.attempts.setdefault(job_id, set()).add(attempt)
        self._event(self._log_seen, job_id).set()

    def on_progress(self, job_id: int, attempt: int, value: Progress) -> None:
        self.progress.setdefault(job_id, []).append(value)

    def on_started(self, job_id: int, attempt: int) -> None:
        self.started.setdefault(job_id, []).append(attempt)
        self.history.append(("started", job_id))

    def on_done(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        self.outcomes.setdefault(job_id, []).append(outcome)
        self.history.append(("done", job_id))
        self.attempts.setdefault(job_id, set()).add(attempt)
        self._event(self._done, job_id).set()

    def log_text(self, job_id: int) -> str:
        return b"".join(self.logs.get(job_id, [])).decode(errors="replace")

    def stream_texts(self, job_id: int) -> dict[str, str]:
        """The log by stream ("" the main one), each as text."""
        texts: dict[str, bytes] = {}
        for stream, data in self.streams.get(job_id, []):
            texts[stream] = texts.get(stream, b"") + data
        return {stream: data.decode(errors="replace") for stream, data in texts.items()}

    async def done(self, job_id: int, timeout: float = 60.0) -> Outcome:
        await asyncio.wait_for(self._event(self._done, job_id).wait(), timeout)
        return self.outcomes[job_id][0]

    async def log_contains(self, job_id: int, text: str, timeout: float = 30.0) -> None:
        async def wait() -> None:
            while text not in self.log_text(job_id):
                event = self._event(self._log_seen, job_id)
                event.clear()
                if text in self.log_text(job_id):
                    return
                await event.wait()

        await asyncio.wait_for(wait(), timeout)


@contextlib.asynccontextmanager
async def running_executor(recorder: Recorder, max_workers: int = 2, **kwargs: Any):
    """A started LocalExecutor that is shut down (no process left) when the block ends."""
    kwargs.setdefault("progress_interval", 0.2)
    executor = LocalExecutor(recorder, max_workers, **kwargs)
    await executor.start()
    try:
        yield executor
    finally:
        await asyncio.wait_for(executor.shutdown(1.0), 30)


def function_task(fn: Any, *args: Any, **kwargs: Any) -> Task:
    return Task(
        next_id(), 1, Kind.FUNCTION, fn.__name__, bytes(payload.function_payload(fn, args, kwargs))
    )


def cell_task(code: str, namespace: dict[str, Any] | None = None, **options: Any) -> Task:
    data, _ = payload.cell_payload(code, namespace or {})
    return Task(next_id(), 1, Kind.CELL, "cell", bytes(data), options=options)


def notebook_task(*cells: str) -> Task:
    """A notebook job of these code cells (run with python3)."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    data = notebooks.payload(json.loads(nbformat.writes(nb)), {}, None)
    return Task(next_id(), 1, Kind.NOTEBOOK, "notebook", data)


async def stop_in_second_cell(
    executor: Any, recorder: Recorder, reason: Reason | None, grace: float
) -> Outcome:
    """Run a notebook whose second cell sleeps, stop it there, and return its outcome."""
    task = notebook_task("print('first cell done')", "import time\ntime.sleep(600)")
    await executor.run(task)
    await wait_for(lambda: any(p.done == 1 for p in recorder.progress.get(task.job_id, [])), 120)
    await asyncio.wait_for(executor.kill(task.job_id, reason, grace), 30)
    return recorder.outcomes[task.job_id][0]


def assert_stopped_in_second_cell(result: bytes | None) -> None:
    """The result of `stop_in_second_cell`: the first cell's output, the second one marked."""
    import nbformat

    executed = nbformat.reads(result.decode(), as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "first cell done\n"
    assert [o["ename"] for o in executed.cells[1].outputs] == ["JobStopped"]


async def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    """Poll `predicate` on the loop until truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return value


def hold_loop_until(predicate: Any, timeout: float = 30.0) -> None:
    """Poll `predicate` *without* yielding to the loop: the executor reads none of its workers'
    frames meanwhile, as on a busy server, so a worker can get ahead of what the executor knows.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """True while `pid` is a process that still runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def read_pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


# -- job functions (run inside workers) -----------------------------------------------------


def add(a: int, b: int = 0) -> int:
    return a + b


def whoami() -> dict[str, Any]:
    job = current_job()
    return {
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "job": (job.id, job.attempt) if job else None,
    }


def outer_fails(message: str) -> None:
    inner_fails(message)


def inner_fails(message: str) -> None:
    raise ValueError(message)


def returns_generator() -> Any:
    return (i for i in range(3))


def mixed_output(gate: str) -> str:
    print("one")
    os.system("echo two")
    os.write(1, b"three\n")
    print("to stderr", file=sys.stderr)
    sys.stderr.flush()
    while not os.path.exists(gate):
        time.sleep(0.01)
    print("four")
    return "ok"


def waits_for(gate: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} did not appear")
        time.sleep(0.01)
    return "opened"


def floods(megabytes: int) -> int:
    line = "x" * 1023 + "\n"
    block = line * 1024
    for _ in range(megabytes):
        sys.stdout.write(block)
    return megabytes


def many_progress(count: int, seconds: float) -> int:
    """`count` progress calls spread over about `seconds`, then an exact last one."""
    for i in range(count):
        progress(i, count, "working")
        if i % 1000 == 0:
            time.sleep(seconds * 1000 / count)
    progress(count, count, "end")
    return count


def with_tqdm(n: int) -> int:
    from tqdm.auto import tqdm

    total = 0
    for i in tqdm(range(n), desc="steps", mininterval=0):
        total += i
        time.sleep(0.002)
    return total


def public_api() -> Any:
    import jupyter_jobs

    jupyter_jobs.progress(1, 2, "half")
    job = jupyter_jobs.current_job()
    return (job.id, job.attempt)


def vandal() -> int:
    """Leaves the worker in a state the next job must not notice."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdout.close()
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    os.close(1)
    return os.getpid()


def prints(text: str) -> int:
    print(text)
    os.system(f"echo {text} from a child")
    return os.getpid()


def sleeps(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def spawns_and_hangs(pid_file: str, ignore_term: bool) -> None:
    """Children, a grandchild through a shell, then hang; optionally deaf to SIGTERM."""
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "1000"])
    grandchild_file = Path(pid_file + ".g")
    shell = subprocess.Popen(
        [
            "sh",
            "-c",
            f"sleep 1000 & echo $! > {grandchild_file}.tmp; "
            f"mv {grandchild_file}.tmp {grandchild_file}; wait",
        ]
    )
    while not grandchild_file.exists():
        time.sleep(0.01)
    pids = f"{os.getpid()} {child.pid} {shell.pid} {grandchild_file.read_text().strip()}"
    Path(pid_file + ".tmp").write_text(pids)
    os.rename(pid_file + ".tmp", pid_file)
    while True:
        time.sleep(1)


#: Run by `escapes`: starts a daemon (a new session; its launcher then exits, orphaning it).
_DAEMON = (
    "import subprocess, sys; "
    "p = subprocess.Popen(['sh', '-c', sys.argv[1] + 'exec sleep 1000'], "
    "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(p.pid)"
)


def escapes(pid_file: str, ignore_term: bool, settle: float = 0.0) -> None:
    """Descendants that leave the job's process group, then hang: a child in a session of its
    own, and a daemon (its own session, its parent gone); optionally all deaf to SIGTERM. The
    pids are written `settle` seconds after they started: a watcher that looks every so often
    (and cannot be asked whether it did) has seen them by then."""
    trap = "trap '' TERM; " if ignore_term else ""
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    own = subprocess.Popen(["sh", "-c", f"{trap}exec sleep 1000"], start_new_session=True)
    launcher = subprocess.run(
        [sys.executable, "-c", _DAEMON, trap], capture_output=True, text=True, check=True
    )
    time.sleep(settle)
    Path(pid_file + ".tmp").write_text(f"{os.getpid()} {own.pid} {launcher.stdout.strip()}")
    os.rename(pid_file + ".tmp", pid_file)
    while True:
        time.sleep(1)


def start_log_files(folder: str) -> dict[str, list[str]]:
    """The start log's files (`start_log.py`) and their lines, as this job's code finds them."""
    files = [p for p in Path(folder).iterdir() if p.name != "owner"]
    return {p.name: p.read_text().splitlines() for p in files}


def segfaults() -> None:
    import ctypes

    ctypes.string_at(0)


def exits(code: int) -> None:
    os._exit(code)


def records_start(path: str, gate: str | None = None) -> int:
    """Adds its pid to `path` as it begins (once per time it runs), then waits for `gate`."""
    with open(path, "a") as file:
        file.write(f"{os.getpid()}\n")
    if gate is not None:
        waits_for(gate)
    return os.getpid()


def graceful_until_term(flag: str) -> None:
    """Hangs, but ends cleanly on SIGTERM (a common pattern): the job ends, its worker lives."""

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit("terminated, cleaning up")

    signal.signal(signal.SIGTERM, on_term)
    Path(flag).write_text(str(os.getpid()))  # only now may the test send SIGTERM
    while True:
        time.sleep(0.05)


def hangs_after_start(flag: str) -> None:
    Path(flag + ".tmp").write_text(str(os.getpid()))
    os.replace(flag + ".tmp", flag)  # whole: a test may read the pid as soon as `flag` exists
    while True:
        time.sleep(1)


def import_local() -> Any:
    """What `localmod` (a module in the job's directory) says."""
    import localmod

    return localmod.VALUE


def set_environment_variable(name: str, value: str) -> None:
    os.environ[name] = value


def remove_environment_variable(name: str) -> None:
    del os.environ[name]


def environment_variable(name: str) -> str | None:
    return os.environ.get(name)


def progress_from_a_forked_child() -> int:
    """A child forked by the job reports progress, then the job itself does."""
    from jupyter_jobs import progress

    pid = os.fork()
    if pid == 0:
        for k in range(2000):
            progress(k, 2000, "child")
        os._exit(0)
    os.waitpid(pid, 0)
    progress(1, 1, "parent")
    return 1


def labelled_threads() -> None:
    """Its own lines, two named threads' lines (taking turns), a `stream()` block's, and a
    thread's last line left without its newline."""
    import threading

    import jupyter_jobs

    def worker(name: str, start: threading.Semaphore, then: threading.Semaphore) -> None:
        for k in range(3):
            start.acquire()
            print(f"{name} line {k}")
            then.release()

    a_turn, b_turn = threading.Semaphore(1), threading.Semaphore(0)
    threads = [
        threading.Thread(target=worker, args=("a", a_turn, b_turn), name="worker-a"),
        threading.Thread(target=worker, args=("b", b_turn, a_turn), name="worker-b"),
    ]
    print("main before")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with jupyter_jobs.stream("phase-2"):
        print("inside phase 2")
    partial = threading.Thread(target=lambda: sys.stdout.write("no newline"), name="partial")
    partial.start()
    partial.join()
    print("main after")


def mp_child(method: str) -> None:
    print(f"python from the {method} child", flush=True)
    os.write(2, f"fd 2 of the {method} child\n".encode())


def labelled_children() -> dict[str, int]:
    """A subprocess, a shell command inside a `stream()` block, and a multiprocessing child of
    each start method; returns the pids by what started them."""
    import multiprocessing

    import jupyter_jobs

    pids: dict[str, int] = {}
    code = "import os; print('from subprocess', flush=True); os.write(2, b'err\\n')"
    child = subprocess.Popen([sys.executable, "-c", code])
    child.wait()
    pids["subprocess"] = child.pid
    with jupyter_jobs.stream("tool"):
        subprocess.run("echo from the shell", shell=True, check=True)
    captured = subprocess.run(["echo", "captured"], capture_output=True, text=True, check=True)
    print(f"main got {captured.stdout.strip()}")
    for method in multiprocessing.get_all_start_methods():
        process = multiprocessing.get_context(method).Process(target=mp_child, args=(method,))
        process.start()
        process.join()
        pids[method] = process.pid
    return pids


@contextlib.contextmanager
def dask_cluster(n_workers: int) -> Iterator[Any]:
    """A LocalCluster of `n_workers` single-threaded worker processes that can import the
    tests' job functions (this folder on their PYTHONPATH)."""
    import pytest
    from distributed import LocalCluster

    tests_dir = str(Path(__file__).parent)
    path = os.environ.get("PYTHONPATH", "")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests_dir, path) if p))
        with LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster:
            yield cluster
