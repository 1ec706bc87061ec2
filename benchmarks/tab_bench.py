"""What an open JupyterLab tab costs the queue: drain no-op jobs with nobody listening to the
server's events, with one raw events websocket, and with a real JupyterLab tab (Chromium) with
the Jobs panel open, and how far the sidebar lags behind the last job.

Run on demand (not a test): `python benchmarks/tab_bench.py [--jobs 5000] [--rounds 1]
[--main /work/main]`. With `--main`, the same run measures that checkout too (its code on the
server's PYTHONPATH, its built extension in the tab) for a side-by-side table.

- Each row starts a fresh `jupyter lab` (2 workers) on an empty store, subscribes (or not),
  submits the jobs in batches of 500, and waits until all succeeded.
- jobs/s: jobs / (last `finished_at` - first submit), from the store file. "ratio" is the row's
  jobs/s over the no-subscriber row of the same code (goal: >= 0.8 with a tab open).
- lag: from the last job's `finished_at` until the subscriber saw it succeed: the websocket's
  entry for it, or the panel's row for it showing "succeeded" (checked every 50 ms in the page).
  Goal: <= 0.5 s.
- long tasks: the tab's tasks over 50 ms from the panel's opening to the end (count, longest).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[0:0] = [str(REPO / "tests" / "integration"), str(REPO / "tests")]

import websocket  # noqa: E402

import jobfuncs  # noqa: E402
from lab_browser import lab_home, launch_chromium  # noqa: E402
from servers import RunningServer, submit_body  # noqa: E402

WORKERS = 2
BATCH = 500
SCHEMA_ID = "https://events.jupyter.org/jupyter_jobs/job"


class Code:
    """A checkout to measure: its package and tests on the server's path, its built extension."""

    def __init__(self, label: str, root: Path) -> None:
        self.label = label
        self.root = root

    def lab(self, base: Path) -> RunningServer:
        home = lab_home(base, self.root / "jupyter_jobs" / "labextension")
        path = f"{self.root}:{self.root / 'tests'}"
        server = RunningServer(
            home, "lab", {"JobsApp": {"max_workers": WORKERS}}, env={"PYTHONPATH": path}
        )
        return server.wait_ready()


class SocketWatcher:
    """One raw events websocket, read in a thread; notes when a job's entry says it ended."""

    def __init__(self, server: RunningServer) -> None:
        self._ws = websocket.create_connection(
            server.url.replace("http", "ws", 1) + "api/events/subscribe",
            header=[f"Authorization: token {server.token}"],
            timeout=300,
        )
        self.ended: dict[int, float] = {}
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                event = json.loads(self._ws.recv())
                if event.get("schema_id") != SCHEMA_ID:
                    continue
                now = time.time()
                # Version 2 carries a list of entries; version 1 (main before it) one change.
                for entry in event.get("jobs", [event]):
                    if entry["status"] == "succeeded":
                        self.ended.setdefault(entry["id"], now)

    def seen(self, job_id: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while job_id not in self.ended:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} never seen ended on the socket")
            time.sleep(0.01)
        return self.ended[job_id]

    def close(self) -> None:
        self._ws.close()


class TabWatcher:
    """A JupyterLab tab in Chromium with the Jobs panel open."""

    def __init__(self, playwright: Any, server: RunningServer) -> None:
        from playwright.sync_api import expect

        self._browser = launch_chromium(playwright)
        self.page = self._browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.goto(f"{server.url}lab?token={server.token}")
        expect(self.page.locator("#jupyterlab-splash")).to_have_count(0, timeout=120_000)
        tab = '.jp-SideBar .lm-TabBar-tab[data-id="jupyter-jobs-panel"]'
        self.page.locator(tab).click()
        expect(self.page.locator("#jupyter-jobs-panel")).to_be_visible()
        self.page.evaluate(WATCH_JS)

    def seen(self, job_id: int, timeout: float) -> float:
        self.page.wait_for_function(
            f"() => window.__jobsEnded && window.__jobsEnded[{job_id}]", timeout=timeout * 1000
        )
        return self.page.evaluate(f"window.__jobsEnded[{job_id}]") / 1000

    def long_tasks(self) -> list[float]:
        """The durations of the page's long tasks so far, in ms."""
        return self.page.evaluate("window.__longTasks")

    def close(self) -> None:
        self._browser.close()


