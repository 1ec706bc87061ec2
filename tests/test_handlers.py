"""The REST handlers in an in-process Jupyter server (pytest-jupyter), with a real store file,
the real consumer and real worker processes.

pytest-jupyter's fixtures are imported into this module only (not registered as a plugin), so
its autouse fixtures (event loop, server cleanup) touch no other test. Tests are synchronous:
`Api.call` runs the server's loop until the request completes, which is also when the consumer
gets to run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dill
import pytest
from jupyter_server.auth import Authorizer, IdentityProvider
from jupyter_server.auth.identity import PasswordIdentityProvider
from pytest_jupyter.jupyter_server import *  # noqa: F403 (fixtures, for this module only)
from tornado.httpclient import HTTPResponse
from traitlets import TraitError
from traitlets.config import Config

from jupyter_jobs import buffers, oslayer
from jupyter_jobs import payload as payloads
from jupyter_jobs.executors.local import LocalExecutor
from jupyter_jobs.models import JobSpec, Kind
from jupyter_jobs.payload import cell_payload, function_payload
from jupyter_jobs.server import parsing
from jupyter_jobs.server.access import identifies_users
from jupyter_jobs.server.app import TOKEN_ENV, URL_ENV, JobsApp, resolve_executor
from jupyter_jobs.server.channel_handlers import NAME
from jupyter_jobs.server.emitter import SCHEMA_ID
from jupyter_jobs.server.function_handlers import SHA256
from jupyter_jobs.server.handlers import ID, ROUTES
from jupyter_jobs.server.schedule_handlers import SID
from jupyter_jobs.server.type_handlers import TYPE
from jupyter_jobs.server.worker_handlers import WORKER_ID
from jupyter_jobs.store import Store

import jobfuncs
import workers_util as wu

MAX_PAYLOAD = 4096
BASE = "/a%40b/"  # pytest-jupyter's base_url: proves routes honour base_url


class DenyJobs(Authorizer):
    """An authorizer that lets a user do anything but touch resource "jobs"."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return resource != "jobs"


@pytest.fixture
def authorizer_class() -> type[Authorizer] | None:
    return None


@pytest.fixture
def jp_server_config(tmp_path: Path, authorizer_class: type[Authorizer] | None) -> Config:
    config: dict[str, Any] = {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_jobs": True},
            "reraise_server_extension_failures": True,
        },
        "JobsApp": {
            "db_path": str(tmp_path / "jobsdb" / "jobs.db"),
            "max_workers": 1,
            "max_payload_size": MAX_PAYLOAD,
            "progress_interval": 0.1,
            "kill_grace": 1.0,
        },
    }
    if authorizer_class is not None:
        config["ServerApp"]["authorizer_class"] = authorizer_class
    return Config(config)


