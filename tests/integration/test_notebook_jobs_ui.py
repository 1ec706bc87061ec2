"""Issue 13 in a real Chromium against a real `jupyter lab`: a notebook run as a job from the file
browser's context menu (the job succeeds, its result opens read-only and is saved as a copy), a
cancelled notebook job whose partial result opens from the sidebar, and a schedule made from the
same dialog, shown, paused and deleted in the Schedules view.

Each test skips while the server lacks the notebook-jobs backend (its route answers tornado's
HTML 404, not a handler's JSON), so the tests run as soon as the backend lands.
"""

from __future__ import annotations

from typing import Any

import pytest
import test_sidebar
from playwright.sync_api import Page, expect
from test_sidebar import UI_TIMEOUT, open_lab, open_panel, row

from servers import RunningServer, poll

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The sidebar tests' fixtures: Chromium, `jupyter lab` with the repository's build, a page.
browser = test_sidebar.browser
lab = test_sidebar.lab
page = test_sidebar.page

#: A notebook with a `parameters` cell, a default the job overrides, and a visible output.
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": 'greeting = "hello"',
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": 'print(f"{greeting} from the job")',
            "outputs": [],
            "execution_count": None,
        },
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def require_backend(lab: RunningServer, path: str) -> None:
    """Skip when `path` has no handler on this server (tornado's own 404 page, not JSON)."""
    response = lab.api("GET", path)
    if response.status_code == 404 and "json" not in response.headers.get("Content-Type", ""):
        pytest.skip("needs the notebook-jobs backend")


def put_notebook(lab: RunningServer, path: str) -> None:
    body = {"type": "notebook", "content": NOTEBOOK}
    response = lab.api("PUT", f"api/contents/{path}", json=body)
    assert response.status_code in (200, 201), response.text


def run_dialog_for(page: Page, name: str):
    """Right-click the notebook in the file browser and choose Run as Job…; the dialog."""
    item = page.locator(".jp-DirListing-item", has_text=name)
    expect(item).to_be_visible(timeout=UI_TIMEOUT)
    item.click(button="right")
    page.locator(".lm-Menu-item", has_text="Run as Job…").click()
    dialog = page.locator(".jp-JobsRunDialog")
    expect(dialog).to_be_visible()
    return dialog


def jobs_of(lab: RunningServer, **query: Any) -> list[dict[str, Any]]:
    response = lab.api("GET", "jobs/api/jobs", params=query)
    response.raise_for_status()
    return response.json()["jobs"]


def test_run_a_notebook_from_the_file_browser_and_open_its_result(
    page: Page, lab: RunningServer
) -> None:
    require_backend(lab, "jobs/api/jobs/1/notebook")
    put_notebook(lab, "report.ipynb")
    open_lab(page, lab)
    dialog = run_dialog_for(page, "report.ipynb")
    expect(dialog.locator(".jp-JobsRunForm-path")).to_have_text("report.ipynb")
    dialog.get_by_role("button", name="Add parameter").click()
    dialog.locator('input[name="parameter-name-0"]').fill("greeting")
    dialog.locator('input[name="parameter-value-0"]').fill('"bonjour"')
    dialog.locator(".jp-JobsRunForm-submit").click()
    expect(dialog).to_have_count(0, timeout=UI_TIMEOUT)

    job = poll(lambda: jobs_of(lab), timeout=30, what="the notebook job")[0]
    assert job["kind"] == "notebook"
    lab.wait_status(job["id"], "succeeded", timeout=120)
    detail = page.locator(f"#jupyter-jobs-detail-{job['id']}")
    expect(detail.locator(".jp-JobDetail-status")).to_contain_text("succeeded", timeout=UI_TIMEOUT)

    # Open result: the executed notebook, read-only, with the parameter's effect in its output.
    detail.get_by_role("button", name="Open result").click()
    result = page.locator(f"#jupyter-jobs-result-{job['id']}")
    frame = result.frame_locator("iframe")
    expect(frame.locator("body")).to_contain_text("bonjour from the job", timeout=UI_TIMEOUT)
    assert result.locator("iframe").get_attribute("sandbox") == ""

    # Save a copy: `<name>-job<id>.ipynb` beside the source, then opened in the main area.
    detail_tab = page.locator(f'.lm-TabBar-tab[data-id="jupyter-jobs-detail-{job["id"]}"]')
    detail_tab.click()
    detail.get_by_role("button", name="Save a copy").click()
    copy = lab.home.root_dir / f"report-job{job['id']}.ipynb"
    poll(copy.is_file, timeout=30, what="the saved copy")
    assert "bonjour from the job" in copy.read_text()
    expect(page.locator(".lm-TabBar-tab", has_text=copy.name)).to_be_visible(timeout=UI_TIMEOUT)


