"""Real Jupyter servers for integration tests: `jupyter server` / `jupyter lab` subprocesses.

Each server runs in a private home (temp root dir, data dir, runtime dir, config dir, job
database), as root-safe (`--allow-root`), on a free loopback port, with a known token, and is
stopped at the end of the test (SIGTERM, then SIGKILL after a deadline). The extension is
enabled by the repository's own `jupyter-config/.../jupyter_jobs.json` (the file `pip install`
ships), copied into the home's config dir, and the repository and `tests/` are on the server's
PYTHONPATH, so jobs can run `tests/jobfuncs.py`.

Fixtures (for the server, kernel and labextension tests alike):

    def test_x(jupyter_server):                 # one `jupyter server`, ready
        job = jupyter_server.submit(jobfuncs.add, 2, 3)
        assert jupyter_server.result(job["id"]) == 5

    def test_w(shared_jupyter_server):          # one server for the whole module
        ...

    def test_y(jupyter_lab):                    # the same with `jupyter lab` (the lab UI at /lab)
        page.goto(jupyter_lab.url + "lab?token=" + jupyter_lab.token)

    def test_z(jupyter_server_factory, tmp_path):
        home = JupyterHome.create(tmp_path / "home")
        first = jupyter_server_factory(home, config={"JobsApp": {"max_workers": 1}})
        first.kill()                              # kill -9
        second = jupyter_server_factory(home)     # restarted on the same database

`RunningServer.api(method, path, ...)` sends an authenticated request (path relative to the
server's base URL: "jobs/api/jobs"); `RunningServer.env` is the environment the server runs
with (use it for `jupyter ...` commands that must see the same config and data dirs).
Readiness means the jobs consumer runs (`GET /jobs/api/capabilities` answers 200).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dill
import requests
import websocket

from jupyter_jobs.server.emitter import SCHEMA_ID

from waiting import wait_until

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO / "tests"
ENABLE_FILE = REPO / "jupyter-config" / "jupyter_server_config.d" / "jupyter_jobs.json"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
#: Variables that would point the server at another server's state or credentials.
SCRUBBED_ENV = (
    "JUPYTER_TOKEN",
    "JUPYTER_JOBS_URL",
    "JUPYTER_JOBS_TOKEN",
    "JUPYTER_JOBS_DB",
    "JPY_SESSION_NAME",
    "JUPYTER_SERVER_ROOT",
)
#: Apps the fixture can start, as `python -m <module>`.
APPS = {"server": "jupyter_server", "lab": "jupyterlab", "notebook": "notebook"}


def poll(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """`wait_until` with a description of what is awaited, for clearer failures."""
    return wait_until(predicate, timeout, interval, what=what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterHome:
    """The private directories of one server; reuse it to restart on the same state."""

    root_dir: Path
    data_dir: Path
    runtime_dir: Path
    config_dir: Path
    db_path: Path

    @classmethod
    def create(cls, base: Path) -> JupyterHome:
        home = cls(
            root_dir=base / "root",
            data_dir=base / "data",
            runtime_dir=base / "runtime",
            config_dir=base / "config",
            db_path=base / "db" / "jobs.db",
        )
        for path in (home.root_dir, home.data_dir, home.runtime_dir, home.config_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # What `pip install` puts in {prefix}/etc/jupyter, here in the user's config dir, so
        # that the extension is enabled (and listed) whether or not the package is installed.
        enabled = home.config_dir / "jupyter_server_config.d"
        enabled.mkdir(exist_ok=True)
        shutil.copy(ENABLE_FILE, enabled / ENABLE_FILE.name)
        return home

    def env(self, token: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        pythonpath = [str(REPO), str(TESTS_DIR), env.get("PYTHONPATH", "")]
        env.update(
            JUPYTER_DATA_DIR=str(self.data_dir),
            JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
            JUPYTER_CONFIG_DIR=str(self.config_dir),
            PYTHONPATH=os.pathsep.join(p for p in pythonpath if p),
            JUPYTER_TOKEN=token,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra or {})
        return env


def _default_stop_signals() -> None:
    """In the server process (before exec): SIGHUP and SIGINT not ignored, as in a terminal.

    "Ignore" is inherited through exec: under `nohup`, or in a shell's background job, the
    server would otherwise ignore the very signals the restart tests send it.
    """
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: What the consumer logs when a tick fails (consumer.py).
TICK_FAILED = "consumer tick failed"


class RunningServer:
    """One Jupyter server subprocess and an authenticated HTTP client for it."""

    def __init__(
        self,
        home: JupyterHome,
        app: str = "server",
        config: dict[str, Any] | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        replacing: RunningServer | None = None,
    ) -> None:
        """`replacing`: a stopped server whose address and token this one takes over (the
        same server restarted, as its clients see it)."""
        self.home = home
        self.app = app
        self.token = replacing.token if replacing else secrets.token_hex(16)
        self.port = replacing.port if replacing else free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = home.env(self.token, env)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"
        settings: dict[str, Any] = {"JobsApp": {"db_path": str(home.db_path)}}
        for section, values in (config or {}).items():
            settings.setdefault(section, {}).update(values)
        (home.config_dir / "jupyter_server_config.json").write_text(json.dumps(settings))
        self.log_path = home.root_dir.parent / f"{app}-{self.port}.log"
        self.command = [
            sys.executable,
            "-m",
            APPS[app],
            "--allow-root",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={home.root_dir}",
            "--ServerApp.reraise_server_extension_failures=True",
            *args,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=home.root_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_default_stop_signals,
            )

    # --- life ------------------------------------------------------------------------------

    def wait_ready(self, timeout: float = START_TIMEOUT) -> RunningServer:
        """Until the jobs consumer runs; fails early, with the log, if the server exits."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"jupyter {self.app} exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                return self.api("GET", "jobs/api/capabilities", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        try:
            poll(ready, timeout, f"jupyter {self.app} ready", interval=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- server log ---\n{self.log_text()}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` and wait for the process to exit; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"jupyter {self.app} did not exit within {timeout} s of signal {sig}:\n"
                f"{self.log_text()}"
            ) from None

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.process.kill()
        self.process.wait(30)

    def close(self) -> None:
        """Teardown: stop politely, then by force; never hangs."""
        self.session.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_consumer_never_failed(self) -> None:
        """The consumer retries a failed tick a second later, which hides the failure from a
        test that only waits for its jobs: fixtures check the log for it at teardown."""
        text = self.log_text()
        assert TICK_FAILED not in text, f"the consumer failed a tick:\n{text[-4000:]}"

    # --- HTTP ------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """An authenticated request; `path` is relative to the server's base URL."""
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.url + path.lstrip("/"), **kwargs)

    def job(self, job_id: int) -> dict[str, Any]:
        response = self.api("GET", f"jobs/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def submit(self, fn: Callable[..., Any], *args: Any, **spec: Any) -> dict[str, Any]:
        """Submit `fn(*args)` as a function job (JSON form); `spec` holds JobSpec fields."""
        response = self.api("POST", "jobs/api/jobs", json=submit_body(fn, *args, **spec))
        assert response.status_code == 201, response.text
        return response.json()

    def result(self, job_id: int, timeout: float = 60.0) -> Any:
        """The job's result, unpickled here (the test is the client), after a long poll."""
        response = self.api("GET", f"jobs/api/jobs/{job_id}/result", params={"wait": timeout})
        assert response.status_code == 200, (response.status_code, response.text)
        return dill.loads(response.content)

    def wait_status(self, job_id: int, *statuses: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the job is in one of `statuses`; returns the job."""
        return poll(
            lambda: (job := self.job(job_id))["status"] in statuses and job,
            timeout,
            f"job {job_id} {'/'.join(statuses)}",
        )


def submit_body(fn: Callable[..., Any], *args: Any, **spec: Any) -> dict[str, Any]:
    """The JSON body of a function submit, built with the package's own payload maker."""
    from jupyter_jobs.payload import function_payload

    spec.setdefault("name", getattr(fn, "__name__", "job"))
    payload = function_payload(fn, args)
    return {"spec": spec, "payload": base64.b64encode(payload).decode()}


ServerFactory = Callable[..., RunningServer]


TEST_CONFIG = {"JobsApp": {"max_workers": 2, "progress_interval": 0.2, "kill_grace": 2.0}}


def execute_notebook(server: RunningServer, nb: Any, cwd: Path) -> None:
    """Run `nb` in place with nbclient in a python3 kernel started in `cwd`, given the server's
    URL and token as a kernel that server launched would be."""
    from nbclient import NotebookClient

    env = dict(server.env, JUPYTER_JOBS_URL=server.url, JUPYTER_JOBS_TOKEN=server.token)
    client = NotebookClient(
        nb,
        timeout=180,
        startup_timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=env)


def entries(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The job entries of one event off the websocket (none when it is another schema's)."""
    return event["jobs"] if event.get("schema_id") == SCHEMA_ID else []


def job_events(server: RunningServer, job_id_of: Callable[[], int]) -> list[dict[str, Any]]:
    """Subscribe to the server's events, run `job_id_of()` (which submits a job), and collect
    that job's jupyter_jobs events until it has finished."""
    ws = websocket.create_connection(
        server.url.replace("http", "ws", 1) + "api/events/subscribe",
        header=[f"Authorization: token {server.token}"],
        timeout=60,
    )
    events: list[dict[str, Any]] = []
    try:
        job_id = job_id_of()
        deadline = time.monotonic() + 120
        while not events or events[-1]["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, events
            events += [e for e in entries(json.loads(ws.recv())) if e["id"] == job_id]
    finally:
        ws.close()
    return events