#: In the page: every 50 ms, note when a row shows a job as succeeded (Date.now(), ms); and
#: the page's long tasks (over 50 ms: the page stutters), from the panel's opening on.
WATCH_JS = """() => {
  window.__jobsEnded = {};
  window.__longTasks = [];
  new PerformanceObserver(list => {
    for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
  }).observe({ type: 'longtask' });
  setInterval(() => {
    const now = Date.now();
    for (const el of document.querySelectorAll(
        '#jupyter-jobs-panel .jp-JobsPanel-row[data-status="succeeded"]')) {
      const id = el.getAttribute('data-job-id');
      if (!(id in window.__jobsEnded)) window.__jobsEnded[id] = now;
    }
  }, 50);
}"""


def drain(server: RunningServer, n: int) -> tuple[float, int, float]:
    """Submit `n` no-op jobs; returns (first submit time, last job id, last finished_at)."""
    item = submit_body(jobfuncs.noop)
    started = time.time()
    last_id = 0
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        response = server.api("POST", "jobs/api/jobs/batch", json={"items": [item] * count})
        assert response.status_code == 201, response.text
        last_id = response.json()["jobs"][-1]["id"]
    deadline = time.monotonic() + 600
    while True:
        stats = server.api("GET", "jobs/api/stats").json()
        if stats["counts"].get("succeeded", 0) >= n:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"drain not done: {stats['counts']}")
        time.sleep(0.05)
    with contextlib.closing(sqlite3.connect(f"file:{server.home.db_path}?mode=ro", uri=True)) as db:
        (finished,) = db.execute("SELECT MAX(finished_at) FROM jobs").fetchone()
    return started, last_id, finished


def measure(code: Code, mode: str, n: int, tmp: Path, playwright: Any) -> dict[str, Any]:
    server = code.lab(tmp / f"{code.label}-{mode}-{time.monotonic_ns()}")
    watcher: SocketWatcher | TabWatcher | None = None
    try:
        if mode == "socket":
            watcher = SocketWatcher(server)
        elif mode == "tab":
            watcher = TabWatcher(playwright, server)
        started, last_id, finished = drain(server, n)
        row: dict[str, Any] = {"code": code.label, "mode": mode, "rate": n / (finished - started)}
        if watcher is not None:
            last_finished = job_finished(server, last_id)
            row["lag"] = watcher.seen(last_id, 120) - last_finished
        if isinstance(watcher, TabWatcher):
            row["long"] = watcher.long_tasks()
        return row
    finally:
        if watcher is not None:
            watcher.close()
        server.close()


def job_finished(server: RunningServer, job_id: int) -> float:
    return server.job(job_id)["finished_at"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--main", type=Path, help="another checkout to measure beside this one")
    parser.add_argument("--modes", default="none,socket,tab")
    args = parser.parse_args()
    codes = [Code("this", REPO)]
    if args.main:
        codes.append(Code("main", args.main.resolve()))
    modes = args.modes.split(",")
    from playwright.sync_api import sync_playwright

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        for _ in range(args.rounds):
            for code in codes:
                for mode in modes:
                    row = measure(code, mode, args.jobs, Path(tmp), playwright)
                    rows.append(row)
                    lag = f"  lag {row['lag']:.2f} s" if "lag" in row else ""
                    print(f"{code.label:5} {mode:7} {row['rate']:8.0f} jobs/s{lag}", flush=True)
                    if "long" in row:
                        print(f"      long tasks (ms): {sorted(row['long'])[-10:]}", flush=True)
    print(f"\n{args.jobs} no-op jobs, {WORKERS} workers, best of {args.rounds} round(s)")
    print(
        f"{'code':5} {'subscriber':10} {'jobs/s':>8} {'ratio':>6} {'lag (s)':>8} {'long tasks':>10}"
    )
    for code in codes:
        best = {
            mode: max(
                (r for r in rows if r["code"] == code.label and r["mode"] == mode),
                key=lambda r: r["rate"],
            )
            for mode in modes
        }
        base = best["none"]["rate"] if "none" in best else None
        for mode, row in best.items():
            ratio = f"{row['rate'] / base:6.2f}" if base else "     -"
            lag = f"{row['lag']:8.2f}" if "lag" in row else "       -"
            long = (
                f"{len(row['long'])}, max {max(row['long'], default=0):.0f} ms"
                if "long" in row
                else "-"
            )
            print(f"{code.label:5} {mode:10} {row['rate']:8.0f} {ratio} {lag} {long:>10}")


if __name__ == "__main__":
    main()
