"""Notebook jobs: one-cell notebook from submit to succeeded, and ten at once under max_workers.

Run on demand (not a test): `python benchmarks/notebook_bench.py [--runs 10] [--max-workers 2]
[--scheduler-python /tmp/jsched/bin/python]`. Ours runs through `JobQueue` with a consumer in
this process (the path a server's consumer takes too). With `--scheduler-python`, the same
notebook goes through jupyter-scheduler in a `jupyter server` started from that interpreter's
environment (create job over REST, poll every 50 ms until COMPLETED), in the same run, on the
same machine. Install it apart from this environment, e.g. `python -m venv /tmp/jsched &&
/tmp/jsched/bin/pip install jupyter-scheduler jupyterlab`. Prints a Markdown table.
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
TEN = 10  # jobs submitted at once


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
        jobs = [q.submit_notebook(notebook) for _ in range(TEN)]
        for job in jobs:
            job.result(timeout=300)
        ten = time.perf_counter() - start
        records = [job.refresh() for job in jobs]
    return {
        **spread(latencies),
        "ten_wall": ten,
        "ten_max_running": max_overlap([(r.started_at, r.finished_at) for r in records]),
    }


def spread(latencies: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(latencies), "min": min(latencies), "max": max(latencies)}


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
    """jupyter-scheduler's create-job → COMPLETED over its REST API, then ten jobs at once.

    A job it creates is stored with the status STOPPED (its table's default) until the process
    it spawns to run the notebook marks it IN_PROGRESS: STOPPED means stopped only once the job
    has a start time."""
    root = folder / "js_root"
    root.mkdir()
    one_cell_notebook(root / "one.ipynb")
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "JUPYTER_DATA_DIR": str(folder / "js_data")}
    env.pop("PYTHONPATH", None)
    # Its own environment first: its kernel (python3) is that environment's ipykernel.
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
    server = subprocess.Popen(
        [python, "-m", "jupyter_server", "--allow-root", "--no-browser", "--ip=127.0.0.1",
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

    def create() -> str:
        body = {"input_uri": "one.ipynb", "runtime_environment_name": "python3",
                "output_formats": ["ipynb"], "name": "one"}  # fmt: skip
        return call("POST", "scheduler/jobs", body)["job_id"]

    def ended(job_id: str) -> dict | None:
        job = call("GET", f"scheduler/jobs/{job_id}")
        status = job["status"]
        if status == "COMPLETED":
            return job
        if status == "FAILED" or (status == "STOPPED" and job.get("start_time")):
            raise RuntimeError(f"jupyter-scheduler job ended {status}: {job}")
        return None

    def wait(job_id: str, deadline: float) -> dict:
        while (job := ended(job_id)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter-scheduler job {job_id} did not complete in time")
            time.sleep(0.05)
        return job

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
            wait(create(), time.monotonic() + 120)
            return time.perf_counter() - start

        run_one()  # warm
        latencies = [run_one() for _ in range(runs)]
        start = time.perf_counter()
        ids = [create() for _ in range(TEN)]
        jobs = [wait(job_id, time.monotonic() + 300) for job_id in ids]
        ten = time.perf_counter() - start
        spans = [(j["start_time"] / 1000, j["end_time"] / 1000) for j in jobs]
        return {**spread(latencies), "ten_wall": ten, "ten_max_running": max_overlap(spans)}
    finally:
        server.terminate()
        server.wait(30)


def version_of(python: str) -> str:
    """jupyter-scheduler's version in that environment."""
    code = "import importlib.metadata as m; print(m.version('jupyter_scheduler'))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def table(rows: list[tuple[str, dict[str, float], str]]) -> str:
    """A Markdown table: one row per system."""
    lines = [
        "| system | p50 s | min s | max s | ten at once: wall s | most running at once |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r, limit in rows:
        lines.append(
            f"| {name} | {r['p50']:.2f} | {r['min']:.2f} | {r['max']:.2f} | "
            f"{r['ten_wall']:.2f} | {r['ten_max_running']} ({limit}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-workers", type=int, default=2)
    parser.add_argument("--scheduler-python", help="a Python with jupyter_scheduler installed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jupyter_jobs-nbbench-") as tmp:
        rows = [
            (
                f"jupyter_jobs (max_workers={args.max_workers})",
                ours(Path(tmp), args.runs, args.max_workers),
                f"limit {args.max_workers}",
            )
        ]
        if args.scheduler_python:
            name = f"jupyter-scheduler {version_of(args.scheduler_python)}"
            peer = scheduler(args.scheduler_python, Path(tmp), args.runs)
            rows.append((name, peer, "no limit"))
    print(
        f"\none-cell notebook, submit -> succeeded (COMPLETED), {args.runs} runs after a warm-up; "
        f"then {TEN} submitted at once; goal p50 <= {GOAL} s\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
