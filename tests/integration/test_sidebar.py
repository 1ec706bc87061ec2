"""The JupyterLab sidebar in a real Chromium against a real `jupyter lab`.

Jobs are submitted through the REST API (payloads made with dill) and the test watches the page:
they appear and progress in the Jobs panel without a reload, one is cancelled from the panel,
the detail view shows the log tailing and an error's traceback, notifications say when jobs end,
and the status bar counts running and queued jobs. (The README's screenshots come from a
realistic session instead: `python docs/screenshots.py`.)

The extension under test is the one built in the repository (`jupyter_jobs/labextension`, made by
`cd labextension && npm run build:prod` or by `pip install`), linked into the server's private
data dir, so the test sees the fresh build whether or not the package is installed.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dill
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from jupyter_jobs import JobQueue, oslayer

import jobfuncs
from lab_browser import lab_home, launch_chromium
from servers import RunningServer, ServerFactory, poll

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CONFIG = {"JobsApp": {"max_workers": 2, "progress_interval": 0.2, "kill_grace": 2.0}}
VIEWPORT = {"width": 1400, "height": 900}
#: Generous bound for anything the page must show (a job's whole life fits in it).
UI_TIMEOUT = 30_000

#: A cell job that trains for a while: log lines, progress, then a rich output and a figure.
TRAIN_CELL = """\
import time
import jupyter_jobs
from IPython.display import HTML, display
for epoch in range(1, 61):
    print(f"epoch {epoch}: loss {1 / epoch:.4f}", flush=True)
    jupyter_jobs.progress(epoch, 60, f"epoch {epoch}")
    time.sleep(0.25)
header = "<tr><th>epochs</th><th>final loss</th></tr>"
display(HTML(f"<table>{header}<tr><td>60</td><td>0.0167</td></tr></table>"))
import matplotlib.pyplot as plt
plt.plot([1 / epoch for epoch in range(1, 61)])
"""

#: A cell job that logs, then fails with a traceback.
FAILING_CELL = """\
print("loading data", flush=True)
def load(path):
    raise FileNotFoundError(f"no such file: {path}")
load("measurements.csv")
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def lab(jupyter_server_factory: ServerFactory, tmp_path: Path) -> RunningServer:
    """`jupyter lab` with the repository's build of the extension in its data dir."""
    home = lab_home(tmp_path / "home")
    return jupyter_server_factory(home, app="lab", config=CONFIG)


@pytest.fixture
def page(browser: Browser, lab: RunningServer) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not [e for e in errors if "jupyter-jobs" in e or "Jobs" in e], errors


def open_lab(page: Page, lab: RunningServer) -> None:
    page.goto(f"{lab.url}lab?token={lab.token}")
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=60_000)


def open_panel(page: Page) -> None:
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-jobs-panel"]').click()
    expect(page.locator("#jupyter-jobs-panel")).to_be_visible()


def row(page: Page, job_id: int):
    return page.locator(f'#jupyter-jobs-panel .jp-JobsPanel-row[data-job-id="{job_id}"]')


def status_of(page: Page, job_id: int):
    return row(page, job_id).locator(".jp-JobsPanel-status")


def toast(page: Page, job_id: int):
    return page.locator(".Toastify__toast").filter(has_text=f"Job {job_id} ")