def test_a_cancelled_notebook_job_opens_what_ran_from_the_sidebar(
    page: Page, lab: RunningServer
) -> None:
    require_backend(lab, "jobs/api/jobs/1/notebook")
    content = {**NOTEBOOK, "cells": [
        {**NOTEBOOK["cells"][1], "source": 'print("the first cell ran")'},
        {**NOTEBOOK["cells"][1], "source": "import time\ntime.sleep(600)"},
    ]}  # fmt: skip
    body = {"spec": {"kind": "notebook", "name": "stopped"}, "notebook": {"content": content}}
    job = lab.api("POST", "jobs/api/jobs", json=body).json()
    poll(lambda: (lab.job(job["id"])["progress"] or {}).get("done") == 1, 120, "the 2nd cell")
    assert lab.api("POST", f"jobs/api/jobs/{job['id']}/cancel").status_code == 200
    lab.wait_status(job["id"], "cancelled", timeout=60)

    open_lab(page, lab)
    open_panel(page)
    row(page, job["id"]).click()
    detail = page.locator(f"#jupyter-jobs-detail-{job['id']}")
    expect(detail.locator(".jp-JobDetail-status")).to_contain_text("cancelled", timeout=UI_TIMEOUT)
    detail.get_by_role("button", name="Open result").click()
    body_text = page.locator(f"#jupyter-jobs-result-{job['id']}").frame_locator("iframe")
    expect(body_text.locator("body")).to_contain_text("the first cell ran", timeout=UI_TIMEOUT)
    expect(body_text.locator("body")).to_contain_text("JobStopped")


def test_schedule_every_minute_then_pause_and_delete_it(page: Page, lab: RunningServer) -> None:
    require_backend(lab, "jobs/api/schedules")
    put_notebook(lab, "hourly.ipynb")
    open_lab(page, lab)
    dialog = run_dialog_for(page, "hourly.ipynb")
    dialog.get_by_label("On a schedule").check()
    dialog.locator('select[name="preset"]').select_option("every")
    dialog.locator('input[name="minutes"]').fill("1")
    # The plain-words preview and the next three runs come from the server.
    expect(dialog.locator(".jp-JobsRunForm-next li")).to_have_count(3, timeout=UI_TIMEOUT)
    dialog.locator(".jp-JobsRunForm-submit").click()
    expect(dialog).to_have_count(0, timeout=UI_TIMEOUT)

    schedules = lab.api("GET", "jobs/api/schedules").json()["schedules"]
    assert [(s["target"]["path"], s["every"], s["cron"]) for s in schedules] == [
        ("hourly.ipynb", 60, None)
    ]
    schedule_id = schedules[0]["id"]
    view = page.locator("#jupyter-jobs-schedules")
    expect(view).to_be_visible(timeout=UI_TIMEOUT)
    item = view.locator(f'.jp-JobsSchedules-item[data-schedule-id="{schedule_id}"]')
    expect(item).to_contain_text("hourly.ipynb", timeout=UI_TIMEOUT)

    item.get_by_role("button", name="Pause").click()
    expect(item.locator(".jp-JobsSchedules-next")).to_have_text("Paused", timeout=UI_TIMEOUT)
    assert lab.api("GET", f"jobs/api/schedules/{schedule_id}").json()["paused"] is True

    item.get_by_role("button", name="Delete").click()
    expect(item).to_have_count(0, timeout=UI_TIMEOUT)
    assert lab.api("GET", "jobs/api/schedules").json()["schedules"] == []
