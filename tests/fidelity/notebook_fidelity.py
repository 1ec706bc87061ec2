"""Fidelity of `%%job --wait`: does a cell run as a job show what it shows when run plainly?

The measuring instrument of issue 11, shared by `tests/fidelity/test_fidelity.py` (which fails
below `THRESHOLD`) and `benchmarks/fidelity.py` (which prints the table). For every notebook in
`tests/fidelity/notebooks/` it starts nothing but kernels (nbclient, launched with the server's
`JUPYTER_JOBS_URL`/`TOKEN` as in `tests/integration/test_notebooks.py`) against one real
`jupyter server` with the extension, and runs:

1. the notebook as it is, twice ("plain" and "again"), each time in a fresh working directory;
2. a copy in which every code cell but the first starts with `%%job --wait`, or with the
   `%%job` options its source gives: a chain's cells run in the background (`--out load_job`)
   and the next one `--after {load_job.id} --wait`, so it is submitted while they still run.

The first code cell of each notebook is its setup cell: `%load_ext jupyter_jobs` and the
imports. It runs as it is in every run (a user loads the extension before any `%%job`, and the
modules it imports live in the kernel, as in a notebook whose later cells become jobs), so the
cell numbers, hence `Out[n]`, are the same in every run. It is not counted.

Each later cell is compared by what a reader sees: the stdout text, the `text/plain` of its
`execute_result`s (a result shown any other way is a difference: `_` and `Out[n]` would miss
it), the number of image outputs, and the names of its errors. The job's own widget display is
not an output of the cell's code and is left out. A cell whose two plain runs differ (a
timestamp, an object address) measures nothing and is reported as unstable, outside the share.
Both runs allow errors, so a failing cell is compared like any other and the notebook goes on;
a cell that outlasts `CELL_TIMEOUT` is interrupted, and the notebook goes on too.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# the real-server helpers of the integration tests, for the test and the benchmark alike
for _path in (REPO / "tests", REPO / "tests" / "integration"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from servers import TEST_CONFIG, JupyterHome, RunningServer  # noqa: E402

NOTEBOOKS = HERE / "notebooks"
#: The issue's bar: the share of compared cells that must look the same as a job.
THRESHOLD = 0.98
#: A cell's `%%job` options in the jobs run, unless its metadata names others (chains).
JOB_OPTIONS = "--wait"
#: The job's widget display carries this mime type; the cell's code did not display it.
JOB_MIME = "application/vnd.jupyter-jobs.job+json"
CELL_TIMEOUT = 120
#: Notebooks executed at once (each run is one kernel; the jobs run in the server's workers).
PARALLEL = 2


@dataclass(frozen=True)
class Outcome:
    """What a reader sees of one executed cell, reduced to what the suite compares."""

    stdout: str
    results: tuple[str, ...]
    images: int
    errors: tuple[str, ...]
    #: text/plain of the other displays: not compared, only named when a result became one
    displays: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def of(cls, cell: nbformat.NotebookNode) -> Outcome:
        stdout, results, errors, displays, images = [], [], [], [], 0
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            data = out.get("data", {})
            if JOB_MIME in data:
                continue
            if kind == "stream" and out.get("name") == "stdout":
                stdout.append(out.get("text", ""))
            elif kind == "execute_result":
                results.append(data.get("text/plain", ""))
            elif kind == "display_data":
                displays.append(data.get("text/plain", ""))
            elif kind == "error":
                errors.append(out.get("ename", ""))
            images += any(mime.startswith("image/") for mime in data)
        # a terminal (the kernel's `!` commands) ends lines with \r\n; a reader sees no \r
        text = "".join(stdout).replace("\r\n", "\n")
        return cls(text, tuple(results), images, tuple(errors), tuple(displays))

    def difference(self, other: Outcome) -> str:
        """One line saying how `other` (the job's) differs from this (the plain run's)."""
        parts = []
        if self.errors != other.errors:
            parts.append(f"errors {list(self.errors)} != {list(other.errors)}")
        if self.results != other.results:
            shown = ""
            if self.results and set(self.results) <= set(other.displays):
                shown = " (shown as display_data)"
            elif other.displays and not other.results:
                shown = f" (displayed: {_short(other.displays)})"
            parts.append(f"result {_short(self.results)} != {_short(other.results)}{shown}")
        if self.images != other.images:
            parts.append(f"images {self.images} != {other.images}")
        if self.stdout != other.stdout:
            parts.append(f"stdout {_short(self.stdout)} != {_short(other.stdout)}")
        return "; ".join(parts)


def _short(value: object, limit: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class CellComparison:
    """One code cell (after the setup cell) of one notebook, in the three runs."""

    notebook: str
    index: int  # among the notebook's code cells, 1-based as a reader counts them
    category: str
    source: str
    plain: Outcome
    again: Outcome
    job: Outcome

    @property
    def stable(self) -> bool:
        return self.plain == self.again

    @property
    def same(self) -> bool:
        return self.plain == self.job

    @property
    def where(self) -> str:
        first = self.source.splitlines()[0] if self.source else ""
        return f"{self.notebook} cell {self.index} [{self.category}] {first[:50]!r}"


@dataclass
class Report:
    cells: list[CellComparison] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def compared(self) -> list[CellComparison]:
        return [c for c in self.cells if c.stable]

    @property
    def differing(self) -> list[CellComparison]:
        return [c for c in self.compared if not c.same]

    @property
    def unstable(self) -> list[CellComparison]:
        return [c for c in self.cells if not c.stable]

    @property
    def share(self) -> float:
        compared = self.compared
        return sum(c.same for c in compared) / len(compared) if compared else 0.0

    def table(self, key: str) -> str:
        """Cells, same and share per `key` ("category" or "notebook"), then the total."""
        groups: dict[str, list[CellComparison]] = defaultdict(list)
        for c in self.compared:
            groups[getattr(c, key)].append(c)
        width = max([len(key), 5, *map(len, groups)])
        lines = [f"{key:<{width}}  cells   same   share"]
        rows = [(name, cells) for name, cells in sorted(groups.items())]
        for name, cells in [*rows, ("total", self.compared)]:
            same = sum(c.same for c in cells)
            share = same / len(cells) if cells else 0.0
            lines.append(f"{name:<{width}}  {len(cells):5d}  {same:5d}  {share:6.1%}")
        return "\n".join(lines)

    def kinds(self) -> str:
        """How many differing cells differ in each compared part (a cell may count twice)."""
        parts = {"errors": 0, "results": 0, "images": 0, "stdout": 0}
        for c in self.differing:
            for part in parts:
                parts[part] += getattr(c.plain, part) != getattr(c.job, part)
        moved = sum("(shown as display_data)" in c.plain.difference(c.job) for c in self.differing)
        counts = ", ".join(f"{part} {n}" for part, n in parts.items())
        return f"differing cells by part: {counts} (results shown as display_data: {moved})"

    def differences(self) -> str:
        return "\n".join(f"{c.where}: {c.plain.difference(c.job)}" for c in self.differing)

    def summary(self) -> str:
        compared = self.compared
        return (
            f"fidelity {self.share:.1%}: {len(compared) - len(self.differing)} of "
            f"{len(compared)} cells the same as %%job --wait "
            f"({len(self.unstable)} unstable cells left out, {self.seconds:.0f} s)"
        )


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def as_jobs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `nb` whose code cells, but the setup cell, start with `%%job --wait` (or
    their own `%%job` options)."""
    jobs = copy.deepcopy(nb)
    for cell in code_cells(jobs)[1:]:
        options = cell.metadata.get("fidelity", {}).get("job", JOB_OPTIONS)
        cell.source = f"%%job {options}\n{cell.source}"
    return jobs


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def execute(
    nb: nbformat.NotebookNode, server: RunningServer, workdir: Path
) -> nbformat.NotebookNode:
    """Run a copy of `nb` in `workdir` (a fresh directory: relative paths start empty)."""
    nb = copy.deepcopy(nb)
    workdir.mkdir(parents=True)
    env = dict(server.env, JUPYTER_JOBS_URL=server.url, JUPYTER_JOBS_TOKEN=server.token)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        kernel_name="python3",
        allow_errors=True,
        # a cell stuck as a job is a difference (KeyboardInterrupt), not the end of the report
        interrupt_on_timeout=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=env)
    return nb


