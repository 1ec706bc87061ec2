"""Big variables: a `%%job --wait` cell `b = a * 2` on a NumPy array `a` of 100 MiB, beside the
same cell run inline in the same kernel, with the peak memory of the kernel, the server and the
worker while it runs.

Run on demand (not a test): `python benchmarks/bigvars_bench.py [--mib 100] [--cells 5]
[--main /work/main]`. With `--main`, the same run measures that checkout too (its code on the
server's and the kernel's PYTHONPATH) for a side-by-side table.

- Each checkout gets a fresh `jupyter server` (2 workers) and a kernel started from it (its
  JUPYTER_JOBS_URL and token). The kernel builds `a`, and runs one small `%%job --wait` cell first,
  so the timed cells find the worker the kernel keeps (`cell_linger`) and numpy imported there.
- Each round runs `b = a * 2` inline, then as `%%job --wait` (checking `b` came back equal to
  `a * 2`), and deletes `b` after each.
- wall: from sending the cell until its reply (for the job: until `b` is in the namespace).
- peaks: RSS sampled every 2 ms (psutil) in the kernel, the server and each worker process
  (`jupyter_jobs.runner` below the server), minus what the process held just before the cell
  (for a worker that did not exist then, its first sample): what the cell cost each process,
  in MiB and as a multiple of the data (`a`'s size). Inline, the kernel's cost is `b` itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[0:0] = [str(REPO / "tests" / "integration"), str(REPO / "tests")]

from servers import JupyterHome, RunningServer  # noqa: E402  (the tests' real-server helpers)

WORKERS = 2
MiB = 2**20
SAMPLE = 0.002


class Sampler:
    """Peak RSS of the kernel, the server and the server's runner processes, in a thread."""

    def __init__(self, kernel: int, server: int) -> None:
        self.kernel = psutil.Process(kernel)
        self.server = psutil.Process(server)
        self.before: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._workers: dict[int, tuple[psutil.Process, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _runners(self) -> list[psutil.Process]:
        found = []
        for child in self.server.children(recursive=True):
            try:
                if "jupyter_jobs.runner" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:
                continue
        return found

    @staticmethod
    def _rss(process: psutil.Process) -> int | None:
        try:
            return process.memory_info().rss
        except psutil.Error:
            return None

    def start(self) -> None:
        self.before = {"kernel": self._rss(self.kernel) or 0, "server": self._rss(self.server) or 0}
        self.peak = dict(self.before)
        self._workers = {}
        for runner in self._runners():
            rss = self._rss(runner)
            if rss is not None:
                self._workers[runner.pid] = (runner, rss)
        self._worker_cost = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            for name, process in (("kernel", self.kernel), ("server", self.server)):
                rss = self._rss(process)
                if rss is not None:
                    self.peak[name] = max(self.peak[name], rss)
            if rounds % 25 == 0:  # new workers are rare: look for them every 50 ms
                for runner in self._runners():
                    if runner.pid not in self._workers:
                        rss = self._rss(runner)
                        if rss is not None:
                            self._workers[runner.pid] = (runner, rss)
            for runner, before in list(self._workers.values()):
                rss = self._rss(runner)
                if rss is not None:
                    self._worker_cost = max(self._worker_cost, rss - before)
            rounds += 1
            time.sleep(SAMPLE)

    def stop(self) -> dict[str, int]:
        """What the cell cost each process: peak minus before, in bytes."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)
        costs = {name: self.peak[name] - self.before[name] for name in ("kernel", "server")}
        costs["worker"] = self._worker_cost
        return costs


@dataclass
class Row:
    code: str
    path: str
    walls: list[float] = field(default_factory=list)
    costs: list[dict[str, int]] = field(default_factory=list)


@contextmanager
def kernel_for(server: RunningServer, pythonpath: str) -> Iterator[Any]:
    from jupyter_client.manager import start_new_kernel

    env = dict(
        server.env,
        JUPYTER_JOBS_URL=server.url,
        JUPYTER_JOBS_TOKEN=server.token,
        PYTHONPATH=pythonpath,
    )
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(server.home.root_dir))
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc: Any, code: str) -> tuple[float, str]:
    """Seconds until the cell's reply, and what it printed; raises if it failed."""
    outputs: list[dict] = []
    start = time.perf_counter()
    reply = kc.execute_interactive(code, timeout=600, output_hook=outputs.append)
    elapsed = time.perf_counter() - start
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {reply['content'].get('evalue')}: {code!r}")
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    return elapsed, text


def measure(label: str, root: Path, mib: int, cells: int, tmp: Path) -> list[Row]:
    pythonpath = f"{root}:{root / 'tests'}"
    server = RunningServer(
        JupyterHome.create(tmp / label),
        config={"JobsApp": {"max_workers": WORKERS}},
        env={"PYTHONPATH": pythonpath},
    )
    inline, job = Row(label, "inline"), Row(label, "%%job --wait")
    try:
        server.wait_ready()
        with kernel_for(server, pythonpath) as kc:
            _, pid = run(kc, "import gc, os, numpy as np\nprint(os.getpid())")
            run(kc, f"a = np.random.default_rng(0).random({mib * MiB // 8})")
            run(kc, "%load_ext jupyter_jobs.kernel")
            run(kc, "%%job --wait\nimport numpy as np\nwarm = np.zeros(3)")
            sampler = Sampler(int(pid), server.process.pid)
            for _ in range(cells):
                for row, cell in ((inline, "b = a * 2"), (job, "%%job --wait\nb = a * 2")):
                    run(kc, "gc.collect()")
                    sampler.start()
                    wall, _ = run(kc, cell)
                    row.costs.append(sampler.stop())
                    row.walls.append(wall)
                    _, same = run(kc, "print(bool((b == a * 2).all()))\ndel b")
                    if same.strip() != "True":
                        raise RuntimeError(f"{label} {row.path}: b is not a * 2: {same!r}")
                    print(f"{label:5} {row.path:13} {wall:6.2f} s", flush=True)
    finally:
        server.close()
    return [inline, job]


def table(rows: list[Row], data: int) -> str:
    lines = [
        f"{'code':5} {'cell':13} {'wall s (median, min-max)':>25} "
        f"{'kernel MiB (x)':>15} {'server MiB (x)':>15} {'worker MiB (x)':>15}"
    ]
    for row in rows:
        wall = statistics.median(row.walls)
        cells = [f"{wall:.2f} ({min(row.walls):.2f}-{max(row.walls):.2f})"]
        for part in ("kernel", "server", "worker"):
            cost = max(c[part] for c in row.costs)
            if row.path == "inline" and part != "kernel":
                cells.append("-")
            else:
                cells.append(f"{cost / MiB:.0f} ({cost / data:.1f}x)")
        lines.append(
            f"{row.code:5} {row.path:13} {cells[0]:>25} {cells[1]:>15} {cells[2]:>15} "
            f"{cells[3]:>15}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100, help="size of the array `a`, in MiB")
    parser.add_argument("--cells", type=int, default=5, help="rounds (inline, then as a job)")
    parser.add_argument("--main", type=Path, help="another checkout to measure beside this one")
    args = parser.parse_args()
    codes = [("this", REPO)]
    if args.main:
        codes.append(("main", args.main.resolve()))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bigvars-") as tmp:
        for label, root in codes:
            rows += measure(label, root, args.mib, args.cells, Path(tmp))
    data = args.mib * MiB
    print(
        f"\n`b = a * 2`, a: {args.mib} MiB float64; {psutil.cpu_count()} cores; "
        f"{args.cells} rounds; peaks: the most one round added to each process"
    )
    print(table(rows, data))
    print(json.dumps([row.__dict__ for row in rows]), file=sys.stderr)


if __name__ == "__main__":
    main()
