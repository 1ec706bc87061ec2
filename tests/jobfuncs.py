"""Functions that tests run as jobs (importable by worker processes through PYTHONPATH)."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time

import jupyter_jobs


def noop() -> None:
    return None


def add(a: int, b: int = 0) -> int:
    return a + b


def stamped(region: str, scheduled_time: str, days: int = 1) -> dict[str, object]:
    """A job type's run that declares `scheduled_time`: a schedule's runs receive it."""
    return {"region": region, "days": days, "scheduled_time": scheduled_time}


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def wait_for_file(path: str, timeout: float = 120.0) -> None:
    """Run until `path` exists (a gate the test opens), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def blob(size: int) -> bytes:
    return b"x" * size


def mark(path: str) -> int:
    """Append this job's id and attempt to `path` (O_APPEND: one line per run, atomically)."""
    job = jupyter_jobs.current_job()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{job.id} {job.attempt}\n".encode())
    finally:
        os.close(fd)
    return job.id


def mark_then_sleep(path: str, seconds: float) -> int:
    job_id = mark(path)
    time.sleep(seconds)
    return job_id


def mark_then_wait(path: str, gate: str) -> int:
    """`mark`, then run until the file `gate` exists."""
    job_id = mark(path)
    wait_for_file(gate)
    return job_id


def mark_run(folder: str, seconds: float) -> int:
    """`mark` in `folder`/starts as the job's code begins and in `folder`/ends as it ends."""
    mark(os.path.join(folder, "starts"))
    time.sleep(seconds)
    return mark(os.path.join(folder, "ends"))


def mark_alive(folder: str, seconds: float) -> int:
    """Leave a trace while the job's code runs: `folder`/starts and `folder`/ends get
    "id attempt time" as it begins and ends, `folder`/alive the same every 20 ms in between."""

    def note(name: str) -> None:
        job = jupyter_jobs.current_job()
        fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{job.id} {job.attempt} {time.time()!r}\n".encode())
        finally:
            os.close(fd)

    note("starts")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        note("alive")
        time.sleep(0.02)
    note("ends")
    return jupyter_jobs.current_job().id


def progress_steps(n: int, delay: float = 0.0) -> int:
    for i in range(1, n + 1):
        jupyter_jobs.progress(i, n, f"step {i}")
        if delay:
            time.sleep(delay)
    return n


def print_lines(n: int) -> int:
    for i in range(n):
        print(f"line {i}", flush=True)
    return n


def chatty_then_sleep(seconds: float) -> None:
    print("started", flush=True)
    time.sleep(seconds)


def crash(code: int | None = None) -> None:
    """Die like a segfault (SIGKILL to self) or with an exit code, without cleanup."""
    if code is None:
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(code)


def ignore_sigterm_and_sleep(pidfile: str, seconds: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


def spawn_children_and_sleep(pidfile: str, seconds: float) -> None:
    """Start a child and a grandchild that both ignore SIGTERM, write their pids, then sleep."""
    script = (
        "import os,signal,subprocess,sys,time;signal.signal(signal.SIGTERM,signal.SIG_IGN);"
        "p=subprocess.Popen([sys.executable,'-c','import signal,time;"
        "signal.signal(signal.SIGTERM,signal.SIG_IGN);time.sleep(1000)']);"
        "print(p.pid,flush=True);time.sleep(1000)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    grandchild = child.stdout.readline().strip()
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()} {child.pid} {grandchild}")
    time.sleep(seconds)


def fail_until(path: str, succeed_on_attempt: int) -> int:
    attempt = jupyter_jobs.current_job().attempt
    mark(path)
    if attempt < succeed_on_attempt:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt


def cwd_and_python() -> tuple[str, str]:
    return os.getcwd(), sys.executable


def threads_print(n: int) -> None:
    """Says how many threads it starts, then each thread says hi (a stream each)."""
    import threading

    print(f"started {n}")
    threads = [
        threading.Thread(target=print, args=(f"printer-{k} says hi",), name=f"printer-{k}")
        for k in range(n)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def streams_demo() -> int:
    """The job's own line, a thread's and a child process's (three streams); the child's pid."""
    import subprocess
    import threading

    print("main says hello", flush=True)
    thread = threading.Thread(target=print, args=("worker says hi",), name="worker")
    thread.start()
    thread.join()
    child = subprocess.Popen([sys.executable, "-c", "print('child says hey')"])
    child.wait()
    return child.pid


#: How many times a `CountsLoads` was unpickled in this process (a worker's count).
LOADS = 0


class CountsLoads:
    """Closed over by a function, it counts how often a worker unpickles that function."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return _loaded_once_more, ()


def _loaded_once_more() -> CountsLoads:
    global LOADS
    LOADS += 1
    return CountsLoads()


def counting_loads(tag: str) -> object:
    """A function whose unpickling counts (`LOADS`); it returns (its worker's pid, LOADS).
    Functions of different tags are different functions (other bytes)."""
    counter = CountsLoads()

    def loads_here(_item: object) -> tuple[int, int]:
        assert counter is not None and tag  # closed over: unpickled with the function
        # Read from the module: a copy of its globals travels with a function sent by value.
        return os.getpid(), importlib.import_module("jobfuncs").LOADS

    return loads_here


def big_array(n: int):
    """A NumPy array of `n` bytes: a result big enough to travel out of band (buffers.py)."""
    import numpy as np

    return np.arange(n, dtype=np.uint8)


def memory_of(arr) -> tuple[str, bool, int]:
    """Where a received array's memory is (its base's type: `mmap` for a payload file a worker
    mapped copy-on-write, buffers.py), whether it is aligned, and its sum."""
    return type(arr.base).__name__, bool(arr.flags.aligned), int(arr.sum())
