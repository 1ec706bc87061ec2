"""A saved notebook reopens cleanly, in a real Chromium against a real `jupyter lab`.

A `%%job` cell runs in JupyterLab and the notebook is saved; the kernel restarts and the page
reloads, so the widget's model is gone (ipywidgets would say "Error displaying widget: model not
found"). The output shows the job instead, as the jobs server has it; `%job attach` shows a live
widget again; Notebook 7 shows the same. Fixtures and helpers are the sidebar tests' own.
"""

from __future__ import annotations

import re

import pytest
import test_sidebar
from playwright.sync_api import Page, expect
from test_sidebar import create_notebook, open_lab

from servers import RunningServer, poll

#: The sidebar tests' fixtures: a Chromium, a `jupyter lab` with this build, a page on it.
browser, lab, page = test_sidebar.browser, test_sidebar.lab, test_sidebar.page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_MIME = "application/vnd.jupyter-jobs.job+json"
MISSING = "model not found"
#: Starting a kernel and running a job fit in this, on a busy machine.
KERNEL_TIMEOUT = 90_000

JOB_CELL = "%%job --name reopened\nprint('hello from the job')\nanswer = 42"


def write_notebook(lab: RunningServer, path: str, sources: list[str]) -> None:
    """A notebook with these code cells, not run yet."""
    create_notebook(lab, path)
    content = lab.api("GET", f"api/contents/{path}").json()["content"]
    content["cells"] = [
        {"cell_type": "code", "source": s, "metadata": {}, "outputs": [], "execution_count": None}
        for s in sources
    ]
    body = {"type": "notebook", "content": content}
    lab.api("PUT", f"api/contents/{path}", json=body).raise_for_status()


def kernel_idle(page: Page) -> None:
    """Until JupyterLab's status bar says the notebook's kernel is idle, with no dialog open."""
    expect(page.get_by_text(re.compile(r"^Python 3 \(ipykernel\) \| Idle$"))).to_be_visible(
        timeout=KERNEL_TIMEOUT
    )
    expect(page.locator(".jp-Dialog")).to_have_count(0)


def run_cell(page: Page, index: int, code: str | None = None) -> None:
    """Run the notebook's cell `index`, typing `code` into it first if given."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    editor = cell.locator(".cm-content")
    editor.click()
    if code is not None:
        page.keyboard.type(code)
        expect(editor).to_have_text(code.replace("\n", ""))
    page.keyboard.press("Control+Enter")


def output_of(page: Page, index: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-Cell-outputWrapper")


def job_output(page: Page, index: int):
    return output_of(page, index).locator(".jp-JobOutput").first


def visible_notebook_text(page: Page) -> str:
    """What a reader sees: innerText leaves out what is hidden."""
    return page.locator(".jp-Notebook").first.inner_text()


def save_final_job_output(page: Page, lab: RunningServer, path: str) -> dict:
    """Save until the file holds the `%%job` display's final state (the kernel updates the
    display a moment after the widget shows the end), and return that display's data."""

    def final() -> dict | None:
        page.keyboard.press("Control+s")
        response = lab.api("GET", f"api/contents/{path}")
        if response.status_code != 200:  # read while being written
            return None
        for cell in response.json()["content"]["cells"]:
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if JOB_MIME in data and "succeeded" in data.get("text/plain", ""):
                    return data
        return None

    return poll(final, 60, "the saved notebook holds the job's final display", interval=1.0)


def restart_kernel(lab: RunningServer, path: str) -> None:
    sessions = lab.api("GET", "api/sessions").json()
    kernel = next(s["kernel"]["id"] for s in sessions if s["path"] == path)
    lab.api("POST", f"api/kernels/{kernel}/restart").raise_for_status()


def test_a_reopened_notebook_shows_its_jobs_and_attach_brings_the_widget_back(
    page: Page, lab: RunningServer
) -> None:
    path = "reopen.ipynb"
    write_notebook(lab, path, ["%load_ext jupyter_jobs.kernel", JOB_CELL, ""])
    open_lab(page, lab)
    page.goto(f"{lab.url}lab/tree/{path}?token={lab.token}")
    expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(3, timeout=60_000)
    kernel_idle(page)
    run_cell(page, 0)
    run_cell(page, 1)

    # In the session that ran the cell: the live widget.
    expect(output_of(page, 1)).to_contain_text("succeeded", timeout=KERNEL_TIMEOUT)
    expect(output_of(page, 1)).to_contain_text("hello from the job", timeout=KERNEL_TIMEOUT)
    saved = save_final_job_output(page, lab, path)
    job_id = saved[JOB_MIME]["id"]
    assert lab.job(job_id)["name"] == "reopened"

    # The kernel restarts and the page reloads: the widget's model is gone.
    restart_kernel(lab, path)
    page.reload()
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=60_000)
    expect(output_of(page, 1)).to_contain_text("succeeded", timeout=KERNEL_TIMEOUT)
    reopened = job_output(page, 1)
    summary = reopened.locator(".jp-JobOutput-live")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("reopened")
    expect(summary).to_contain_text("succeeded")
    expect(summary).to_contain_text(re.compile(rf"#{job_id} · took \d+s"))
    expect(summary).to_contain_text("hello from the job", timeout=30_000)
    expect(reopened.locator(".jp-JobOutput-widget")).to_be_hidden()
    assert MISSING not in visible_notebook_text(page)

    # `%job attach` in the new kernel: a live widget again, in its own output.
    kernel_idle(page)
    run_cell(page, 2, f"%load_ext jupyter_jobs.kernel\n%job attach {job_id}")
    attached = job_output(page, 2).locator(".jp-JobOutput-widget")
    expect(attached).to_contain_text("succeeded", timeout=KERNEL_TIMEOUT)
    expect(attached).to_contain_text("hello from the job", timeout=30_000)
    # The older output still shows the job, the same as the widget does.
    expect(summary).to_contain_text("succeeded")
    assert MISSING not in visible_notebook_text(page)

    # Notebook 7 renders outputs with the same rendermime: the same job view.
    page.keyboard.press("Control+s")
    page.goto(f"{lab.url}notebooks/{path}?token={lab.token}")
    nb7 = job_output(page, 1).locator(".jp-JobOutput-live")
    expect(nb7).to_contain_text("succeeded", timeout=KERNEL_TIMEOUT)
    expect(nb7).to_contain_text("hello from the job", timeout=30_000)
    assert MISSING not in visible_notebook_text(page)
