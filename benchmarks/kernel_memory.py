"""Kernel memory benchmark: does a cell job's result stay in the kernel after `del`?

Run on demand (not a test): `python benchmarks/kernel_memory.py [--cells 20] [--mib 40]
[--main /work/main]`. One real `jupyter server`, and a real kernel per column, each running
`--cells` cells that make a NumPy array of `--mib` MiB in `b`, each followed by `del b`; the
kernel's RSS is read inside the kernel (psutil, after `gc.collect()`) after every `del`, above
its baseline (taken after one warm-up cell). Side by side in the same run:

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


class Kernel:
    """A kernel importing jupyter_jobs from `code`, connected to `server`."""

    def __init__(self, server: RunningServer, code: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        env = dict(server.env, JUPYTER_JOBS_URL=server.url, JUPYTER_JOBS_TOKEN=server.token)
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
        self.km, self.kc = start_new_kernel(
            kernel_name="python3", env=env, cwd=str(server.home.root_dir)
        )

    def run(self, code: str) -> str:
        """Run a cell; what it printed. Raises if it failed."""
        out: list[dict] = []
        reply = self.kc.execute_interactive(code, timeout=600, output_hook=out.append)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {code[:60]!r}: {reply['content'].get('evalue')}")
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


def series(k: Kernel, prefix: str, cells: int, mib: int) -> tuple[int, list[int], list[float]]:
    """Baseline RSS, then RSS above it after each cell's `del b`, and each cell's seconds."""
    make = f"b = np.full({mib * MIB // 8}, {{}}.0)"
    k.run(prefix + make.format(0))
    k.run("del b")
    base = k.rss()
    above, seconds = [], []
    for i in range(1, cells + 1):
        start = time.perf_counter()
        k.run(prefix + make.format(i))
        seconds.append(time.perf_counter() - start)
        k.run(f"assert b[0] == {i}\ndel b")
        above.append(k.rss() - base)
    return base, above, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--mib", type=int, default=40, help="size of each cell's array")
    parser.add_argument("--main", type=Path, help="another checkout to measure beside this one")
    args = parser.parse_args()
    rows: list[tuple[str, tuple[int, list[int], list[float]]]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = RunningServer(JupyterHome.create(tmp / "server"), config=TEST_CONFIG)
        try:
            server.wait_ready()
            systems = [("inline", REPO, "")]
            if args.main:
                systems.append(("%%job --wait (main)", args.main.resolve(), "%%job --wait\n"))
            systems.append(("%%job --wait (this)", REPO, "%%job --wait\n"))
            for name, code, prefix in systems:
                with kernel(server, code) as k:
                    rows.append((name, series(k, prefix, args.cells, args.mib)))
        finally:
            server.close()

    print(f"\n{args.cells} cells `b = <{args.mib} MiB array>` then `del b; gc.collect()`:")
    print("kernel RSS above its baseline after each `del b`, MB\n")
    width = max(len(name) for name, _ in rows)
    print(f"{'cell':>10}  " + "  ".join(f"{name:>{width}}" for name, _ in rows))
    for i in range(args.cells):
        values = "  ".join(f"{above[i] / MIB:>{width}.1f}" for _, (_, above, _) in rows)
        print(f"{i + 1:>10}  {values}")
    print(f"{'max':>10}  " + "  ".join(f"{max(a) / MIB:>{width}.1f}" for _, (_, a, _) in rows))
    print(f"{'baseline':>10}  " + "  ".join(f"{b / MIB:>{width}.1f}" for _, (b, _, _) in rows))
    p50 = "  ".join(f"{statistics.median(s):>{width}.2f}" for _, (_, _, s) in rows)
    print(f"{'s/cell p50':>10}  {p50}")


if __name__ == "__main__":
    main()
