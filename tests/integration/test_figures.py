"""Figures of `%%job` cells against a real server, as the same cells show them inline.

A notebook run by nbclient imports `matplotlib.pyplot as plt` in its first cell (the kernel's
`plt` travels to the worker by reference) and sets a style there; each plotting cell runs once
inline and once as a `%%job --wait`, and the saved notebooks must show the same figures: as
many, the same PNG, the same `<Figure size ...>` text. A background `%%job` shows its figures in
its widget, live and in the display a saved notebook keeps.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from test_widget import kernel  # noqa: F401  (the fixture: a real kernel, its widgets' state)

JOB_MIME = "application/vnd.jupyter-jobs.job+json"
SETUP = """\
%load_ext jupyter_jobs.kernel
import matplotlib.pyplot as plt
plt.rcParams["figure.figsize"] = (4.0, 2.5)
%config InlineBackend.figure_format = 'retina'
"""
#: Plotting cells as a notebook has them: figures left open (flushed at the cell's end),
#: `plt.show()`, `display(fig)` on an open figure (shown twice, as inline), `%matplotlib inline`,
#: and first a figure as the cell's value, which the kernel renders before it drew any figure.
PLOTS = [
    "fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.close(fig)\nfig",  # the kernel shows it
    "fig, ax = plt.subplots()\nax.plot([1, 3, 2])",
    "plt.plot([1, 2, 3])\nplt.title('shown')\nplt.show()",
    "fig, ax = plt.subplots()\nax.bar(['a', 'b'], [3, 5])\ndisplay(fig)",
    "%matplotlib inline\nplt.scatter([1, 2], [2, 1])",
    "fig, ax = plt.subplots()\nax.plot([0, 1])\nplt.close(fig)\ndisplay(fig)",
    "with plt.style.context('ggplot'):\n    plt.plot([2, 1])\n    plt.show()",
]


def figures_of(cell: nbformat.NotebookNode) -> list[tuple[str, bytes]]:
    """The cell's images, as (text/plain, PNG bytes); the job's own widget left out."""
    return [
        (out["data"].get("text/plain", ""), base64.b64decode(out["data"]["image/png"]))
        for out in cell.outputs
        if "image/png" in out.get("data", {}) and JOB_MIME not in out["data"]
    ]


def run_notebook(server: Any, cells: list[str], path: Path) -> nbformat.NotebookNode:
    """Run `cells` in a fresh kernel that reaches `server`, save the notebook to `path` and
    read it back: what a user finds in the file."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = dict(server.env)
    env.update(JUPYTER_JOBS_URL=server.url, JUPYTER_JOBS_TOKEN=server.token)
    km = KernelManager(kernel_name="python3")
    client = NotebookClient(nb, km=km, timeout=120, resources={"metadata": {"path": path.parent}})
    client.execute(env=env)
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)


@pytest.fixture(scope="module")
def notebooks(shared_jupyter_server: Any, tmp_path_factory: pytest.TempPathFactory):
    """(inline, job) notebooks of the same cells; the job one's plotting cells are `%%job`s."""
    work = tmp_path_factory.mktemp("figures")
    jobs = [f"%%job --wait --name plot{i}\n{code}" for i, code in enumerate(PLOTS)]
    style_back = ["plt.style.use('ggplot')", "print(plt.rcParams['axes.facecolor'])"]
    inline = run_notebook(
        shared_jupyter_server, [SETUP, *PLOTS, *style_back], work / "inline.ipynb"
    )
    as_jobs = [SETUP, *jobs, f"%%job --wait --name style\n{style_back[0]}", style_back[1]]
    job = run_notebook(shared_jupyter_server, as_jobs, work / "job.ipynb")
    return inline, job


@pytest.mark.parametrize("index", range(1, len(PLOTS) + 1))
def test_a_plotting_job_cell_shows_the_figures_inline_shows(notebooks, index):
    inline, job = notebooks
    expected = figures_of(inline.cells[index])
    assert expected, "the inline cell shows a figure"
    assert not [o for o in job.cells[index].outputs if o["output_type"] == "error"]
    assert figures_of(job.cells[index]) == expected


def test_a_style_set_in_a_job_styles_the_kernels_next_figures(notebooks):
    inline, job = notebooks
    assert job.cells[-1].outputs[0]["text"] == inline.cells[-1].outputs[0]["text"] == "#E5E5E5\n"


def test_a_background_job_shows_its_figures_in_its_widget_and_the_saved_display(kernel):  # noqa: F811
    kernel.execute("import matplotlib.pyplot as plt")
    kernel.execute("%%job --name background-plot\nfig, ax = plt.subplots()\nax.plot([1, 2])")
    kernel.pump_until(lambda: kernel.status("background-plot") == "succeeded", "job succeeded")

    def shown() -> list[dict[str, Any]]:
        return [
            out
            for state in kernel.models.values()
            if state.get("_model_name") == "OutputModel"
            for out in state.get("outputs", [])
            if "image/png" in out.get("data", {})
        ]

    (figure,) = kernel.pump_until(shown, "the figure in the widget")
    assert figure["data"]["text/plain"] == "<Figure size 640x480 with 1 Axes>"

    def kept() -> list[str]:
        html = [d["data"].get("text/html", "") for d in kernel.displays]
        return [text for text in html if "data:image/png;base64," in text]

    saved = kernel.pump_until(kept, "the figure in the display a saved notebook keeps")
    assert figure["data"]["image/png"] in saved[-1]
