"""Notebook jobs: one-cell notebook from submit to succeeded, and ten at once under max_workers.

Run on demand (not a test): `python benchmarks/notebook_bench.py [--runs 10] [--max-workers 2]
[--scheduler-python /tmp/jsvenv/bin/python]`. Ours runs through `JobQueue` with a consumer in
this process (the path a server's consumer takes too). With `--scheduler-python`, the same
notebook goes through jupyter-scheduler in a `jupyter server` started from that interpreter's
environment (create job over REST, poll until COMPLETED), in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat

from jupyter_jobs import JobQueue

GOAL = 1.5  # seconds, p50 (issue 13)


def one_cell_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1 + 1\nprint(x)")])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def ours(folder: Path, runs: int, max_workers: int) -> dict[str, float]:
    notebook = one_cell_notebook(folder / "one.ipynb")
    with JobQueue(folder / "jobs.db") as q:
        q.start_consumer(max_workers=max_workers)
        q.submit_notebook(notebook).result(timeout=120)  # warm: workers started, imports cached
        latencies = []
        for _ in range(runs):
            start = time.perf_counter()
            q.submit_notebook(notebook).result(timeout=120)
            latencies.append(time.perf_counter() - start)
        start = time.perf_counter()
        jobs = [q.submit_notebook(notebook) for _ in range(10)]
        for job in jobs:
            job.result(timeout=300)
        ten = time.perf_counter() - start
        records = [job.refresh() for job in jobs]
    return {
        "p50": statistics.median(latencies),
        "min": min(latencies),
        "max": max(latencies),
        "ten_wall": ten,
        "ten_max_running": max_overlap([(r.started_at, r.finished_at) for r in records]),
    }


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (from the jobs' recorded start and end)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scheduler(python: str, folder: Path, runs: int) -> dict[str, float]:
    """jupyter-scheduler's create-job → COMPLETED, over its REST API."""
    root = folder / "js_root"
    root.mkdir()
    one_cell_notebook(root / "one.ipynb")
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "JUPYTER_DATA_DIR": str(folder / "js_data")}
    env.pop("PYTHONPATH", None)
    # Its own environment first: its kernel (python3) is that environment's ipykernel.
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
    server = subprocess.Popen(
        [python, "-m", "jupyter_server", "--allow-root", "--no-browser",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/"

    def call(method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base + path, data=data, method=method)
        request.add_header("Authorization", f"token {token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read() or b"{}")

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                call("GET", "scheduler/jobs")
                break
            except OSError:  # not listening yet (an HTTP error would say it is not there)
                if isinstance(exc := sys.exc_info()[1], urllib.error.HTTPError):
                    raise RuntimeError(f"jupyter-scheduler's API is not there: {exc}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        def run_one() -> float:
            start = time.perf_counter()
            created = call(
                "POST",
                "scheduler/jobs",
                {"input_uri": "one.ipynb", "runtime_environment_name": "python3",
                 "output_formats": ["ipynb"], "name": "one"},
            )  # fmt: skip
            while True:
                job = call("GET", f"scheduler/jobs/{created['job_id']}")
                if job["status"] in ("COMPLETED", "FAILED", "STOPPED"):
                    if job["status"] != "COMPLETED":
                        raise RuntimeError(f"jupyter-scheduler job ended {job['status']}: {job}")
                    return time.perf_counter() - start
                time.sleep(0.05)

        run_one()  # warm
        latencies = [run_one() for _ in range(runs)]
        return {"p50": statistics.median(latencies), "min": min(latencies), "max": max(latencies)}
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-workers", type=int, default=2)
    parser.add_argument("--scheduler-python", help="a Python with jupyter_scheduler installed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jupyter_jobs-nbbench-") as tmp:
        result = ours(Path(tmp), args.runs, args.max_workers)
        print(
            f"jupyter_jobs   one-cell notebook submit -> succeeded: p50 {result['p50']:.2f} s "
            f"(min {result['min']:.2f}, max {result['max']:.2f}; goal <= {GOAL} s)"
        )
        print(
            f"jupyter_jobs   ten at once, max_workers={args.max_workers}: "
            f"{result['ten_wall']:.2f} s wall, at most {result['ten_max_running']} running at once"
        )
        if args.scheduler_python:
            peer = scheduler(args.scheduler_python, Path(tmp), args.runs)
            print(
                f"jupyter-scheduler one-cell notebook create -> COMPLETED: p50 {peer['p50']:.2f} s "
                f"(min {peer['min']:.2f}, max {peer['max']:.2f})"
            )


if __name__ == "__main__":
    main()
