"""Every notebook in notebooks/ runs top to bottom (nbclient) against a real `jupyter server`.

The kernel gets JUPYTER_JOBS_URL/TOKEN as a kernel launched by that server would. Each notebook's
key outputs are checked, and the executed notebook is saved and read back: every `%%job` cell's
display must hold the job's final state as plain mime data (what a notebook shows without a
kernel or without widget state).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from servers import REPO, RunningServer, execute_notebook

NOTEBOOKS = REPO / "notebooks"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def server(shared_jupyter_server: RunningServer) -> RunningServer:
    """One server for all notebooks (they never look at each other's jobs)."""
    return shared_jupyter_server


def run(server: RunningServer, name: str, tmp_path: Path) -> nbformat.NotebookNode:
    """Execute notebooks/<name> in `tmp_path`; save it there and return the saved copy."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    execute_notebook(server, nb, tmp_path)
    saved = tmp_path / name
    nbformat.write(nb, saved)
    return nbformat.read(saved, as_version=4)


def cell(nb: nbformat.NotebookNode, start: str) -> nbformat.NotebookNode:
    """The code cell whose source starts with `start`."""
    found = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start)]
    assert len(found) == 1, f"{len(found)} cells start with {start!r}"
    return found[0]


def text(c: nbformat.NotebookNode) -> str:
    """A cell's streams and text/plain results, as a reader sees them."""
    parts = []
    for out in c.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", "") + "\n")
    return "".join(parts)


def job_display(c: nbformat.NotebookNode) -> dict[str, Any]:
    """The widget display of a `%%job` cell, as saved."""
    shown = [o for o in c.outputs if o.output_type == "display_data" and WIDGET_MIME in o.data]
    assert len(shown) == 1, c.source
    return shown[0].data


def check_saved_job_displays(nb: nbformat.NotebookNode) -> None:
    """Each `%%job` display ended in a final state, in text/plain and text/html alike (a cell
    tagged `raises-exception` may have been refused before a job existed, and show no display;
    or its job failed)."""
    assert nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    for c in nb.cells:
        refused = "raises-exception" in c.metadata.get("tags", []) and WIDGET_MIME not in str(
            c.outputs
        )
        if c.cell_type == "code" and c.source.startswith("%%job") and not refused:
            data = job_display(c)
            first = data["text/plain"].splitlines()[0]
            assert re.search(r" (succeeded|failed|cancelled)\b", first), first
            assert re.search(r"&#9679; (succeeded|failed|cancelled)", data["text/html"])


def test_getting_started(server, tmp_path):
    nb = run(server, "getting-started.ipynb", tmp_path)
    assert text(cell(nb, "%%job --wait --name sum-of-squares")).endswith("the total is 285\n")
    assert text(cell(nb, "total")) == "285\n"
    assert text(cell(nb, "del total")).endswith("Set: total\n285\n")  # `%job attach`
    assert text(cell(nb, "import jupyter_jobs as jj")) == "144\n"
    listing = text(cell(nb, "%jobs"))
    assert "sum-of-squares" in listing and "square" in listing
    check_saved_job_displays(nb)


def test_magic(server, tmp_path):
    nb = run(server, "magic.ipynb", tmp_path)
    assert text(cell(nb, "print(long_words, count)")) == (
        "['apple', 'banana', 'cherry'] 3\n"
        "['fig', 'apple', 'kiwi', 'banana', 'cherry', 'plum', 'mango']\n"
    )
    shown = job_display(cell(nb, "%%job --wait --name long-words"))["text/plain"]
    assert "Set: long_words, count, words" in shown
    assert text(cell(nb, "print(shouted)")) == (
        "['FIG', 'APPLE', 'KIWI', 'BANANA', 'CHERRY', 'PLUM', 'MANGO']\nFalse\n"
    )
    assert text(cell(nb, 'answer_job.result()["values"]')) == "{'answer': 42}\n"
    assert text(cell(nb, "slow_job.wait")) == "mine\nfrom the job\n"
    kept = job_display(cell(nb, "%%job --out slow_job"))["text/plain"]
    assert "answer was reassigned since submit; kept yours" in kept
    refused = cell(nb, "%%job --wait\nwith guard:\n    total = sum(squares)\nport")
    assert text(refused) == (
        "UsageError: PayloadError: variable 'squares' (generator) cannot be sent to the job: "
        "cannot pickle 'generator' object; variable 'listener' (socket.socket) cannot be sent "
        "to the job: cannot pickle 'socket' object\n"
    )
    assert WIDGET_MIME not in str(refused.outputs)  # no job, no display
    assert text(cell(nb, "total")) == "285\n"  # the lock travelled, the list too
    unsent = text(cell(nb, "print(rows)"))
    assert unsent.startswith("[(2,)]\n{'db': ") and "sqlite3.Connection" in unsent
    check_saved_job_displays(nb)


def test_api_and_map(server, tmp_path):
    nb = run(server, "api-and-map.ipynb", tmp_path)
    assert text(cell(nb, "job = jj.submit(fib, 30")) == "832040\n"
    assert text(cell(nb, "jobs = jj.map(fib")) == "[0, 1, 1, 2, 3, 5, 8, 13, 21, 34]\n"
    assert text(cell(nb, "done = concurrent.futures.wait")) == "10\n"
    assert text(cell(nb, "await jj.submit(fib, 20)")) == "6765\n"
    assert text(cell(nb, "again = jj.get(job.id)")) == "('succeeded', 832040)\n"
    assert text(cell(nb, "def divide")) == "ZeroDivisionError - division by zero\n"
    assert text(cell(nb, "type(bad.exception())")) == "'JobFailed'\n"


def test_progress_and_logs(server, tmp_path):
    nb = run(server, "progress-and-logs.ipynb", tmp_path)
    progress = text(cell(nb, "counting.progress"))
    assert progress.startswith("Progress(done=5.0, total=5.0, message='step 5'")
    assert "finished step 5" in text(cell(nb, "%job logs"))
    assert text(cell(nb, "bar_job.progress.done")) == "(200.0, 200.0, 19900)\n"
    plot = cell(nb, "%%job --wait --name plot")
    kinds = [sorted(o.data) for o in plot.outputs if o.output_type == "display_data"]
    assert ["image/png", "text/plain"] in kinds  # the figure, as a regular output
    assert any("text/html" in k and WIDGET_MIME not in k for k in kinds)  # the table
    printer = job_display(cell(nb, "%%job --name printer"))
    assert "hello from the background" in printer["text/plain"]
    assert "hello from the background" in printer["text/html"]
    assert text(cell(nb, "printer.wait")) == "'succeeded'\n"
    check_saved_job_displays(nb)


def test_cancel_timeout_retry(server, tmp_path):
    nb = run(server, "cancel-timeout-retry.ipynb", tmp_path)
    assert re.fullmatch(
        r"job \d+: (cancelled|(running|queued) \(cancelling\))\n", text(cell(nb, "%job cancel"))
    )
    assert text(cell(nb, "forever.wait")) == "'cancelled'\n"
    timeout_cell = cell(nb, "%%job --wait --timeout 1")
    assert [o.ename for o in timeout_cell.outputs if o.output_type == "error"] == ["TimeoutError"]
    assert text(cell(nb, "too_slow.record")) == "('failed', 'timeout')\n"
    assert text(cell(nb, "import pathlib")) == "'worked on attempt 2'\n"
    assert text(cell(nb, "marker.unlink(missing_ok=True)\nonce")) == "'JobFailed'\n"
    retried = cell(nb, "%job retry")
    assert [o for o in retried.outputs if WIDGET_MIME in o.get("data", {})]
    assert text(cell(nb, "%job result")) == "'worked on attempt 2'\n"
    check_saved_job_displays(nb)


def test_dependencies(server, tmp_path):
    nb = run(server, "dependencies.ipynb", tmp_path)
    assert text(cell(nb, "def make_data")) == "4950\n"
    assert text(cell(nb, "summary")) == "'both jobs finished before this cell started'\n"
    assert text(cell(nb, "def explode")) == "('failed', 'dependency_failed')\n"
    assert text(cell(nb, "later = jj.submit")) == "pending\n[0, 1, 2, 3, 4]\n"
    check_saved_job_displays(nb)
