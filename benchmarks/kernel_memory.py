"""Kernel memory benchmark: does a cell job's result, or what it was sent, stay after `del`?

Run on demand (not a test): `python benchmarks/kernel_memory.py [--cells 20] [--mib 40]
[--case result|failed ...] [--main /work/main]`. A real `jupyter server` and a real kernel
per column and case, the kernel running `--cells` cells with NumPy arrays of `--mib` MiB; its
RSS is read inside it (psutil, after `gc.collect()`) after every `del`, above its baseline
(taken after one warm-up cell). The cases:

- result: each cell makes an array in `b`, then `del b`;
- failed: `a` is made in the kernel, each cell reads it and fails (`raise`), then `del a`.

Side by side in the same run:

- inline: the cells run in the kernel itself;
- `%%job --wait` with the kernel code of the `--main` checkout, if given;
- `%%job --wait` with this checkout's kernel code.

Arrays above 32 MiB are mmapped by glibc's malloc whatever it freed before, so the RSS counts
what is still referenced, not what the allocator keeps for later.
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
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "tests" / "integration"), str(REPO / "tests")]

from servers import TEST_CONFIG, JupyterHome, RunningServer  # noqa: E402  (the tests' helpers)

MIB = 2**20
SETUP = """\
%load_ext jupyter_jobs.kernel
import gc, psutil, numpy as np

def _rss():
    gc.collect()
    return psutil.Process().memory_info().rss
"""


@dataclass(frozen=True)
class Case:
    """Per cell `i`: `before` runs inline, then `cell` (as a job or not: the measured cell,
    which fails if `fails`), then `after` (the user's `del`). `{n}` is the array's length."""

    before: str
    cell: str
    after: str
    fails: bool


CASES = {
    "result": Case("", "b = np.full({n}, {i}.0)", "assert b[0] == {i}\ndel b", fails=False),
    "failed": Case(
        "a = np.full({n}, {i}.0)",
        "size = len(a)\nraise ValueError('cell {i} fails')",
        "assert size == {n}\ndel a",
        fails=True,
    ),
}


class Kernel:
    """A kernel importing jupyter_jobs from `code`, connected to `server`."""

    def __init__(self, server: RunningServer, code: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        env = dict(server.env, JUPYTER_JOBS_URL=server.url, JUPYTER_JOBS_TOKEN=server.token)
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
        self.km, self.kc = start_new_kernel(
            kernel_name="python3", env=env, cwd=str(server.home.root_dir)
        )

    def run(self, code: str, fails: bool = False) -> str:
        """Run a cell; what it printed. Raises unless it failed or not as `fails` says."""
        out: list[dict] = []
        reply = self.kc.execute_interactive(code, timeout=600, output_hook=out.append)
        if (reply["content"]["status"] != "ok") != fails:
            why = reply["content"].get("evalue", "it did not fail")
            raise RuntimeError(f"cell {code[:60]!r}: {why}")
        return "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")

    def rss(self) -> int:
        return int(self.run("print(_rss())"))

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@contextlib.contextmanager
def kernel(server: RunningServer, code: Path) -> Iterator[Kernel]:
    k = Kernel(server, code)
    try:
        k.run(SETUP)
        yield k
    finally:
        k.close()


def series(
    k: Kernel, prefix: str, case: Case, cells: int, mib: int
) -> tuple[int, list[int], list[float]]:
    """Baseline RSS, then RSS above it after each cell's `del`, and each cell's seconds."""

    def run(i: int) -> float:
        fill = {"n": mib * MIB // 8, "i": i}
        if case.before:
            k.run(case.before.format(**fill))
        start = time.perf_counter()
        k.run(prefix + case.cell.format(**fill), fails=case.fails)
        seconds = time.perf_counter() - start
        k.run(case.after.format(**fill))
        return seconds

    run(0)
    base = k.rss()
    above, seconds = [], []
    for i in range(1, cells + 1):
        seconds.append(run(i))
        above.append(k.rss() - base)
    return base, above, seconds


def table(title: str, rows: list[tuple[str, tuple[int, list[int], list[float]]]]) -> None:
    print(f"\n{title}")
    print("kernel RSS above its baseline after each `del`, MB\n")
    width = max(len(name) for name, _ in rows)
    cells = len(rows[0][1][1])
    print(f"{'cell':>10}  " + "  ".join(f"{name:>{width}}" for name, _ in rows))
    for i in range(cells):
        values = "  ".join(f"{above[i] / MIB:>{width}.1f}" for _, (_, above, _) in rows)
        print(f"{i + 1:>10}  {values}")
    print(f"{'max':>10}  " + "  ".join(f"{max(a) / MIB:>{width}.1f}" for _, (_, a, _) in rows))
    print(f"{'baseline':>10}  " + "  ".join(f"{b / MIB:>{width}.1f}" for _, (b, _, _) in rows))
    p50 = "  ".join(f"{statistics.median(s):>{width}.2f}" for _, (_, _, s) in rows)
    print(f"{'s/cell p50':>10}  {p50}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--mib", type=int, default=40, help="size of each cell's array")
    parser.add_argument("--case", choices=list(CASES), action="append", help="default: all")
    parser.add_argument("--main", type=Path, help="another checkout to measure beside this one")
    args = parser.parse_args()
    titles = {
        "result": f"{args.cells} cells `b = <{args.mib} MiB array>`, then `del b; gc.collect()`:",
        "failed": f"{args.cells} failing cells reading `a = <{args.mib} MiB array>`, then "
        "`del a; gc.collect()`:",
    }
    systems = [("inline", REPO, "")]
    if args.main:
        systems.append(("%%job --wait (main)", args.main.resolve(), "%%job --wait\n"))
    systems.append(("%%job --wait (this)", REPO, "%%job --wait\n"))
    tables = []
    with tempfile.TemporaryDirectory() as tmp_name:
        for name in args.case or list(CASES):
            rows = []
            for column, (system, code, prefix) in enumerate(systems):
                folder = Path(tmp_name) / f"{name}-{column}"
                with server(folder) as running, kernel(running, code) as k:
                    rows.append((system, series(k, prefix, CASES[name], args.cells, args.mib)))
            tables.append((titles[name], rows))
    for title, rows in tables:
        table(title, rows)


@contextlib.contextmanager
def server(folder: Path) -> Iterator[RunningServer]:
    """A server of its own per column: what one column's jobs left (files, a worker waiting
    for its kernel's next cell) does not slow the next column down."""
    running = RunningServer(JupyterHome.create(folder), config=TEST_CONFIG)
    try:
        running.wait_ready()
        yield running
    finally:
        running.close()


if __name__ == "__main__":
    main()
