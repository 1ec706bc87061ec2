"""The workers footer of the Jobs panel in a real Chromium against a real `jupyter lab`: the
worker processes are listed with their pid and state, a busy one shows its job on hover and
in its card, and the card's Drain button drains it (its job ends well, then it exits)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import test_sidebar
from playwright.sync_api import Page, expect
from test_sidebar import UI_TIMEOUT, open_lab, open_panel

import jobfuncs
from servers import RunningServer, poll, submit_body

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The sidebar tests' fixtures: Chromium, `jupyter lab` with the repository's build, a page.
browser = test_sidebar.browser
lab = test_sidebar.lab
page = test_sidebar.page


def chip(page: Page, worker_id: str):
    return page.locator(f'.jp-JobsWorkers-chip[data-worker-id="{worker_id}"]')


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_footer_lists_the_workers_and_drains_one(
    page: Page, lab: RunningServer, tmp_path: Path
) -> None:
    open_lab(page, lab)
    open_panel(page)
    footer = page.locator("#jupyter-jobs-panel .jp-JobsWorkers")
    expect(footer).to_be_visible()
    listed = lab.api("GET", "jobs/api/workers").json()["workers"]
    assert listed
    first = listed[0]
    expect(chip(page, first["id"])).to_have_text(str(first["pid"]), timeout=UI_TIMEOUT)
    assert not gone(first["pid"])

    gate = tmp_path / "gate"
    job = lab.api("POST", "jobs/api/jobs", json=submit_body(jobfuncs.wait_for_file, str(gate)))
    job = job.json()

    def running_it() -> list[dict]:
        workers = lab.api("GET", "jobs/api/workers").json()["workers"]
        return [w for w in workers if w["job"] == job["id"]]

    busy = poll(running_it, 60, "a worker runs the job")[0]
    busy_chip = chip(page, busy["id"])
    expect(busy_chip).to_have_attribute("data-state", "busy", timeout=UI_TIMEOUT)
    assert f"job {job['id']}" in busy_chip.get_attribute("title")
    busy_chip.click()
    card = page.locator(f'.jp-JobsWorkers-card[data-worker-id="{busy["id"]}"]')
    expect(card).to_contain_text(str(busy["pid"]))
    expect(card).to_contain_text(f"job {job['id']}")
    card.locator(".jp-JobsWorkers-drain").click()
    expect(busy_chip).to_have_attribute("data-state", "draining", timeout=UI_TIMEOUT)
    expect(card.locator(".jp-JobsWorkers-drain")).to_have_count(0)
    assert not gone(busy["pid"])  # its job still runs
    gate.touch()
    poll(lambda: lab.job(job["id"])["status"] == "succeeded", 60, "the job succeeds")
    poll(lambda: gone(busy["pid"]), 30, "the drained worker exits")
    expect(busy_chip).to_have_count(0, timeout=UI_TIMEOUT)
    expect(page.locator(".jp-JobsWorkers-chip").first).to_be_visible(timeout=UI_TIMEOUT)
