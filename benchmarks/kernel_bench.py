"""Kernel benchmark: the engine's workloads through the kernel API and a real Jupyter server,
and the latency of a trivial `%%job --wait` cell in a real kernel.

Run on demand (not a test): `python benchmarks/kernel_bench.py [--jobs 2000] [--cells 30]`;
`--cells 0` skips the cell latencies, `--no-engine` the engine row (quicker while tuning the
HTTP path; the server's pid is printed, for `py-spy record -p PID`).

- W1/W1b/W2/W3 (see engine_bench.py) through `jupyter_jobs.kernel.api` (HTTP to a `jupyter
  server` subprocess with 2 workers), beside the engine itself in the same Jupyter shape (the
  consumer in another process, the client on the store file).
- Cell: from sending `%%job --wait\\na = <n>` to a kernel until the cell is done, i.e. until `a`
  is in the kernel's namespace (checked). "paced" leaves a second between cells, as a person
  does; "back-to-back" sends the next cell at once. Either way the next cell runs in the worker
  the kernel's last cell ran in (kept for it: `c.LocalExecutor.cell_linger`), in a fresh namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path[1:1] = [str(REPO / "tests" / "integration"), str(REPO / "tests")]

import engine_bench  # noqa: E402  (also puts benchmarks/ on the workers' PYTHONPATH)

from servers import JupyterHome, RunningServer  # noqa: E402  (the tests' real-server helpers)

WORKERS = engine_bench.WORKERS


@contextlib.contextmanager
def jupyter_server(tmp: Path) -> Iterator[RunningServer]:
    server = RunningServer(
        JupyterHome.create(tmp / "server"), config={"JobsApp": {"max_workers": WORKERS}}
    )
    try:
        yield server.wait_ready()
    finally:
        server.close()


@contextlib.contextmanager
def kernel_api_system(server: RunningServer) -> Iterator[engine_bench.System]:
    from jupyter_jobs.kernel import api

    os.environ.update(JUPYTER_JOBS_URL=server.url, JUPYTER_JOBS_TOKEN=server.token)
    api.reset_connection()
    try:
        yield engine_bench.System(
            "kernel API -> jupyter server (HTTP)",
            submit=lambda fn: api.submit(fn),
            map=lambda fn, items: api.map(fn, items),
            result=lambda job: job.result(timeout=600),
        )
    finally:
        api.reset_connection()


def cell_latency(server: RunningServer, runs: int, pause: float) -> list[float]:
    """Milliseconds from sending a trivial `%%job --wait` cell to the cell being done."""
    from jupyter_client.manager import start_new_kernel

    env = dict(server.env, JUPYTER_JOBS_URL=server.url, JUPYTER_JOBS_TOKEN=server.token)
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(server.home.root_dir))

    def run(code: str) -> tuple[float, list[dict]]:
        outputs: list[dict] = []
        start = time.perf_counter()
        reply = kc.execute_interactive(code, timeout=120, output_hook=outputs.append)
        elapsed = (time.perf_counter() - start) * 1000
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {reply['content']}")
        return elapsed, outputs

    try:
        run("%load_ext jupyter_jobs.kernel")
        for n in range(3):  # warm up: imports, the poller, the workers' interpreter
            time.sleep(pause)
            run(f"%%job --wait\na = {n}")
        times = []
        for n in range(runs):
            time.sleep(pause)
            elapsed, _ = run(f"%%job --wait\na = {n}")
            times.append(elapsed)
        _, outputs = run("print(a)")
        printed = "".join(m["content"].get("text", "") for m in outputs)
        if printed.strip() != str(runs - 1):
            raise RuntimeError(f"the last cell's variable did not come back: {printed!r}")
        return times
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs in W1 and W1b")
    parser.add_argument(
        "--cells", type=int, default=30, help="timed %%job cells per mode (0: none)"
    )
    parser.add_argument("--no-engine", action="store_true", help="only the kernel API row")
    args = parser.parse_args()
    engine_row: engine_bench.Row | None = None
    cells: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.no_engine:
            with engine_bench.jupyter_jobs_consumer_process(tmp) as engine:
                engine_row = engine_bench.measure(engine, args.jobs)
        with jupyter_server(tmp) as server:
            print(f"jupyter server pid {server.process.pid}", flush=True)
            with kernel_api_system(server) as kernel:
                kernel_row = engine_bench.measure(kernel, args.jobs)
            if args.cells > 0:
                cells = [
                    ("paced (1 s between cells)", cell_latency(server, args.cells, pause=1.0)),
                    ("back-to-back", cell_latency(server, args.cells, pause=0.0)),
                ]

    print(f"\n{os.cpu_count()} cores, {WORKERS} workers, N={args.jobs}\n")
    header = f"{'system':<38} {'W1 jobs/s':>10} {'W1b jobs/s':>11} {'W2 p50 ms':>10} "
    header += f"{'W2 p99 ms':>10} {'W3 MB/s':>9}"
    print(header)
    print("-" * len(header))
    for r in (engine_row, kernel_row):
        if r is not None:
            print(
                f"{r.name:<38} {r.w1:>10.0f} {r.w1b:>11.0f} {r.w2_p50:>10.2f} "
                f"{r.w2_p99:>10.2f} {r.w3:>9.0f}"
            )
    if engine_row is not None:
        print(
            f"{'kernel / engine':<38} {kernel_row.w1 / engine_row.w1:>9.2f}x "
            f"{kernel_row.w1b / engine_row.w1b:>10.2f}x "
            f"{kernel_row.w2_p50 / engine_row.w2_p50:>9.2f}x "
            f"{kernel_row.w2_p99 / engine_row.w2_p99:>9.2f}x {kernel_row.w3 / engine_row.w3:>8.2f}x"
        )
    if not cells:
        return
    print(f"\n%%job --wait cell -> variables back ({args.cells} cells each), ms")
    print(f"{'mode':<38} {'p50':>8} {'p90':>8} {'min':>8} {'max':>8}")
    for name, times in cells:
        print(
            f"{name:<38} {statistics.median(times):>8.1f} {p(times, 0.9):>8.1f} "
            f"{min(times):>8.1f} {max(times):>8.1f}"
        )


if __name__ == "__main__":
    main()
