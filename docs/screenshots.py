"""Regenerate the README's screenshots (docs/sidebar.png, docs/detail.png) from a real session.

A real `jupyter lab` (with the repository's build of the extension: `cd labextension && npm run
build` first) runs a small data-science session of cell jobs submitted from one notebook: data
loaded, a model training with progress and logs, a sweep, a report waiting for the training, a
baseline that fails with a real traceback, a cancelled bootstrap. Chromium (Playwright,
/usr/bin/chromium) then takes the sidebar with the notebook open, and the failed job's detail.

    python docs/screenshots.py               # writes docs/sidebar.png and docs/detail.png
    python docs/screenshots.py --out /tmp    # somewhere else

It reuses the integration tests' server harness (tests/integration/servers.py): a private home
in a temporary directory, a free port, a token, the server stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path
from typing import Any

import dill
from playwright.sync_api import Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "integration"), str(REPO / "tests")]

from lab_browser import lab_home, launch_chromium  # noqa: E402
from servers import RunningServer, poll  # noqa: E402

VIEWPORT = {"width": 1400, "height": 900}
CONFIG = {"JobsApp": {"max_workers": 2, "progress_interval": 0.2}}
NOTEBOOK = "churn/resnet.ipynb"
TIMEOUT = 60_000

LOAD_PARQUET = """\
import time
import jupyter_jobs
for part in range(1, 9):
    print(f"events/part-{part:05d}.parquet: 150,541 rows", flush=True)
    jupyter_jobs.progress(part, 8, f"part {part}/8")
    time.sleep(0.2)
print("loaded 1,204,331 rows, 42 columns")
"""

CLEAN_FEATURES = """\
import time
import jupyter_jobs
steps = ["drop duplicates", "impute income", "one-hot plan", "scale numeric"]
for done, step in enumerate(steps, 1):
    print(step, flush=True)
    jupyter_jobs.progress(done, len(steps), step)
    time.sleep(0.3)
"""

FIT_BASELINE = """\
rows = [
    {"customer": "c-1041", "age": 34, "tenure": 18},
    {"customer": "c-1042", "age": None, "tenure": 3},
]
print(f"fitting baseline on {len(rows)} sample rows", flush=True)

def standardize(values):
    mean = sum(values) / len(values)
    return [(v - mean) for v in values]

ages = standardize([row["age"] for row in rows])
"""

TRAIN_RESNET = """\
import math
import time
import jupyter_jobs
epochs = 40
for epoch in range(1, epochs + 1):
    loss = 1.9 * math.exp(-epoch / 9) + 0.21
    accuracy = 0.93 - 0.5 * math.exp(-epoch / 7)
    print(f"epoch {epoch:2d}/{epochs}  loss {loss:.4f}  val_acc {accuracy:.3f}", flush=True)
    jupyter_jobs.progress(epoch, epochs, f"epoch {epoch} · val_acc {accuracy:.3f}")
    time.sleep(1.5)
"""

SWEEP = """\
import time
import jupyter_jobs
grid = [(lr, wd) for lr in (1e-2, 3e-3, 1e-3, 3e-4) for wd in (0.0, 1e-4, 1e-3)]
for done, (lr, wd) in enumerate(grid, 1):
    print(f"lr={lr:g} weight_decay={wd:g}: val_acc {0.80 + done / 100:.3f}", flush=True)
    jupyter_jobs.progress(done, len(grid), f"lr={lr:g}")
    time.sleep(4)