def create_notebook(lab: RunningServer, path: str) -> Path:
    """An empty notebook at `path` (relative to the server root); returns its absolute path."""
    parent = str(Path(path).parent)
    if parent != ".":
        lab.api("PUT", f"api/contents/{parent}", json={"type": "directory"}).raise_for_status()
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    content = {
        "cells": [],
        "metadata": {"kernelspec": kernelspec},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    response = lab.api("PUT", f"api/contents/{path}", json={"type": "notebook", "content": content})
    assert response.status_code in (200, 201), response.text
    return lab.home.root_dir / path


def submit_cell(lab: RunningServer, code: str, **spec: Any) -> dict[str, Any]:
    """Submit a cell job: the payload is the dill of {code, variables, modules}."""
    payload = dill.dumps({"code": code, "variables": {}, "modules": {}})
    body = {"spec": {"kind": "cell", **spec}, "payload": base64.b64encode(payload).decode()}
    response = lab.api("POST", "jobs/api/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_jobs_appear_progress_and_cancel_in_the_panel(page: Page, lab: RunningServer) -> None:
    open_lab(page, lab)
    # The status-bar item opens the panel.
    status_item = page.locator("#jupyter-jobs-status")
    expect(status_item).to_have_text("0 running · 0 queued")
    expect(page.locator("#jupyter-jobs-panel")).to_be_hidden()
    status_item.click()
    expect(page.locator("#jupyter-jobs-panel")).to_contain_text("No jobs yet")

    # Submitted after the page loaded: they must arrive live. Two workers: two run, two wait.
    # Kernels name their notebook by its absolute path (JPY_SESSION_NAME).
    notebook = create_notebook(lab, "experiments/train.ipynb")
    train = submit_cell(lab, TRAIN_CELL, name="train model", owner=str(notebook))
    sleeper = lab.submit(jobfuncs.sleep, 3600, name="long sleep", owner="kernel:0a1b")
    adder = lab.submit(jobfuncs.add, 2, 3, name="add <b>numbers</b>")
    broken = lab.submit(jobfuncs.fail, "bad input", name="validate input", owner="etl.ipynb")

    train_row = row(page, train["id"])
    expect(train_row.locator(".jp-JobsPanel-name")).to_have_text("train model", timeout=UI_TIMEOUT)
    expect(train_row.locator(".jp-JobsPanel-status")).to_have_text("running", timeout=UI_TIMEOUT)
    expect(train_row.locator(".jp-JobsPanel-owner")).to_have_text("train.ipynb")
    expect(status_item).to_have_text("2 running · 2 queued", timeout=UI_TIMEOUT)
    # The name is text, not markup.
    expect(row(page, adder["id"]).locator(".jp-JobsPanel-name")).to_have_text("add <b>numbers</b>")
    # Newest first.
    shown = page.locator(".jp-JobsPanel-row").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert [int(i) for i in shown] == [broken["id"], adder["id"], sleeper["id"], train["id"]]

    # Progress moves without a reload.
    bar = train_row.locator("[role=progressbar]")
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^[1-9]\d?$"), timeout=UI_TIMEOUT)
    first = int(bar.get_attribute("aria-valuenow"))
    poll(
        lambda: int(bar.get_attribute("aria-valuenow") or 0) > first,
        30,
        "the progress bar of the training job moves",
    )
    expect(train_row.locator(".jp-JobsPanel-progress-label")).to_contain_text("epoch")

    # Cancel the sleeper from the panel, confirming in the dialog; the waiting jobs then run.
    sleeper_row = row(page, sleeper["id"])
    expect(sleeper_row.locator(".jp-JobsPanel-status")).to_have_text("running")
    sleeper_row.get_by_role("button", name=f"Cancel job {sleeper['id']}").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Cancel running job?")
    dialog.get_by_role("button", name="Cancel job").click()
    expect(sleeper_row.locator(".jp-JobsPanel-status")).to_have_text(
        "cancelled", timeout=UI_TIMEOUT
    )
    assert lab.job(sleeper["id"])["status"] == "cancelled"
    expect(status_of(page, adder["id"])).to_have_text("succeeded", timeout=UI_TIMEOUT)
    expect(status_of(page, broken["id"])).to_have_text("failed (error)", timeout=UI_TIMEOUT)

    # Filter by status, search by name or by notebook.
    panel = page.locator("#jupyter-jobs-panel")
    panel.locator('.jp-JobsPanel-chip[data-status="failed"]').click()
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(1)
    expect(row(page, broken["id"])).to_be_visible()
    panel.locator(".jp-JobsPanel-chip", has_text="all").click()
    search = panel.get_by_label("Search jobs by name or notebook")
    search.fill("TRAIN")
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(1)
    expect(train_row).to_be_visible()
    search.fill("experiments/")  # in the notebook's path only
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(1)
    expect(train_row).to_be_visible()

    # The owner link opens the notebook that submitted the job.
    train_row.locator("button.jp-JobsPanel-owner").click()
    expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
        "train.ipynb"
    )

    # The training job finishes on its own; the list (still searched by notebook: the job
    # stays through its events) and the status bar follow.
    expect(train_row.locator(".jp-JobsPanel-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(1)
    expect(status_item).to_have_text("0 running · 0 queued", timeout=UI_TIMEOUT)
    search.fill("")
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(4)

    # The status-bar item works from the keyboard too: focused, Enter opens the panel.
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-jobs-panel"]').click()  # collapses
    expect(panel).to_be_hidden()
    status_item.press("Enter")
    expect(panel).to_be_visible()


def test_detail_view_shows_log_traceback_outputs_and_notifies(
    page: Page, lab: RunningServer
) -> None:
    open_lab(page, lab)
    open_panel(page)
    failing = submit_cell(lab, FAILING_CELL, name="load measurements", owner="analysis.ipynb")
    expect(status_of(page, failing["id"])).to_have_text("failed (error)", timeout=UI_TIMEOUT)

    # A notification says so, with a button that opens the job.
    failed = toast(page, failing["id"])
    expect(failed).to_contain_text("“load measurements” failed (error)", timeout=UI_TIMEOUT)
    failed.get_by_role("button", name="Show job").click()

    detail = page.locator(f"#jupyter-jobs-detail-{failing['id']}")
    expect(detail).to_be_visible()
    expect(detail.locator(".jp-JobDetail-name")).to_have_text("load measurements")
    expect(detail.locator(".jp-JobDetail-log")).to_contain_text("loading data", timeout=UI_TIMEOUT)
    expect(detail.locator(".jp-JobDetail-errorMessage")).to_have_text(
        "FileNotFoundError: no such file: measurements.csv"
    )
    traceback = detail.locator(".jp-JobDetail-traceback")
    expect(traceback).to_contain_text('load("measurements.csv")')
    expect(traceback).to_contain_text("FileNotFoundError")
    assert "\x1b[" not in traceback.inner_text()

    # A running job: the log grows while the view is open, then the outputs are rendered.
    train = submit_cell(lab, TRAIN_CELL, name="train model", owner="experiments/train.ipynb")
    row(page, train["id"]).click()
    detail = page.locator(f"#jupyter-jobs-detail-{train['id']}")
    log = detail.locator(".jp-JobDetail-log")
    expect(log).to_contain_text("epoch 3:", timeout=UI_TIMEOUT)
    expect(log).to_contain_text("epoch 12:", timeout=UI_TIMEOUT)
    assert "epoch 60:" not in log.inner_text()  # a tail of a job still running
    expect(detail.locator(".jp-JobDetail-facts")).to_contain_text("1 of 1")
    expect(detail.locator(".jp-JobDetail-facts")).to_contain_text("experiments/train.ipynb")
    expect(log).to_contain_text("epoch 60:", timeout=60_000)
    # The captured display output, rendered by rendermime (streams are in the log, not here).
    outputs = detail.locator(".jp-JobDetail-outputs")
    expect(outputs.locator("table")).to_contain_text("final loss", timeout=UI_TIMEOUT)
    expect(outputs.locator("img[src^='data:image/png']")).to_be_visible()  # the figure
    expect(outputs).not_to_contain_text("epoch 1:")
    finished = toast(page, train["id"])
    expect(finished).to_contain_text("“train model” finished", timeout=UI_TIMEOUT)


def test_panel_polls_when_events_do_not_arrive(page: Page, lab: RunningServer) -> None:
    # The events websocket opens but never delivers (a proxy that drops it, say).
    page.route_web_socket(re.compile(r"/api/events/subscribe"), lambda ws: None)
    open_lab(page, lab)
    open_panel(page)
    expect(page.locator("#jupyter-jobs-panel")).to_contain_text("No jobs yet")
    first = lab.submit(jobfuncs.add, 1, 2, name="found by polling")
    # The slow safety poll finds it, notices events missed it, and polls fast from then on.
    expect(status_of(page, first["id"])).to_have_text("succeeded", timeout=UI_TIMEOUT)
    second = lab.submit(jobfuncs.sleep, 3600, name="second")
    expect(status_of(page, second["id"])).to_have_text("running", timeout=10_000)
    lab.api("POST", f"jobs/api/jobs/{second['id']}/cancel").raise_for_status()
    expect(status_of(page, second["id"])).to_have_text("cancelled", timeout=10_000)


def test_notifications_can_be_switched_off(page: Page, lab: RunningServer) -> None:
    response = lab.api(
        "PUT",
        "lab/api/settings/jupyter-jobs:plugin",
        json={"raw": json.dumps({"notifications": False})},
    )
    assert response.status_code == 204, response.text
    open_lab(page, lab)
    open_panel(page)
    failing = lab.submit(jobfuncs.fail, "quietly", name="quiet failure")
    expect(status_of(page, failing["id"])).to_have_text("failed (error)", timeout=UI_TIMEOUT)
    # Absence can only be seen after the notifier's batching window (0.5 s) has passed.
    page.wait_for_timeout(2_000)
    expect(page.locator(".Toastify__toast")).to_have_count(0)

    # Switched back on in the settings editor, the next failure is notified.
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-item", has_text="Settings Editor").click()
    page.locator(".jp-PluginList-entry", has_text="Jobs").click()
    checkbox = page.locator('[id="jp-SettingsEditor-jupyter-jobs:plugin_notifications"]')
    expect(checkbox).not_to_be_checked()
    checkbox.check()
    poll(
        lambda: (
            lab.api("GET", "lab/api/settings/jupyter-jobs:plugin").json()["settings"]
            == {"notifications": True}
        ),
        30,
        "the settings editor saved notifications: true",
    )
    # The page applies the setting once it has read it back from the server, a moment after the
    # save: a failure in that moment may go unannounced, so fail jobs until one is announced.
    announced = None
    deadline = time.monotonic() + UI_TIMEOUT / 1000
    while announced is None and time.monotonic() < deadline:
        loud = lab.submit(jobfuncs.fail, "loudly", name="loud failure")
        expect(status_of(page, loud["id"])).to_have_text("failed (error)", timeout=UI_TIMEOUT)
        try:
            expect(toast(page, loud["id"])).to_contain_text("“loud failure” failed", timeout=3_000)
            announced = loud
        except AssertionError:
            continue
    assert announced is not None, "no failure was announced after notifications were switched on"
    expect(toast(page, failing["id"])).to_have_count(0)


def test_notebook7_shows_the_panel_left_and_details_right(page: Page, lab: RunningServer) -> None:
    create_notebook(lab, "analysis.ipynb")
    page.goto(f"{lab.url}notebooks/analysis.ipynb?token={lab.token}")
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
    page.locator(".lm-MenuBar-item", has_text="View").click()
    sidebar = page.locator(".lm-Menu-item", has_text="Left Sidebar")
    expect(sidebar).to_be_visible()
    sidebar.hover()
    page.locator(".lm-Menu-item", has_text="Show Jobs").click()
    expect(page.locator("#jupyter-jobs-panel")).to_be_visible()

    failing = lab.submit(jobfuncs.fail, "in notebook 7", name="notebook seven")
    expect(status_of(page, failing["id"])).to_have_text("failed (error)", timeout=UI_TIMEOUT)
    row(page, failing["id"]).click()
    detail = page.locator(f"#jupyter-jobs-detail-{failing['id']}")
    expect(detail.locator(".jp-JobDetail-errorMessage")).to_have_text(
        "ValueError: in notebook 7", timeout=UI_TIMEOUT
    )
    expect(detail.locator(".jp-JobDetail-traceback")).to_contain_text("raise ValueError(message)")
    # Notebook keeps its one document in the main area; the details sit in the right one.
    expect(page.locator(".jp-Notebook")).to_be_visible()


def test_a_held_job_is_released_from_the_panel_and_runs(page: Page, lab: RunningServer) -> None:
    held = lab.submit(jobfuncs.add, 1, 2, name="held back", hold=True)
    open_lab(page, lab)
    open_panel(page)
    expect(status_of(page, held["id"])).to_have_text("pending", timeout=UI_TIMEOUT)
    release = row(page, held["id"]).get_by_role("button", name=f"Release job {held['id']}")
    release.click()
    expect(status_of(page, held["id"])).to_have_text("succeeded", timeout=UI_TIMEOUT)
    expect(release).to_have_count(0)
    assert lab.job(held["id"])["held"] is False


def test_filter_chips_fit_one_row_and_clear_finished_keeps_active_jobs(
    page: Page, lab: RunningServer
) -> None:
    done = lab.submit(jobfuncs.add, 1, 2, name="load parquet")
    broken = lab.submit(jobfuncs.fail, "bad input", name="validate input")
    dropped = lab.submit(jobfuncs.noop, name="dropped", hold=True)
    lab.api("POST", f"jobs/api/jobs/{dropped['id']}/cancel").raise_for_status()
    waiting = lab.submit(jobfuncs.noop, name="waiting", hold=True)
    sleeper = lab.submit(jobfuncs.sleep, 3600, name="train resnet")
    open_lab(page, lab)
    open_panel(page)
    expect(status_of(page, done["id"])).to_have_text("succeeded", timeout=UI_TIMEOUT)
    expect(status_of(page, broken["id"])).to_have_text("failed (error)", timeout=UI_TIMEOUT)
    expect(status_of(page, sleeper["id"])).to_have_text("running", timeout=UI_TIMEOUT)

    # At the sidebar's default width every chip sits on one line, all in view.
    panel = page.locator("#jupyter-jobs-panel")
    chips = panel.locator(".jp-JobsPanel-filters .jp-JobsPanel-chip")
    expect(chips).to_have_count(7)
    boxes = [chips.nth(i).bounding_box() for i in range(7)]
    assert len({round(box["y"]) for box in boxes}) == 1, boxes
    group = panel.locator(".jp-JobsPanel-filters").bounding_box()
    assert group["height"] < 2 * boxes[0]["height"], (group, boxes)
    right = group["x"] + group["width"] + 1
    assert all(box["x"] + box["width"] <= right for box in boxes), (group, boxes)
    # Colour and count in the chip, the status in its name; pressed, it shows the name too.
    cancelled = panel.get_by_role("button", name="cancelled: 1")
    cancelled.click()
    expect(cancelled).to_have_attribute("aria-pressed", "true")
    expect(cancelled.locator(".jp-JobsPanel-chip-label")).to_be_visible()
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(1)
    expect(row(page, dropped["id"])).to_be_visible()
    chips.nth(0).click()
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(5)

    # One confirmation for all of them; the waiting and running jobs stay.
    panel.get_by_role("button", name="Clear finished jobs").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Delete 3 finished jobs?")
    expect(dialog).to_contain_text("1 succeeded, 1 failed, 1 cancelled")
    dialog.get_by_role("button", name="Keep").click()
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(5)
    panel.get_by_role("button", name="Clear finished jobs").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(2, timeout=UI_TIMEOUT)
    expect(row(page, waiting["id"])).to_be_visible()
    expect(row(page, sleeper["id"])).to_be_visible()
    for job in (done, broken, dropped):
        assert lab.api("GET", f"jobs/api/jobs/{job['id']}").status_code == 404
    expect(panel.get_by_role("button", name="succeeded: 0")).to_be_visible()
    expect(panel.get_by_role("button", name="Clear finished jobs")).to_be_disabled()
    lab.api("POST", f"jobs/api/jobs/{sleeper['id']}/cancel").raise_for_status()


def test_mine_or_everyone_and_the_user_of_each_job(page: Page, lab: RunningServer) -> None:
    me = oslayer.user_name()
    mine = lab.submit(jobfuncs.add, 1, 2, name="my training")
    # A colleague's job in the same database (their own JobQueue), held so that it waits.
    with JobQueue(lab.home.db_path, user="colleague") as queue:
        theirs = queue.submit(jobfuncs.noop, name="their report", hold=True).id
    open_lab(page, lab)
    open_panel(page)
    panel = page.locator("#jupyter-jobs-panel")
    expect(status_of(page, mine["id"])).to_have_text("succeeded", timeout=UI_TIMEOUT)
    expect(row(page, theirs).locator(".jp-JobsPanel-user")).to_have_text("colleague")
    expect(row(page, mine["id"]).locator(".jp-JobsPanel-user")).to_have_count(0)
    everyone = panel.get_by_role("button", name="Everyone")
    only_mine = panel.get_by_role("button", name="Mine")
    expect(everyone).to_have_attribute("aria-pressed", "true")

    only_mine.click()
    expect(only_mine).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(1)
    expect(row(page, mine["id"])).to_be_visible()
    expect(panel.get_by_role("button", name="pending: 0")).to_be_visible()
    # A job submitted now is the user's: it comes in live under "Mine".
    later = lab.submit(jobfuncs.add, 2, 3, name="my evaluation")
    expect(status_of(page, later["id"])).to_have_text("succeeded", timeout=UI_TIMEOUT)

    # Under "Mine", clear finished clears the user's own finished jobs only.
    lab.api("POST", f"jobs/api/jobs/{theirs}/cancel").raise_for_status()
    panel.get_by_role("button", name="Clear finished jobs").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Delete 2 finished jobs?")
    expect(dialog).to_contain_text("every finished job of yours")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(0, timeout=UI_TIMEOUT)
    assert lab.job(theirs)["status"] == "cancelled"

    everyone.click()
    expect(page.locator(".jp-JobsPanel-row")).to_have_count(1)
    row(page, theirs).click()
    detail = page.locator(".jp-JobDetail")
    expect(detail.locator(".jp-JobDetail-user")).to_have_text("colleague", timeout=UI_TIMEOUT)
    assert me and lab.api("GET", "jobs/api/me").json()["username"] == me


def test_notebook7_owner_link_opens_the_notebook_in_a_new_tab(
    page: Page, lab: RunningServer
) -> None:
    notebook = create_notebook(lab, "experiments/train.ipynb")
    create_notebook(lab, "analysis.ipynb")
    # Kernels name their notebook by its absolute path (JPY_SESSION_NAME).
    job = lab.submit(jobfuncs.add, 1, 2, name="train resnet", owner=str(notebook))
    page.goto(f"{lab.url}notebooks/analysis.ipynb?token={lab.token}")
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
    page.locator(".lm-MenuBar-item", has_text="View").click()
    page.locator(".lm-Menu-item", has_text="Left Sidebar").hover()
    page.locator(".lm-Menu-item", has_text="Show Jobs").click()
    owner = row(page, job["id"]).locator("button.jp-JobsPanel-owner")
    expect(owner).to_have_text("train.ipynb", timeout=UI_TIMEOUT)
    expect(owner).to_have_attribute("title", "Open experiments/train.ipynb")
    with page.context.expect_page() as opened:
        owner.click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url.split("?")[0] == f"{lab.url}notebooks/experiments/train.ipynb"
    expect(tab.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
    tab.close()


def test_notebook7_tree_page_has_a_jobs_tab(page: Page, lab: RunningServer) -> None:
    job = lab.submit(jobfuncs.add, 1, 2, name="load parquet")
    page.goto(f"{lab.url}tree?token={lab.token}")
    tab = page.locator(".jp-TreePanel .lm-TabBar-tab", has_text="Jobs")
    expect(tab).to_be_visible(timeout=60_000)
    tab.click()
    jobs = page.locator("#jupyter-jobs-tree")
    expect(jobs).to_be_visible()
    expect(jobs.locator(f'.jp-JobsPanel-row[data-job-id="{job["id"]}"]')).to_contain_text(
        "load parquet", timeout=UI_TIMEOUT
    )
    # The Files tab is still there and still works.
    page.locator(".jp-TreePanel .lm-TabBar-tab", has_text="Files").click()
    expect(jobs).to_be_hidden()


def test_ten_thousand_jobs_stay_light(page: Page, lab: RunningServer) -> None:
    payload = base64.b64encode(dill.dumps({"fn": jobfuncs.noop, "args": (), "kwargs": {}}))
    items = [
        {
            "spec": {"name": f"sweep {i}", "owner": "sweep.ipynb", "hold": True},
            "payload": payload.decode(),
        }
        for i in range(10_000)
    ]
    response = lab.api("POST", "jobs/api/jobs/batch", json={"items": items})
    assert response.status_code == 201, response.text
    ids = [job["id"] for job in response.json()["jobs"]]
    open_lab(page, lab)
    open_panel(page)
    panel = page.locator("#jupyter-jobs-panel")
    expect(panel.locator('.jp-JobsPanel-chip[data-status="pending"]')).to_have_text("pending10000")
    rows = panel.locator(".jp-JobsPanel-row")
    expect(rows.first).to_have_attribute("data-job-id", str(ids[-1]))
    # Only the rows in view (and a few around them) are in the page.
    assert rows.count() < 60

    # Scrolling down loads older pages as it goes; the page still holds only a window of rows.
    listing = panel.locator(".jp-JobsPanel-list")
    row_height = rows.first.evaluate("node => node.offsetHeight")

    def scrolled_down_and_loaded(count: int) -> bool:
        listing.evaluate("node => { node.scrollTop = node.scrollHeight; }")
        height = panel.locator(".jp-JobsPanel-rows").evaluate("node => node.offsetHeight")
        return height >= count * row_height

    poll(lambda: scrolled_down_and_loaded(400), 30, "scrolling down loads older pages")
    listing.evaluate(f"node => {{ node.scrollTop = {350 * row_height}; }}")
    expect(row(page, ids[-352])).to_be_attached()
    assert rows.count() < 60

    # The server searches all ten thousand by name.
    panel.get_by_label("Search jobs by name or notebook").fill("sweep 1234")
    expect(rows).to_have_count(1)
    expect(row(page, ids[1234])).to_be_visible()


def test_detail_view_shows_each_thread_and_child_process_on_its_own(
    page: Page, lab: RunningServer
) -> None:
    job = lab.submit(jobfuncs.streams_demo, name="three streams")
    lab.wait_status(job["id"], "succeeded")
    child = f"pid {lab.result(job['id'])}"
    open_lab(page, lab)
    open_panel(page)
    row(page, job["id"]).click()
    detail = page.locator(f"#jupyter-jobs-detail-{job['id']}")
    log = detail.locator(".jp-JobDetail-log")
    select = detail.locator(".jp-JobDetail-streamSelect")

    # "All" first: every line, those of the thread and the child tagged with their stream.
    expect(select).to_be_visible(timeout=UI_TIMEOUT)
    expect(select).to_have_value("")
    expect(select.locator("option")).to_have_text(["All streams", "main", "thread worker", child])
    expect(log).to_contain_text("main says hello")
    tags = log.locator(".jp-JobDetail-logTag")
    expect(tags).to_have_text(["thread worker │ ", f"{child} │ "])

    # One stream at a time, untagged.
    select.select_option("thread worker")
    expect(log).to_have_text("worker says hi\n")
    select.select_option(child)
    expect(log).to_have_text("child says hey\n")
    select.select_option("main")
    expect(log).to_have_text("main says hello\n")
    select.select_option("")
    expect(log).to_contain_text("worker says hi")
    expect(log).to_contain_text("child says hey")
    expect(tags).to_have_count(2)
