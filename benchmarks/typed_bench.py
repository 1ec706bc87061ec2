"""Typed jobs: an app starting jobs by name over REST, beside the pickle path and Huey's tasks.

Run on demand (not a test): `python benchmarks/typed_bench.py [--runs 200] [--jobs 300]`.
One real `jupyter server` (2 workers) serves both jupyter_jobs rows, in the same run:

- a typed job of an installed type (`POST /jobs/api/jobs {"type", "parameters"}`: the server
  checks the parameters with jsonschema and builds the payload; the result comes back as JSON),
- a function job over the same REST API (the client pickles the call with dill; the result is
  a pickle): what an app does without job types;

and, as the peer, Huey's named task on SQLite (`-k process -w 2`, tuned polling), the ML app's
queue, enqueued and awaited in-process. Rows: sequential submit->result round trips (p50, p99),
and N submits then every result (jobs/s). Also the server's parameter check alone (µs).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests" / "integration"))  # the suite's real servers
sys.path.insert(2, str(HERE.parent / "tests"))  # and what they import

from jupyter_jobs import job_types  # noqa: E402
from jupyter_jobs.payload import function_payload  # noqa: E402

import peers  # noqa: E402
from servers import TESTS_DIR, JupyterHome, RunningServer  # noqa: E402

PACKAGE = """\
import jupyter_jobs


@jupyter_jobs.job_type(schema={
    "type": "object",
    "properties": {"x": {"type": "integer", "minimum": 0}, "label": {"type": "string"}},
    "required": ["x"],
    "additionalProperties": False,
})
def echo(x, label="run"):
    return {"x": x, "label": label}
"""


def install(folder: Path) -> Path:
    """A package with the `echo` type, as pip would install it (entry point included)."""
    site = folder / "site"
    (site / "benchtypes").mkdir(parents=True)
    (site / "benchtypes" / "__init__.py").write_text(PACKAGE)
    info = site / "benchtypes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: benchtypes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jupyter_jobs.types]\necho = benchtypes:echo\n")
    return site


def echo(x: int, label: str = "run") -> dict:
    return {"x": x, "label": label}


Submit = Callable[[int], object]
Result = Callable[[object], object]


def measure(submit: Submit, result: Result, runs: int, jobs: int) -> tuple[float, float, float]:
    for i in range(10):  # warm: workers up, imports done
        result(submit(i))
    latencies = []
    for i in range(runs):
        start = time.perf_counter()
        result(submit(i))
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    start = time.perf_counter()
    handles = [submit(i) for i in range(jobs)]
    for handle in handles:
        result(handle)
    rate = jobs / (time.perf_counter() - start)
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], rate


def rest_rows(server: RunningServer, runs: int, jobs: int) -> list[tuple[str, tuple]]:
    session = requests.Session()
    session.headers["Authorization"] = f"token {server.token}"
    api = server.url + "jobs/api/"

    def post(body: dict) -> int:
        response = session.post(api + "jobs", json=body, timeout=60)
        response.raise_for_status()
        return response.json()["id"]

    def typed(i: int) -> int:
        return post({"type": "echo", "parameters": {"x": i, "label": "bench"}})

    def function(i: int) -> int:
        payload = function_payload(echo, (i, "bench"))
        return post({"spec": {"name": "echo"}, "payload": base64.b64encode(payload).decode()})

    def result(job_id: object) -> bytes:
        response = session.get(f"{api}jobs/{job_id}/result", params={"wait": 60}, timeout=90)
        assert response.status_code == 200, response.text
        return response.content

    return [
        ("typed job over REST (installed type, JSON result)", measure(typed, result, runs, jobs)),
        ("function job over REST (dill payload and result)", measure(function, result, runs, jobs)),
    ]


def huey_row(folder: Path, runs: int, jobs: int) -> tuple[str, tuple] | None:
    if peers.SqliteHuey is None:
        return None
    import importlib

    os.environ["BENCH_HUEY_DB"] = str(folder / "huey.db")
    importlib.reload(peers)
    (folder / "typed_bench_huey.py").write_text(HUEY_MODULE)
    sys.path.insert(0, str(folder))
    task = importlib.import_module("typed_bench_huey").echo  # the consumer's name for it
    binary = shutil.which("huey_consumer") or shutil.which("huey_consumer.py")
    command = [binary] if binary else [sys.executable, "-m", "huey.bin.huey_consumer"]
    consumer = subprocess.Popen(
        [*command, "typed_bench_huey.huey", "-k", "process", "-w", "2", "-q", "-d", "0.001"],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(HERE)])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        numbers = measure(
            lambda i: task(i, "bench"),
            lambda r: r.get(blocking=True, timeout=60, max_delay=0.005),
            runs,
            jobs,
        )
    finally:
        consumer.terminate()
        consumer.wait(30)
    return "Huey named task, SQLite (-k process -w 2, tuned polling)", numbers


HUEY_MODULE = """\
import peers

huey = peers.huey


@huey.task()
def echo(x, label="run"):
    return {"x": x, "label": label}
"""


def check_cost() -> float:
    """µs for the server's parameter check of one submit (jsonschema, the type's schema)."""
    described = job_types.describe_function(echo)
    parameters = {"x": 3, "label": "bench"}
    for _ in range(100):
        job_types.check_parameters(described, parameters)
    count = 5000
    start = time.perf_counter()
    for _ in range(count):
        job_types.check_parameters(described, parameters)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="sequential round trips")
    parser.add_argument("--jobs", type=int, default=300, help="jobs submitted, then awaited")
    args = parser.parse_args()
    rows: list[tuple[str, tuple]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        site = install(folder)
        home = JupyterHome.create(folder / "home")
        path = [str(site), str(HERE), str(HERE.parent), str(TESTS_DIR)]
        env = {"PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])}
        server = RunningServer(home, config={"JobsApp": {"max_workers": 2}}, env=env)
        try:
            server.wait_ready()
            rows += rest_rows(server, args.runs, args.jobs)
        finally:
            server.close()
        huey = huey_row(folder, args.runs, args.jobs)
        if huey is not None:
            rows.append(huey)
    print(f"\n{args.runs} round trips, {args.jobs} jobs submitted then awaited; 2 workers each\n")
    print("| path | round trip p50 ms | p99 ms | jobs/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, (p50, p99, rate) in rows:
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {rate:.0f} |")
    print(f"\nparameter check (jsonschema) per typed submit: {check_cost():.0f} µs")


if __name__ == "__main__":
    main()
