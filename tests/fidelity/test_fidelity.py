"""Issue 11's bar: at least 98% of the fidelity notebooks' cells show the same thing run as
`%%job --wait` as run plainly (see `notebook_fidelity.py` for what is compared and how).

On failure the message lists every differing cell with a one-line difference; the same report,
with tables per category and notebook, is `python benchmarks/fidelity.py`.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from build_notebooks import build, sources
from notebook_fidelity import NOTEBOOKS, THRESHOLD, code_cells, fidelity_server, run_suite

pytestmark = pytest.mark.fidelity
#: The issue asks for at least this many compared cells (setup cells not counted).
MIN_CELLS = 300


def test_the_checked_in_notebooks_are_built_from_their_sources():
    built = {source.stem: build(source) for source in sources()}
    assert sorted(built) == sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    for name, nb in built.items():
        saved = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        expected = [(c.source, c.metadata) for c in nb.cells]
        assert [(c.source, c.metadata) for c in saved.cells] == expected, (
            f"{name}.ipynb is stale: run python tests/fidelity/build_notebooks.py"
        )


def test_the_notebooks_hold_at_least_300_cells_besides_their_setup_cells():
    notebooks = [nbformat.read(p, as_version=4) for p in NOTEBOOKS.glob("*.ipynb")]
    for nb in notebooks:
        assert code_cells(nb)[0].source.startswith("%load_ext jupyter_jobs")
    assert sum(len(code_cells(nb)) - 1 for nb in notebooks) >= MIN_CELLS


@pytest.mark.timeout(900)
def test_cells_run_as_jobs_show_what_they_show_run_plainly(tmp_path: Path):
    with fidelity_server(tmp_path) as server:
        report = run_suite(server, tmp_path / "runs")
    # cells that differ between two plain runs measure nothing: they must stay few
    assert len(report.compared) >= MIN_CELLS, [c.where for c in report.unstable]
    if report.share < THRESHOLD:
        parts = [report.summary(), report.table("category"), report.kinds(), report.differences()]
        pytest.fail("\n".join(parts), pytrace=False)