"""

BOOTSTRAP = "import time\ntime.sleep(3600)\n"
REPORT = "print('report written to reports/churn.html')\n"

NOTEBOOK_CELLS = [
    ("markdown", "# Churn model\nEvents from the warehouse, a ResNet on the tabular embedding."),
    ("code", "%load_ext jupyter_jobs"),
    ("code", '%%job --name "load parquet"\n' + LOAD_PARQUET),
    ("code", '%%job --name "train resnet"\n' + TRAIN_RESNET),
]


def create_notebook(server: RunningServer, path: str) -> None:
    """A notebook with a few %%job cells at `path` (relative to the server root)."""
    parent = str(Path(path).parent)
    server.api("PUT", f"api/contents/{parent}", json={"type": "directory"}).raise_for_status()
    cells = [
        {"cell_type": kind, "metadata": {}, "source": source}
        | ({"outputs": [], "execution_count": None} if kind == "code" else {})
        for kind, source in NOTEBOOK_CELLS
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    content = {"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4}
    content["nbformat_minor"] = 4
    body = {"type": "notebook", "content": content}
    server.api("PUT", f"api/contents/{path}", json=body).raise_for_status()


def submit_cell(server: RunningServer, code: str, **spec: Any) -> dict[str, Any]:
    """A cell job as the kernel sends it: the dill of {code, variables, modules}."""
    payload = dill.dumps({"code": code, "variables": {}, "modules": {}})
    body = {"spec": {"kind": "cell", **spec}, "payload": base64.b64encode(payload).decode()}
    response = server.api("POST", "jobs/api/jobs", json=body)
    response.raise_for_status()
    return response.json()


def session(server: RunningServer, owner: str) -> dict[str, dict[str, Any]]:
    """The jobs of the session, by name, in the states the screenshots show."""
    jobs = {}
    for name, code in [("load parquet", LOAD_PARQUET), ("clean features", CLEAN_FEATURES)]:
        jobs[name] = submit_cell(server, code, name=name, owner=owner)
        server.wait_status(jobs[name]["id"], "succeeded")
    jobs["fit baseline"] = submit_cell(server, FIT_BASELINE, name="fit baseline", owner=owner)
    server.wait_status(jobs["fit baseline"]["id"], "failed")
    jobs["bootstrap CIs"] = submit_cell(server, BOOTSTRAP, name="bootstrap CIs", owner=owner)
    server.wait_status(jobs["bootstrap CIs"]["id"], "running")
    server.api("POST", f"jobs/api/jobs/{jobs['bootstrap CIs']['id']}/cancel").raise_for_status()
    server.wait_status(jobs["bootstrap CIs"]["id"], "cancelled")
    train = submit_cell(server, TRAIN_RESNET, name="train resnet", owner=owner)
    jobs["train resnet"] = train
    jobs["hyperparameter sweep"] = submit_cell(
        server, SWEEP, name="hyperparameter sweep", owner=owner
    )
    jobs["export report"] = submit_cell(
        server, REPORT, name="export report", owner=owner, after=[train["id"]]
    )
    return jobs


def shoot(page: Page, server: RunningServer, jobs: dict[str, dict[str, Any]], out: Path) -> None:
    page.goto(f"{server.url}lab/tree/{NOTEBOOK}?token={server.token}")
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=TIMEOUT)
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=TIMEOUT)
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-jobs-panel"]').click()
    panel = page.locator("#jupyter-jobs-panel")
    train = panel.locator(f'.jp-JobsPanel-row[data-job-id="{jobs["train resnet"]["id"]}"]')
    bar = train.locator("[role=progressbar]")
    # Far enough into the training for a bar that says something.
    poll(lambda: int(bar.get_attribute("aria-valuenow") or 0) >= 25, 60, "training at 25%")
    page.mouse.move(700, 450)
    page.screenshot(path=str(out / "sidebar.png"))

    failed = jobs["fit baseline"]["id"]
    panel.locator(f'.jp-JobsPanel-row[data-job-id="{failed}"] .jp-JobsPanel-name').click()
    detail = page.locator(f"#jupyter-jobs-detail-{failed}")
    expect(detail.locator(".jp-JobDetail-traceback")).to_contain_text("TypeError", timeout=TIMEOUT)
    expect(detail.locator(".jp-JobDetail-log")).to_contain_text("fitting baseline")
    page.mouse.move(700, 450)
    page.screenshot(path=str(out / "detail.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where the PNGs go")
    out = parser.parse_args().out
    with tempfile.TemporaryDirectory(prefix="jupyter-jobs-screens-") as tmp:
        home = lab_home(Path(tmp) / "home")
        server = RunningServer(home, "lab", CONFIG).wait_ready()
        try:
            create_notebook(server, NOTEBOOK)
            # Relative, so that the detail view's Owner line does not show the temporary dir.
            jobs = session(server, NOTEBOOK)
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                try:
                    shoot(browser.new_page(viewport=VIEWPORT), server, jobs, out)
                finally:
                    browser.close()
        finally:
            server.close()
    print(f"wrote {out / 'sidebar.png'} and {out / 'detail.png'}")


if __name__ == "__main__":
    main()
