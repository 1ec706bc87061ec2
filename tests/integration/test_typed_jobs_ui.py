"""Job types in a real Chromium against a real `jupyter lab`: the Jobs panel's "New job" opens
a form generated from the type's JSON schema (an installed type of a package in a temporary
folder); a bad value is marked by its field, the filled-in form starts the job, and its detail
view shows the type, the parameters and the summary the worker made. The Schedules view's
"New schedule…" makes a schedule of a job type from the same kind of form (the server's 400
shown by its parameter), whose runs receive their `scheduled_time`; the panel's type filter
keeps the list and its counts to one type's jobs."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
import test_sidebar
from playwright.sync_api import Page, expect
from test_sidebar import CONFIG, UI_TIMEOUT, open_lab

from jupyter_jobs import JobQueue
from jupyter_jobs.store import Store

import jobfuncs
import typed_package
from lab_browser import lab_home
from servers import REPO, TESTS_DIR, RunningServer, ServerFactory, poll, submit_body

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser, page = test_sidebar.browser, test_sidebar.page


@pytest.fixture
def lab(jupyter_server_factory: ServerFactory, tmp_path: Path) -> RunningServer:
    """`jupyter lab` with the repository's build, and the test package's job types."""
    site = typed_package.install(tmp_path)
    home = lab_home(tmp_path / "home")
    path = [str(site), str(REPO), str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]
    env = {"PYTHONPATH": os.pathsep.join(p for p in path if p)}
    return jupyter_server_factory(home, app="lab", config=CONFIG, env=env)


def test_a_typed_job_starts_from_a_form_made_from_its_schema_and_shows_its_summary(
    page: Page, lab: RunningServer
) -> None:
    open_lab(page, lab)
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-jobs-panel"]').click()
    page.locator("#jupyter-jobs-panel").get_by_role("button", name="Start a job").click()
    dialog = page.locator(".jp-JobsTypeDialog")
    expect(dialog).to_be_visible()
    # The installed types, the one that cannot be imported offered but disabled.
    select = dialog.locator('select[name="type"]')
    expect(select.locator("option", has_text="train")).to_have_count(1, timeout=UI_TIMEOUT)
    assert select.locator("option", has_text="broken").is_disabled()
    select.select_option("train")
    expect(dialog.locator(".jp-JobsTypeForm-description")).to_have_text("Train a model.")

    # The fields come from the schema, with its defaults; a value out of range is refused
    # by its field before anything is sent.
    epochs = dialog.locator("#jp-JobsTypeForm_epochs")
    expect(epochs).to_have_value("3")
    epochs.fill("500")
    dialog.locator(".jp-JobsTypeForm-submit").click()
    expect(dialog.locator('[role="alert"]')).to_contain_text("Check the parameters")
    expect(dialog).to_contain_text("must be <= 50")
    assert lab.api("GET", "jobs/api/jobs").json()["jobs"] == []

    epochs.fill("4")
    dialog.locator("#jp-JobsTypeForm_model").select_option("tree")
    dialog.locator('input[name="name"]').fill("nightly training")
    dialog.locator(".jp-JobsTypeForm-submit").click()
    expect(dialog).to_have_count(0, timeout=UI_TIMEOUT)

    jobs = poll(lambda: lab.api("GET", "jobs/api/jobs").json()["jobs"], 30, "the typed job")
    (job,) = jobs
    assert (job["kind"], job["type"], job["name"]) == ("typed", "train", "nightly training")
    assert job["parameters"] == {"epochs": 4, "model": "tree", "lr": 0.1}
    detail = page.locator(f"#jupyter-jobs-detail-{job['id']}")
    expect(detail.locator(".jp-JobDetail-status")).to_contain_text("succeeded", timeout=60_000)
    expect(detail.locator(".jp-JobDetail-type")).to_have_text("train")
    expect(detail.locator(".jp-JobDetail-parameters")).to_contain_text('"model":"tree"')
    summary = detail.locator(".jp-JobDetail-summaryView")
    expect(summary.locator("dt")).to_have_text(["accuracy", "epochs"], timeout=UI_TIMEOUT)
    expect(summary.locator("dd")).to_have_text(["0.8", "4"])
    expect(detail.locator(".jp-JobDetail-log")).to_contain_text("trained a tree model")


def test_the_panel_lists_one_job_types_jobs_and_names_a_typed_schedules_target(
    page: Page, lab: RunningServer
) -> None:
    def submit(body: dict) -> int:
        response = lab.api("POST", "jobs/api/jobs", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    held = {"hold": True}
    train = submit({"type": "train", "parameters": {"epochs": 1}, "spec": held})
    submit({"type": "explain", "parameters": {}, "spec": held})
    submit(submit_body(jobfuncs.add, 1, 2, hold=True))
    schedule = {"target": {"kind": "typed", "type": "train", "parameters": {"epochs": 2}},
                "every": 3600, "job": {"channel": "nightly"}}  # fmt: skip
    assert lab.api("POST", "jobs/api/schedules", json=schedule).status_code == 201

    open_lab(page, lab)
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-jobs-panel"]').click()
    panel = page.locator("#jupyter-jobs-panel")
    rows = panel.locator(".jp-JobsPanel-row")
    expect(rows).to_have_count(3, timeout=UI_TIMEOUT)
    select = panel.get_by_label("Filter by job type")
    expect(select.locator("option", has_text="train")).to_have_count(1, timeout=UI_TIMEOUT)
    select.select_option("train")
    expect(rows).to_have_count(1, timeout=UI_TIMEOUT)
    expect(rows.first).to_contain_text("train")
    pending = panel.locator('.jp-JobsPanel-chip[data-status="pending"]')
    expect(pending).to_have_attribute("aria-label", "pending: 1", timeout=UI_TIMEOUT)
    # new jobs come through the events, which carry the type: only the chosen type's show
    other = submit({"type": "explain", "parameters": {}, "spec": held})
    later = submit({"type": "train", "parameters": {"epochs": 1}, "spec": held})
    expect(rows).to_have_count(2, timeout=UI_TIMEOUT)
    expect(panel.locator(f'.jp-JobsPanel-row[data-job-id="{later}"]')).to_have_count(1)
    expect(panel.locator(f'.jp-JobsPanel-row[data-job-id="{other}"]')).to_have_count(0)
    expect(pending).to_have_attribute("aria-label", "pending: 2", timeout=UI_TIMEOUT)
    select.select_option("")
    expect(rows).to_have_count(5, timeout=UI_TIMEOUT)
    expect(panel.locator(f'.jp-JobsPanel-row[data-job-id="{train}"]')).to_have_count(1)

    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-jobs-schedules"]').click()
    item = page.locator("#jupyter-jobs-schedules .jp-JobsSchedules-item")
    expect(item).to_contain_text("job type train", timeout=UI_TIMEOUT)
    expect(item.locator(".jp-JobsSchedules-edit")).to_have_count(1)  # the dialog edits it


def register_stamped(lab: RunningServer, maximum: int) -> None:
    """Register `jobfuncs.stamped` as the job type "stamped" in the server's database, as a
    script does (`JobQueue.register_type`): its schema declares `scheduled_time`."""
    schema = {
        "type": "object",
        "properties": {
            "region": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": maximum, "default": 3},
            "scheduled_time": {"type": "string"},
        },
        "required": ["region", "scheduled_time"],
        "additionalProperties": False,
    }
    with JobQueue(lab.home.db_path) as queue:
        queue.register_type(jobfuncs.stamped, "stamped", schema=schema)


def test_a_typed_schedule_is_made_from_the_schedules_view_and_its_runs_get_their_time(
    page: Page, lab: RunningServer
) -> None:
    register_stamped(lab, maximum=10)
    open_lab(page, lab)
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-jobs-schedules"]').click()
    view = page.locator("#jupyter-jobs-schedules")
    view.get_by_role("button", name="New schedule…").click()
    dialog = page.locator(".jp-JobsRunDialog")
    expect(dialog).to_be_visible()
    # No notebook is open: the job type is the target, the notebook cannot be chosen.
    typed = dialog.locator('input[name="target"][value="typed"]')
    expect(typed).to_be_checked(timeout=UI_TIMEOUT)
    expect(dialog.locator('input[name="target"][value="notebook"]')).to_be_disabled()
    expect(dialog.get_by_label("On a schedule")).to_be_checked()
    dialog.locator('select[name="type"]').select_option("stamped")

    # The form of its schema: the required parameter marked, the default filled in, a number
    # input for the integer; scheduled_time is each run's, not asked for.
    fields = dialog.locator(".jp-JobsRunForm-typed")
    expect(fields.locator(".jp-FormGroup-fieldLabel")).to_have_text(["region *", "days"])
    region, days = (
        fields.locator("#jp-JobsRunForm-type_region"),
        fields.locator("#jp-JobsRunForm-type_days"),
    )
    expect(days).to_have_value("3")
    assert days.get_attribute("type") == "number"
    expect(fields.locator("#jp-JobsRunForm-type_scheduled_time")).to_have_count(0)
    expect(fields).to_contain_text("scheduled_time: each run receives its own time")

    # A value out of range is marked by its field before anything is sent.
    region.fill("EU")
    days.fill("50")
    submit = dialog.locator(".jp-JobsRunForm-submit")
    submit.click()
    expect(fields).to_contain_text("must be <= 10", timeout=UI_TIMEOUT)
    assert lab.api("GET", "jobs/api/schedules").json()["schedules"] == []

    # The type is registered again with a stricter schema while the form is open: the server's
    # 400 names the parameter, shown by its field and above the buttons; the dialog stays.
    register_stamped(lab, maximum=5)
    days.fill("7")
    submit.click()
    refusal = dialog.locator('.jp-JobsRunForm-error[data-field="parameters"]')
    expect(refusal).to_contain_text(
        "parameters.days: 7 is greater than the maximum of 5", timeout=UI_TIMEOUT
    )
    its_group = days.locator("xpath=ancestor::div[contains(@class, 'form-group')][1]")
    expect(its_group).to_contain_text("7 is greater than the maximum of 5")
    assert lab.api("GET", "jobs/api/schedules").json()["schedules"] == []

    days.fill("4")
    dialog.locator('input[name="channel"]').fill("stamps")
    submit.click()
    expect(dialog).to_have_count(0, timeout=UI_TIMEOUT)
    item = view.locator(".jp-JobsSchedules-item")
    expect(item).to_contain_text("job type stamped", timeout=UI_TIMEOUT)
    (made,) = lab.api("GET", "jobs/api/schedules").json()["schedules"]
    assert made["target"] == {
        "kind": "typed", "type": "stamped", "parameters": {"region": "EU", "days": 4},
    }  # fmt: skip
    assert made["job"]["channel"] == "stamps" and made["cron"] == "0 8 * * *"
    expect(item).to_contain_text(f"0 8 * * * ({made['timezone']})")

    # Its time comes (the store fires it, as the server's consumer does then): the run is
    # given its scheduled_time, in the schedule's zone, and runs with it.
    with Store(lab.home.db_path) as store:
        (run,) = store.fire_schedules(made["next_run"] + 1)
    when = run.parameters["scheduled_time"]
    assert run.parameters == {"region": "EU", "days": 4, "scheduled_time": when}
    assert datetime.fromisoformat(when).timestamp() == made["next_run"]
    ended = lab.wait_status(run.id, "succeeded", "failed", "cancelled", timeout=120)
    assert ended["status"] == "succeeded", (ended["error"], ended["reason"])
    result = lab.api("GET", f"jobs/api/jobs/{run.id}/result")
    assert result.json() == {"region": "EU", "days": 4, "scheduled_time": when}