class Api:
    """Synchronous access to the in-process server: each call runs the loop until it is done."""

    def __init__(self, serverapp: Any, fetch: Any, ws_fetch: Any, loop: Any) -> None:
        self.serverapp = serverapp
        self.fetch = fetch
        self.ws_fetch = ws_fetch
        self.loop = loop

    @property
    def app(self) -> JobsApp:
        (app,) = self.serverapp.extension_manager.extension_apps["jupyter_jobs"]
        return app

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | None = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> HTTPResponse:
        if isinstance(body, dict):
            body = json.dumps(body)
        if body is None and method in ("POST", "PUT"):
            body = b""
        headers = dict(headers or {})
        if not auth:
            headers["Authorization"] = ""
        return self.run(
            self.fetch(
                path, method=method, body=body, params=params, headers=headers, raise_error=False
            )
        )

    def json(self, method: str, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
        response = self.call(method, path, body, **kw)
        assert response.code == status, (response.code, response.body[:2000])
        return json.loads(response.body) if response.body else None

    def error(self, method: str, path: str, body: Any = None, status: int = 400, **kw: Any) -> Any:
        """Assert an error status with the JSON error shape; returns the body."""
        response = self.call(method, path, body, **kw)
        assert response.code == status, (response.code, response.body[:2000])
        data = json.loads(response.body)
        assert set(data) == {"message", "reason", "type", "detail"}, data
        assert data["message"] and data["reason"], data
        return data

    def submit(self, fn: Any = jobfuncs.noop, *args: Any, status: int = 201, **spec: Any) -> Any:
        payload = base64.b64encode(function_payload(fn, args)).decode()
        return self.json("POST", "jobs/api/jobs", {"spec": spec, "payload": payload}, status)

    def wait(self, job_id: int, *statuses: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll the job (letting the loop run between polls) until it is in one of `statuses`."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.json("GET", f"jobs/api/jobs/{job_id}")
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, f"job {job_id} not {statuses}: {job}"
            self.run(asyncio.sleep(0.05))


@pytest.fixture
def unstarted_api(
    jp_serverapp: Any,
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_asyncio_loop: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Api:
    """The server with jupyter_jobs loaded, before the extension's start hook ran."""
    # The extension exports these into os.environ: restore them after the test.
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return Api(jp_serverapp, jp_fetch, jp_ws_fetch, jp_asyncio_loop)


@pytest.fixture
def api(unstarted_api: Api) -> Api:
    """The server with jupyter_jobs loaded and started (the consumer runs)."""
    unstarted_api.run(unstarted_api.serverapp.extension_manager.start_extension("jupyter_jobs"))
    return unstarted_api


def route_requests() -> list[tuple[str, str]]:
    """(method, path) for every method of every registered route, ids filled in."""
    out = []
    for pattern, handler in ROUTES:
        path = pattern.replace(ID, "1").replace(SID, "1").replace(TYPE, "t").replace(NAME, "c")
        path = path.replace(WORKER_ID, "w").replace(SHA256, "0" * 64).lstrip("/")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            if method.lower() in vars(handler):
                out.append((method, path))
    return out


def body_for(method: str) -> dict[str, Any] | None:
    return {} if method in ("POST", "PUT", "PATCH") else None


# --- authentication and authorization ---------------------------------------------------------


def test_route_requests_cover_every_route() -> None:
    requests = route_requests()
    assert len(requests) == 37
    assert {p for _, p in requests} == {
        p.replace(ID, "1")
        .replace(SID, "1")
        .replace(TYPE, "t")
        .replace(NAME, "c")
        .replace(WORKER_ID, "w")
        .replace(SHA256, "0" * 64)
        .lstrip("/")
        for p, _ in ROUTES
    }


@pytest.mark.parametrize(("method", "path"), route_requests())
def test_every_route_refuses_unauthenticated_requests(api: Api, method: str, path: str) -> None:
    data = api.error(method, path, body_for(method), status=401, auth=False)
    assert data["type"] == "HTTPError"
    assert "Authorization: token" in data["message"]
    # Also with an id that is not even valid: authentication comes before parsing.
    bad = path.replace("jobs/1", "jobs/not-an-id")
    api.error(method, bad, body_for(method), status=401, auth=False)


def test_a_cookie_request_without_its_xsrf_token_is_403(api: Api) -> None:
    # A browser's session cookie alone must not be enough (cross-site request forgery).
    login = api.call("GET", "jobs/api/stats")
    assert login.code == 200
    cookies = "; ".join(c.split(";")[0] for c in login.headers.get_list("Set-Cookie"))
    assert cookies, login.headers
    response = api.call("POST", "jobs/api/jobs/clear", headers={"Cookie": cookies}, auth=False)
    assert response.code == 403, response.body
    assert "_xsrf" in json.loads(response.body)["message"]


def test_a_method_a_route_lacks_is_405_with_allow(api: Api) -> None:
    response = api.call("PUT", "jobs/api/jobs/1", b"{}")
    assert response.code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "DELETE", "OPTIONS"}
    assert json.loads(response.body)["reason"] == "Method Not Allowed"


@pytest.mark.parametrize("authorizer_class", [DenyJobs])
@pytest.mark.parametrize(("method", "path"), route_requests())
def test_every_route_is_authorized_for_resource_jobs(api: Api, method: str, path: str) -> None:
    api.error(method, path, body_for(method), status=403)
    # The same user may use the rest of the server: the refusal is about resource "jobs".
    assert api.call("GET", "api/status").code == 200


# --- submit ------------------------------------------------------------------------------------


def test_submit_json_creates_a_queued_job(api: Api) -> None:
    job = api.submit(jobfuncs.add, 2, 3, name="adder", owner="nb.ipynb", priority=3)
    assert job["name"] == "adder"
    assert job["owner"] == "nb.ipynb"
    assert job["priority"] == 3
    assert job["kind"] == "function"
    assert job["status"] in ("queued", "running")
    assert api.json("GET", f"jobs/api/jobs/{job['id']}")["id"] == job["id"]


def test_submit_with_a_seen_idempotency_key_returns_the_same_job(api: Api) -> None:
    first = api.submit(jobfuncs.noop, idempotency_key="k-1", hold=True)
    again = api.submit(jobfuncs.noop, idempotency_key="k-1", hold=True, status=200)
    assert again["id"] == first["id"]
    other = api.submit(jobfuncs.noop, idempotency_key="k-2", hold=True)
    assert other["id"] != first["id"]


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body from (name, filename or None, bytes) parts."""
    boundary = "----jobs-test-boundary"
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_submit_multipart_runs_and_returns_the_result(api: Api) -> None:
    payload = function_payload(jobfuncs.add, (40, 2))
    spec = json.dumps({"name": "mp", "owner": "o"}).encode()
    body, content_type = multipart([("spec", None, spec), ("payload", "payload.bin", payload)])
    response = api.call("POST", "jobs/api/jobs", body, headers={"Content-Type": content_type})
    assert response.code == 201, response.body
    job = json.loads(response.body)
    assert job["name"] == "mp"
    assert job["payload_size"] == len(payload)
    result = api.call("GET", f"jobs/api/jobs/{job['id']}/result", params={"wait": 60})
    assert result.code == 200
    assert result.headers["Content-Type"] == "application/octet-stream"
    assert dill.loads(result.body) == 42
    # the payload arrived into a file (bodies.py), small enough to be read into its row
    assert list(api.app.store.incoming().iterdir()) == []


def test_a_result_with_a_big_array_is_served_framed_as_octet_stream(api: Api) -> None:
    """The worker frames a big array beside its pickle (buffers.py): the server, which never
    unpickles, tells it from JSON by its first bytes and serves it whole."""
    size = 4 * buffers.THRESHOLD
    payload = function_payload(jobfuncs.big_array, (size,))
    spec = json.dumps({"name": "framed", "owner": "o"}).encode()
    body, content_type = multipart([("spec", None, spec), ("payload", "payload.bin", payload)])
    response = api.call("POST", "jobs/api/jobs", body, headers={"Content-Type": content_type})
    assert response.code == 201, response.body
    job = json.loads(response.body)
    result = api.call("GET", f"jobs/api/jobs/{job['id']}/result", params={"wait": 60})
    assert result.code == 200
    assert result.headers["Content-Type"] == "application/octet-stream"
    assert buffers.is_framed(result.body)
    value = payloads.loads(result.body)
    assert value.nbytes == size and int(value[-1]) == (size - 1) % 256


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "not valid JSON"),
        (json.dumps({"spec": {}, "payload": "", "extra": 1}), "unknown field(s): extra"),
        (json.dumps({"payload": ""}), "missing field 'spec'"),
        (json.dumps({"spec": {}}), "missing field 'payload'"),
        (json.dumps({"spec": [], "payload": ""}), "spec must be a JSON object"),
        (json.dumps({"spec": {"colour": "red"}, "payload": ""}), "colour"),
        (json.dumps({"spec": {"priority": "high"}, "payload": ""}), "priority"),
        (json.dumps({"spec": {"priority": 2**70}, "payload": ""}), "priority must be between"),
        (json.dumps({"spec": {"retries": -1}, "payload": ""}), "retries"),
        (json.dumps({"spec": {"timeout": 0}, "payload": ""}), "timeout"),
        (json.dumps({"spec": {"kind": "shell"}, "payload": ""}), "kind"),
        (json.dumps({"spec": {"after": [0]}, "payload": ""}), "after must list job ids"),
        (json.dumps({"spec": {"after": [2**64]}, "payload": ""}), "after must list job ids"),
        (json.dumps({"spec": {"name": "x" * 501}, "payload": ""}), "name"),
        (b'{"spec": {"name": "\\ud800"}, "payload": ""}', "not valid Unicode"),
        (b'{"spec": {"timeout": NaN}, "payload": ""}', "NaN"),
        (b'{"spec": {"timeout": 1e999}, "payload": ""}', "timeout must be a number of seconds"),
        (b'{"spec": {"retry_delay": -1e999}, "payload": ""}', "retry_delay must be"),
        (b'{"spec": {"run_at": 1e300}, "payload": ""}', "run_at must be a time"),
        (b'{"spec": {"expires_at": -Infinity}, "payload": ""}', "-Infinity"),
        (json.dumps({"spec": {}, "payload": "!!!not base64"}), "not valid base64"),
        (json.dumps({"spec": {}, "payload": 12}), "payload must be a base64 string"),
    ],
)
def test_submit_bad_input_is_a_400_naming_the_problem(api: Api, body: Any, message: str) -> None:
    data = api.error("POST", "jobs/api/jobs", body, status=400)
    assert message in data["message"]
    assert data["type"] == "InvalidRequest"


def test_a_whole_number_written_as_a_float_is_an_integer(api: Api) -> None:
    # JSON has one number type, and JSON Schema counts 3.0 as an integer.
    body = {"spec": {"priority": 3.0, "retries": 2.0, "hold": True}, "payload": ""}
    job = api.json("POST", "jobs/api/jobs", body, 201)
    assert (job["priority"], job["retries"]) == (3, 2)
    body["spec"] = {"after": [float(job["id"])], "hold": True}
    assert api.json("POST", "jobs/api/jobs", body, 201)["after"] == [job["id"]]
    body["spec"] = {"priority": 3.5}
    assert "priority must be int" in api.error("POST", "jobs/api/jobs", body)["message"]


def test_submit_after_a_missing_job_is_a_404(api: Api) -> None:
    payload = base64.b64encode(b"x").decode()
    data = api.error("POST", "jobs/api/jobs", {"spec": {"after": [999]}, "payload": payload}, 404)
    assert data["type"] == "JobNotFound"


def test_payload_over_the_limit_is_a_413(api: Api) -> None:
    big = base64.b64encode(b"x" * (MAX_PAYLOAD + 1)).decode()
    data = api.error("POST", "jobs/api/jobs", {"spec": {}, "payload": big}, status=413)
    assert data["detail"]["max_payload_size"] == MAX_PAYLOAD
    body, content_type = multipart(
        [("spec", None, b"{}"), ("payload", "p", b"x" * (MAX_PAYLOAD + 1))]
    )
    api.error("POST", "jobs/api/jobs", body, 413, headers={"Content-Type": content_type})
    assert list(api.app.store.incoming().iterdir()) == []  # what arrived of it is gone
    exact = base64.b64encode(b"x" * MAX_PAYLOAD).decode()
    assert api.call("POST", "jobs/api/jobs", {"spec": {"hold": True}, "payload": exact}).code == 201


def test_multipart_bad_parts_are_400(api: Api) -> None:
    headers = {}
    for parts, message in [
        ([("payload", "p", b"x")], "exactly one 'spec'"),
        ([("spec", None, b"{}")], "exactly one 'payload'"),
        ([("spec", None, b"{oops"), ("payload", "p", b"x")], "spec part is not valid JSON"),
        ([("spec", None, b"{}"), ("payload", "p", b"x"), ("more", None, b"1")], "more"),
    ]:
        body, headers["Content-Type"] = multipart(parts)
        assert message in api.error("POST", "jobs/api/jobs", body, 400, headers=headers)["message"]
    body, headers["Content-Type"] = multipart([("spec", None, b"{}"), ("payload", "p", b"x")])
    cut = api.error("POST", "jobs/api/jobs", body[:-10], 400, headers=headers)["message"]
    assert cut == "multipart body ends before its closing boundary"
    assert list(api.app.store.incoming().iterdir()) == []


def test_batch_submits_all_in_order_or_none(api: Api) -> None:
    def item(n: int) -> dict[str, Any]:
        payload = base64.b64encode(function_payload(jobfuncs.add, (n, 1))).decode()
        return {"spec": {"name": f"b{n}", "hold": True}, "payload": payload}

    jobs = api.json("POST", "jobs/api/jobs/batch", {"items": [item(i) for i in range(5)]}, 201)
    assert [j["name"] for j in jobs["jobs"]] == [f"b{i}" for i in range(5)]
    assert [j["id"] for j in jobs["jobs"]] == sorted(j["id"] for j in jobs["jobs"])
    before = api.json("GET", "jobs/api/stats")["counts"]["pending"]
    nan = {"spec": {"retry_delay": float("nan")}, "payload": ""}
    bad = {"items": [item(10), {"spec": {"priority": "x"}, "payload": ""}, item(11), nan]}
    body = json.dumps(bad).replace("NaN", "1e999")  # what a client sends for an overflow
    data = api.error("POST", "jobs/api/jobs/batch", body)
    assert data["message"].startswith("2 of 4 items are invalid, none was submitted: items[1]: ")
    assert list(data["detail"]["items"]) == ["1", "3"]
    assert "retry_delay" in data["detail"]["items"]["3"]
    assert api.json("GET", "jobs/api/stats")["counts"]["pending"] == before
    api.error("POST", "jobs/api/jobs/batch", {"items": []})
    api.error("POST", "jobs/api/jobs/batch", {"items": [item(1)], "x": 1})
    big = base64.b64encode(b"x" * (MAX_PAYLOAD + 1)).decode()
    api.error("POST", "jobs/api/jobs/batch", {"items": [{"spec": {}, "payload": big}]}, 413)


# --- one job -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "01", str(10**18), "%C2%B2"])
def test_bad_ids_are_400(api: Api, bad: str) -> None:
    for method, path in route_requests():
        if "jobs/1" in path:
            bad_path = path.replace("jobs/1", f"jobs/{bad}")
            data = api.error(method, bad_path, body_for(method), status=400)
            assert "invalid job id" in data["message"]


def test_missing_jobs_are_404(api: Api) -> None:
    for method, path in route_requests():
        if "jobs/1" in path:
            missing = path.replace("jobs/1", "jobs/424242")
            data = api.error(method, missing, body_for(method), status=404)
            assert data["type"] == "JobNotFound"
            assert data["detail"] == {"id": 424242}


def test_cancel_retry_delete(api: Api) -> None:
    job = api.submit(jobfuncs.noop, hold=True)
    assert job["status"] == "pending"
    path = f"jobs/api/jobs/{job['id']}"
    assert api.json("POST", f"{path}/cancel")["status"] == "cancelled"
    assert api.error("POST", f"{path}/cancel", status=409)["type"] == "IllegalTransition"
    assert api.json("POST", f"{path}/retry")["status"] in ("queued", "running", "succeeded")
    api.wait(job["id"], "succeeded")
    api.error("POST", f"{path}/retry", status=409)
    response = api.call("DELETE", path)
    assert response.code == 204
    assert not response.body
    api.error("GET", path, status=404)
    api.error("DELETE", path, status=404)


def test_release_runs_a_held_job_and_is_a_409_when_it_is_not_held(api: Api) -> None:
    job = api.submit(jobfuncs.noop, hold=True)
    assert (job["status"], job["held"], job["actions"]) == (
        "pending",
        True,
        ["cancel", "release", "delete"],
    )
    path = f"jobs/api/jobs/{job['id']}/release"
    released = api.json("POST", path)
    assert released["held"] is False and "release" not in released["actions"]
    assert api.wait(job["id"], "succeeded")["held"] is False
    refused = api.error("POST", path, status=409)
    assert refused["type"] == "IllegalTransition"
    assert refused["message"].startswith(f"job {job['id']} is not held")


def test_running_job_cannot_be_deleted_but_can_be_cancelled(api: Api) -> None:
    job = api.submit(jobfuncs.sleep, 60)
    api.wait(job["id"], "running")
    path = f"jobs/api/jobs/{job['id']}"
    assert "cancel it first" in api.error("DELETE", path, status=409)["message"]
    assert api.json("POST", f"{path}/cancel")["cancel_requested"] is True
    assert api.wait(job["id"], "cancelled")["finished_at"] is not None
    assert api.call("DELETE", path).code == 204


ACTIONS = ("cancel", "retry", "release", "delete")


def act(api: Api, job_id: int, action: str) -> HTTPResponse:
    """Ask for one action on a job through its REST route."""
    path = f"jobs/api/jobs/{job_id}"
    if action == "delete":
        return api.call("DELETE", path)
    return api.call("POST", f"{path}/{action}")


def check_actions(api: Api, make: Any, expected: list[str]) -> None:
    """On a fresh job from `make()` for each action: the job offers `expected`, every action it
    offers succeeds, and every other one is refused with a 409."""
    for action in ACTIONS:
        job = make()
        assert job["actions"] == expected, (job["status"], job["actions"])
        response = act(api, job["id"], action)
        if action in expected:
            assert response.code in (200, 204), (job["status"], action, response.body)
        else:
            assert response.code == 409, (job["status"], action, response.code)
            assert json.loads(response.body)["type"] == "IllegalTransition"
        if job["status"] == "running":  # free the one worker for the next job
            act(api, job["id"], "cancel")
            api.wait(job["id"], "cancelled")


def test_every_status_offers_exactly_the_actions_the_server_accepts(unstarted_api: Api) -> None:
    api = unstarted_api
    # Before the consumer starts, a queued job stays queued (never claimed).
    check_actions(
        api, lambda: api.submit(jobfuncs.noop, hold=True), ["cancel", "release", "delete"]
    )
    check_actions(api, lambda: api.submit(jobfuncs.noop), ["cancel", "delete"])
    for job in api.json("GET", "jobs/api/jobs")["jobs"]:
        act(api, job["id"], "delete")
    api.run(api.serverapp.extension_manager.start_extension("jupyter_jobs"))

    def running() -> Any:
        return api.wait(api.submit(jobfuncs.sleep, 60)["id"], "running")

    def ended(fn: Any, *args: Any, status: str) -> Any:
        return api.wait(api.submit(fn, *args)["id"], status)

    def cancelled() -> Any:
        return api.json(
            "POST", f"jobs/api/jobs/{api.submit(jobfuncs.noop, hold=True)['id']}/cancel"
        )

    check_actions(api, running, ["cancel"])
    check_actions(api, lambda: ended(jobfuncs.noop, status="succeeded"), ["delete"])
    check_actions(api, lambda: ended(jobfuncs.fail, "x", status="failed"), ["retry", "delete"])
    check_actions(api, cancelled, ["retry", "delete"])


def test_a_running_job_asked_to_cancel_offers_nothing_until_it_has_stopped(
    api: Api, tmp_path: Path
) -> None:
    pidfile = str(tmp_path / "pid")
    job = api.submit(jobfuncs.ignore_sigterm_and_sleep, pidfile, 60)
    api.wait(job["id"], "running")
    asked = api.json("POST", f"jobs/api/jobs/{job['id']}/cancel")
    assert (asked["status"], asked["cancel_requested"], asked["actions"]) == ("running", True, [])
    assert api.wait(job["id"], "cancelled")["actions"] == ["retry", "delete"]


def test_clear_deletes_every_finished_job_and_no_active_one(api: Api) -> None:
    succeeded = api.submit(jobfuncs.noop)
    failed = api.submit(jobfuncs.fail, "boom")
    cancelled = api.submit(jobfuncs.noop, hold=True)
    api.json("POST", f"jobs/api/jobs/{cancelled['id']}/cancel")
    pending = api.submit(jobfuncs.noop, hold=True)
    running = api.submit(jobfuncs.sleep, 60)
    api.wait(succeeded["id"], "succeeded")
    api.wait(failed["id"], "failed")
    api.wait(running["id"], "running")
    finished = [succeeded["id"], failed["id"], cancelled["id"]]

    assert api.json("POST", "jobs/api/jobs/clear") == {"deleted": finished}

    for job_id in finished:
        api.error("GET", f"jobs/api/jobs/{job_id}", status=404)
    assert api.json("GET", f"jobs/api/jobs/{pending['id']}")["status"] == "pending"
    assert api.json("GET", f"jobs/api/jobs/{running['id']}")["status"] == "running"
    # Nothing finished is left: a second clear deletes nothing.
    assert api.json("POST", "jobs/api/jobs/clear") == {"deleted": []}
    api.json("POST", f"jobs/api/jobs/{running['id']}/cancel")
    api.wait(running["id"], "cancelled")


# --- result, logs, outputs ---------------------------------------------------------------------


def test_result_long_poll_then_bytes(api: Api) -> None:
    job = api.submit(jobfuncs.blob, 3000)
    response = api.call("GET", f"jobs/api/jobs/{job['id']}/result", params={"wait": 60})
    assert response.code == 200
    assert dill.loads(response.body) == b"x" * 3000


def test_result_of_an_unfinished_job_is_202_with_the_job(api: Api) -> None:
    job = api.submit(jobfuncs.noop, hold=True)
    path = f"jobs/api/jobs/{job['id']}/result"
    assert api.json("GET", path, status=202)["status"] == "pending"
    assert api.json("GET", path, params={"wait": 0.3}, status=202)["id"] == job["id"]


def test_result_of_a_failed_job_is_409_with_the_job(api: Api) -> None:
    job = api.submit(jobfuncs.fail, "no luck")
    data = api.error("GET", f"jobs/api/jobs/{job['id']}/result", params={"wait": 60}, status=409)
    assert data["type"] == "ResultNotReady"
    assert data["detail"]["status"] == "failed"
    assert data["detail"]["reason"] == "error"
    assert "no luck" in data["detail"]["error"]["message"]


def test_results_batch_ended_jobs_with_their_bytes(api: Api) -> None:
    ok = api.submit(jobfuncs.blob, 3000)["id"]
    failed = api.submit(jobfuncs.fail, "no luck")["id"]
    held = api.submit(jobfuncs.noop, hold=True)["id"]
    api.wait(ok, "succeeded")
    api.wait(failed, "failed")
    ids = f"{held},{failed},999999,{ok}"
    data = api.json("GET", "jobs/api/results", params={"ids": ids})
    assert [r["id"] for r in data["results"]] == [ok]
    assert dill.loads(base64.b64decode(data["results"][0]["data"])) == b"x" * 3000
    assert [(j["id"], j["status"]) for j in data["jobs"]] == [(failed, "failed")]
    assert "no luck" in data["jobs"][0]["error"]["message"]
    assert data["missing"] == [999999]
    # Bytes beyond max_bytes stay on the server: the job comes as a record instead.
    small = api.json("GET", "jobs/api/results", params={"ids": str(ok), "max_bytes": 100})
    assert small["results"] == []
    assert [(j["id"], j["status"]) for j in small["jobs"]] == [(ok, "succeeded")]
    assert api.json("GET", "jobs/api/results") == {"results": [], "jobs": [], "missing": []}


def test_results_long_poll_answers_when_one_job_ends(api: Api) -> None:
    held = api.submit(jobfuncs.noop, hold=True)["id"]
    params = {"ids": str(held), "wait": 0.3}
    assert api.json("GET", "jobs/api/results", params=params) == {
        "results": [],
        "jobs": [],
        "missing": [],
    }
    runs = api.submit(jobfuncs.add, 2, 3)["id"]
    params = {"ids": f"{held},{runs}", "wait": 60}
    data = api.json("GET", "jobs/api/results", params=params)
    assert [r["id"] for r in data["results"]] == [runs]
    assert dill.loads(base64.b64decode(data["results"][0]["data"])) == 5


@pytest.mark.parametrize(
    ("method", "path", "body", "params"),
    [
        ("GET", "jobs/api/jobs/" + "1" * 5000, None, None),  # int() refuses 4300+ digits
        ("GET", "jobs/api/jobs", None, {"limit": "1" * 5000}),
        ("GET", "jobs/api/status", None, {"ids": "1," + "2" * 5000}),
        ("POST", "jobs/api/jobs", b'{"spec": ' + b"[" * 100_000, None),  # RecursionError
    ],
)
def test_input_that_breaks_python_itself_is_a_400(
    api: Api, method: str, path: str, body: bytes | None, params: dict[str, str] | None
) -> None:
    api.error(method, path, body, params=params)


def test_a_log_offset_beyond_any_file_is_an_empty_chunk(api: Api) -> None:
    job = api.submit(jobfuncs.print_lines, 3)
    api.wait(job["id"], "succeeded")
    chunk = api.json("GET", f"jobs/api/jobs/{job['id']}/logs", params={"offset": str(2**44)})
    assert chunk["data"] == "" and chunk["next_offset"] == 2**44


@pytest.mark.parametrize(
    ("path", "command", "answer"),
    [("result", "cancel", 409), ("results", "rm", 200)],
)
def test_a_long_poll_wakes_when_another_process_ends_the_job(
    api: Api, path: str, command: str, answer: int
) -> None:
    """`jupyter jobs cancel`/`rm` write the database directly: only the doorbell tells."""
    job_id = api.submit(jobfuncs.noop, hold=True)["id"]
    url = f"jobs/api/jobs/{job_id}/result" if path == "result" else "jobs/api/results"
    params = {"wait": 60} if path == "result" else {"ids": str(job_id), "wait": 60}
    db = str(api.app.store.path)

    async def scenario() -> tuple[int, float]:
        poll = asyncio.ensure_future(api.fetch(url, params=params, raise_error=False))
        deadline = time.monotonic() + 30
        while job_id not in api.app.waiters._futures:  # the request is waiting
            assert time.monotonic() < deadline, "the long poll never started waiting"
            await asyncio.sleep(0.01)
        started = time.monotonic()
        cli = [sys.executable, "-m", "jupyter_jobs.cli", command, str(job_id), "--db", db]
        await asyncio.to_thread(subprocess.run, cli, check=True, capture_output=True)
        response = await asyncio.wait_for(poll, 90)
        return response.code, time.monotonic() - started

    code, took = api.run(scenario())
    assert code == answer
    assert took < 20, f"the long poll answered {took:.1f} s after the job ended: not woken"


@pytest.mark.parametrize(
    "params",
    [{"ids": "1,x"}, {"ids": "1", "wait": "soon"}, {"ids": "1", "max_bytes": "-1"}],
)
def test_results_bad_parameters_are_400(api: Api, params: dict[str, str]) -> None:
    api.error("GET", "jobs/api/results", params=params, status=400)


@pytest.mark.parametrize("wait", ["-1", "soon", "nan"])
def test_bad_wait_is_400(api: Api, wait: str) -> None:
    job = api.submit(jobfuncs.noop, hold=True)
    api.error("GET", f"jobs/api/jobs/{job['id']}/result", params={"wait": wait}, status=400)


def test_wait_is_capped() -> None:
    assert parsing.seconds("wait", "1e9", 300.0) == 300.0
    assert parsing.seconds("wait", "2.5", 300.0) == 2.5


def test_logs_in_chunks(api: Api) -> None:
    job = api.submit(jobfuncs.print_lines, 50)
    api.wait(job["id"], "succeeded")
    logs = f"jobs/api/jobs/{job['id']}/logs"
    whole = api.json("GET", logs)
    assert "line 0\n" in whole["data"]
    assert "line 49\n" in whole["data"]
    assert whole["offset"] == 0
    assert whole["next_offset"] == whole["size"] == len(whole["data"].encode())
    text, offset = "", 0
    while offset < whole["size"]:
        chunk = api.json("GET", logs, params={"offset": offset, "limit": 64})
        assert chunk["offset"] == offset
        assert chunk["next_offset"] > offset
        text, offset = text + chunk["data"], chunk["next_offset"]
    assert text == whole["data"]
    for params in ({"offset": -1}, {"offset": "x"}, {"limit": 0}, {"limit": 2**40}):
        api.error("GET", logs, params=params, status=400)


def test_log_chunks_end_on_whole_characters(api: Api) -> None:
    from jupyter_jobs.server.service import _whole_utf8

    text = "é€😀".encode()  # 2-, 3- and 4-byte characters
    assert [_whole_utf8(text[:n]) for n in range(len(text) + 1)] == [
        0, 1, 2, 2, 2, 5, 5, 5, 5, 9,
    ]  # fmt: skip


def test_outputs_of_a_cell_job(api: Api) -> None:
    payload, _ = cell_payload("from IPython.display import display\ndisplay('shown')\nx = 1", {})
    body = {"spec": {"kind": "cell"}, "payload": base64.b64encode(payload).decode()}
    job = api.json("POST", "jobs/api/jobs", body, status=201)
    api.wait(job["id"], "succeeded")
    outputs = api.json("GET", f"jobs/api/jobs/{job['id']}/outputs")["outputs"]
    assert any("shown" in json.dumps(o) for o in outputs), outputs
    pending = api.submit(jobfuncs.noop, hold=True)
    assert api.json("GET", f"jobs/api/jobs/{pending['id']}/outputs") == {"outputs": []}


# --- listing and batched status ----------------------------------------------------------------


def test_list_newest_first_with_cursor_filters_and_counts(api: Api) -> None:
    ids = [api.submit(jobfuncs.noop, hold=True, name=f"n{i}", owner="A")["id"] for i in range(5)]
    other = api.submit(jobfuncs.noop, hold=True, name="other", owner="B")["id"]
    page = api.json("GET", "jobs/api/jobs", params={"limit": 2, "owner": "A"})
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    assert page["counts"]["pending"] == 5
    seen = [j["id"] for j in page["jobs"]]
    while page["next_cursor"]:
        params = {"limit": 2, "owner": "A", "cursor": page["next_cursor"]}
        page = api.json("GET", "jobs/api/jobs", params=params)
        seen += [j["id"] for j in page["jobs"]]
    assert seen == ids[::-1]
    assert [j["id"] for j in api.json("GET", "jobs/api/jobs", params={"q": "oth"})["jobs"]] == [
        other
    ]
    everything = api.json("GET", "jobs/api/jobs", params={"status": "pending,queued"})
    assert {j["id"] for j in everything["jobs"]} == {*ids, other}
    assert api.json("GET", "jobs/api/jobs", params={"status": "failed"})["jobs"] == []
    for params in (
        {"status": "done"},
        {"limit": 0},
        {"limit": 501},
        {"limit": "ten"},
        {"cursor": "garbage"},
    ):
        api.error("GET", "jobs/api/jobs", params=params, status=400)


def test_out_of_range_cursor_is_400(api: Api) -> None:
    # A well-formed cursor ("v1:<id>") whose id SQLite cannot hold.
    cursor = base64.urlsafe_b64encode(b"v1:99999999999999999999").decode().rstrip("=")
    api.error("GET", "jobs/api/jobs", params={"cursor": cursor}, status=400)


def test_status_batches_found_and_missing(api: Api) -> None:
    a = api.submit(jobfuncs.noop, hold=True)["id"]
    b = api.submit(jobfuncs.noop, hold=True)["id"]
    data = api.json("GET", "jobs/api/status", params={"ids": f"{b},999999,{a},{b}"})
    assert [j["id"] for j in data["jobs"]] == [b, a]
    assert data["missing"] == [999999]
    assert api.json("GET", "jobs/api/status") == {"jobs": [], "missing": []}
    for ids in ("1,x", "-3", ",".join(["1"] * 1001)):
        api.error("GET", "jobs/api/status", params={"ids": ids}, status=400)


def test_before_the_consumer_runs_jobs_queue_and_waits_are_503(unstarted_api: Api) -> None:
    api = unstarted_api
    assert api.error("GET", "jobs/api/capabilities", status=503)["type"] == "ServerUnavailable"
    job = api.submit(jobfuncs.noop)
    assert job["status"] == "queued"
    result = f"jobs/api/jobs/{job['id']}/result"
    api.error("GET", result, params={"wait": 5}, status=503)
    assert api.json("GET", result, status=202)["status"] == "queued"
    results = {"ids": str(job["id"]), "wait": 5}
    api.error("GET", "jobs/api/results", params=results, status=503)


def test_stats_of_one_job_type_are_its_kept_counts_and_a_bad_name_is_a_400(api: Api) -> None:
    typed = b'{"type": "train", "parameters": {}, "entry_point": "m:f"}\n'
    # None of them runs during the test (held, or due in an hour), so the numbers stay put.
    later = time.time() + 3600
    for name, hold in [("train", True), ("train", True), ("explain", True), ("train", False)]:
        spec = JobSpec(kind=Kind.TYPED, name=name, type=name, hold=hold, run_at=later)
        api.app.store.enqueue(spec, typed)
    api.submit(jobfuncs.noop, hold=True)  # not typed: in no type's numbers
    everyone = api.json("GET", "jobs/api/stats")
    train = api.json("GET", "jobs/api/stats", params={"type": "train"})
    again = api.json("GET", "jobs/api/stats")  # (the consumer writes its workers meanwhile)
    assert (everyone["pending"], train["pending"], sum(train["counts"].values())) == (5, 3, 3)
    assert train["counts"] == api.json("GET", "jobs/api/jobs", params={"type": "train"})["counts"]
    assert 0 < everyone["db_size"] <= train["db_size"] <= again["db_size"]  # the store's bytes
    mine = {"type": "explain", "mine": "true"}
    assert api.json("GET", "jobs/api/stats", params=mine)["pending"] == 0  # stored as nobody's
    none = api.json("GET", "jobs/api/stats", params={"type": "none-such"})
    assert sum(none["counts"].values()) == 0
    for bad in ("", "1x", "a b", "x" * 101):
        refused = api.error("GET", "jobs/api/stats", params={"type": bad}, status=400)
        assert refused["message"].startswith("type: job type name"), refused
        listed = api.error("GET", "jobs/api/jobs", params={"type": bad}, status=400)
        assert listed["message"] == refused["message"]  # one parser, one rule


def test_stats_and_capabilities(api: Api) -> None:
    api.submit(jobfuncs.noop, hold=True)
    stats = api.json("GET", "jobs/api/stats")
    assert stats["counts"]["pending"] == 1
    assert stats["max_workers"] == 1
    assert stats["executor"] == "local"
    assert stats["db_size"] > 0
    caps = api.json("GET", "jobs/api/capabilities")
    assert caps["max_payload_size"] == MAX_PAYLOAD
    assert caps["executor"] == "local"
    assert caps["cancel"] is True


# --- users ------------------------------------------------------------------------------------


def test_in_the_default_setup_every_request_is_the_servers_user(api: Api) -> None:
    # jupyter_server's own identity provider makes each token request a new anonymous user:
    # here every job is the OS user's running the server, as `JobQueue` and the CLI record.
    me = oslayer.user_name()
    first, second = api.submit(hold=True), api.submit(hold=True, owner="nb.ipynb")
    assert {(j["user"], j["user_display_name"]) for j in (first, second)} == {(me, me)}
    assert api.json("GET", "jobs/api/me") == {
        "username": me,
        "display_name": me,
        "can_read_all": True,
        "can_write_all": True,
    }
    mine = api.json("GET", "jobs/api/jobs", params={"mine": "true"})
    assert [j["id"] for j in mine["jobs"]] == [second["id"], first["id"]]
    assert mine["counts"]["pending"] == 2
    assert api.json("GET", "jobs/api/jobs", params={"user": "someone-else"})["jobs"] == []
    assert api.json("GET", "jobs/api/stats", params={"user": me})["counts"]["pending"] == 2
    api.json("POST", f"jobs/api/jobs/{first['id']}/cancel")
    cleared = api.json("POST", "jobs/api/jobs/clear", params={"mine": "true"})
    assert cleared == {"deleted": [first["id"]]}
    both = api.json("GET", "jobs/api/jobs", params={"mine": "true", "user": "someone-else"})
    assert [j["id"] for j in both["jobs"]] == [second["id"]]  # mine wins
    for bad in ("yes", "1", ""):
        api.error("GET", "jobs/api/jobs", params={"mine": bad}, status=400)
    api.error("GET", "jobs/api/stats", params={"mine": "yes"}, status=400)
    # also where they do not filter: a schedule's runs
    api.error("GET", "jobs/api/jobs", params={"schedule": "1", "mine": "-1"}, status=400)
    api.error("GET", "jobs/api/jobs", params={"schedule": "1", "type": "\x04;"}, status=400)


def test_jobs_of_nobody_from_before_users_stay_readable_and_actionable(api: Api) -> None:
    old = api.app.store.enqueue(JobSpec(name="old", hold=True), b"")  # no user, as migrated
    assert api.json("GET", f"jobs/api/jobs/{old.id}")["user"] == ""
    assert api.json("POST", f"jobs/api/jobs/{old.id}/cancel")["status"] == "cancelled"
    assert [j["id"] for j in api.json("GET", "jobs/api/jobs", params={"user": ""})["jobs"]] == [
        old.id
    ]


def test_who_the_jobs_belong_to_follows_the_identity_provider() -> None:
    class HubLike(IdentityProvider):
        pass

    for provider, auto in (
        (IdentityProvider(), False),
        (PasswordIdentityProvider(), False),
        (HubLike(), True),
    ):
        assert identifies_users("auto", provider) is auto
        assert identifies_users("identity", provider) is True
        assert identifies_users("server", provider) is False
    with pytest.raises(TraitError):
        JobsApp(user_source="everyone")


# --- configuration ---------------------------------------------------------------------------


def test_unknown_executor_names_the_installed_ones() -> None:
    with pytest.raises(TraitError, match=r"unknown executor 'nope'.*'local'"):
        JobsApp(executor_class="nope")
    assert resolve_executor("local").__name__ == "LocalExecutor"


@pytest.mark.parametrize(
    ("name", "value"),
    [("max_workers", 0), ("kill_grace", 0), ("log_limit", -1), ("retention_days", -1.0)],
)
def test_bad_settings_are_refused(name: str, value: Any) -> None:
    with pytest.raises(TraitError, match=name):
        JobsApp(**{name: value})


def test_by_default_each_executor_picks_its_capacity() -> None:
    # None reaches the executor: the local one takes the CPUs, Dask follows its cluster.
    assert JobsApp().max_workers is None
    assert LocalExecutor(wu.Recorder()).max_workers == (os.cpu_count() or 1)
    assert JobsApp(max_workers=3).max_workers == 3


# --- events, kernel environment, shutdown ------------------------------------------------------


def test_events_of_a_job_arrive_in_order_over_the_websocket(api: Api) -> None:
    ws = api.run(api.ws_fetch("api", "events", "subscribe"))
    # Long enough to be seen running: a job that ends within moments of its start is written
    # once, queued -> succeeded (consumer.START_WRITE_DELAY).
    job = api.submit(jobfuncs.sleep, 0.5)
    seen: list[tuple[str, str | None, str]] = []

    def read() -> None:
        event = json.loads(api.run(asyncio.wait_for(ws.read_message(), 60)))
        if event.get("schema_id") == SCHEMA_ID:
            assert {e["user"] for e in event["jobs"]} == {oslayer.user_name()}
            seen.extend(
                (e["action"], e["previous"], e["status"])
                for e in event["jobs"]
                if e["id"] == job["id"] and e["action"] in ("created", "transition", "deleted")
            )

    deadline = time.monotonic() + 60
    while not seen or seen[-1][2] != "succeeded":
        assert time.monotonic() < deadline, seen
        read()
    api.call("DELETE", f"jobs/api/jobs/{job['id']}")
    while seen[-1][0] != "deleted":
        read()
    ws.close()
    # Changes within one window (50 ms) arrive as one entry: the claim and the start may join
    # the creation; the half-second run keeps the end apart.
    assert seen in (
        [
            ("created", None, "queued"),
            ("transition", "queued", "running"),
            ("transition", "running", "succeeded"),
            ("deleted", None, "succeeded"),
        ],
        [
            ("created", None, "running"),
            ("transition", "running", "succeeded"),
            ("deleted", None, "succeeded"),
        ],
    )


def test_kernels_inherit_the_server_url_and_token(api: Api) -> None:
    serverapp = api.serverapp
    assert os.environ[URL_ENV] == f"http://localhost:{serverapp.port}{BASE}"
    assert os.environ[TOKEN_ENV] == serverapp.identity_provider.token


@pytest.mark.parametrize(
    ("retries", "status", "reason"), [(0, "failed", "interrupted"), (2, "queued", None)]
)
def test_stop_ends_running_jobs_and_keeps_queued_ones(
    api: Api, retries: int, status: str, reason: str | None, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    running = api.submit(jobfuncs.mark_then_sleep, str(marks), 60, retries=retries)
    queued = api.submit(jobfuncs.noop)  # max_workers=1: stays queued
    # Begun in its worker, not only claimed: a claimed job that never began goes back to queued.
    deadline = time.monotonic() + 60
    while not (marks.exists() and marks.read_text().strip()):
        assert time.monotonic() < deadline, "the job never began"
        api.run(asyncio.sleep(0.05))
    api.run(api.serverapp.extension_manager.stop_all_extensions())
    store = Store(api.app.db_path)
    try:
        after = {j.id: j for j in store.get_many([running["id"], queued["id"]])}
    finally:
        store.close()
    assert after[running["id"]].status.value == status
    assert (after[running["id"]].reason and after[running["id"]].reason.value) == reason
    assert after[queued["id"]].status.value == "queued"