def compare_notebook(path: Path, server: RunningServer, workdir: Path) -> list[CellComparison]:
    """The three runs of one notebook, cell by cell."""
    nb = nbformat.read(path, as_version=4)
    # the same folder name in every run: a cell may print its working directory's name
    plain = execute(nb, server, workdir / "plain" / path.stem)
    again = execute(nb, server, workdir / "again" / path.stem)
    jobs = execute(as_jobs(nb), server, workdir / "jobs" / path.stem)
    cells = zip(code_cells(nb), code_cells(plain), code_cells(again), code_cells(jobs), strict=True)
    return [
        CellComparison(
            notebook=path.stem,
            index=index,
            category=source.metadata.get("fidelity", {}).get("category", "ordinary"),
            source=source.source,
            plain=Outcome.of(p),
            again=Outcome.of(a),
            job=Outcome.of(j),
        )
        for index, (source, p, a, j) in enumerate(cells, start=1)
        if index > 1  # the setup cell
    ]


def run_suite(server: RunningServer, workdir: Path, paths: Iterable[Path] = ()) -> Report:
    """Compare every notebook (or `paths`), `PARALLEL` at a time."""
    paths = list(paths) or notebook_paths()
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        done = pool.map(lambda p: compare_notebook(p, server, workdir), paths)
        cells = [c for found in done for c in found]
    return Report(cells, time.monotonic() - started)


@contextlib.contextmanager
def fidelity_server(base: Path) -> Iterator[RunningServer]:
    """One ready `jupyter server` with the extension (the integration tests' TEST_CONFIG)."""
    server = RunningServer(JupyterHome.create(base / "server"), config=TEST_CONFIG)
    try:
        yield server.wait_ready()
    finally:
        server.close()
    server.assert_consumer_never_failed()
