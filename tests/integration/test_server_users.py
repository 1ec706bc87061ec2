"""A `jupyter server` shared by several users: jobs belong to the user who submitted them.

The server runs with `two_users.TokenUsers` (each token names a user; the server's own token,
which kernels use, names its owner alice) and `two_users.ReadersAndAdmins` (own jobs for all;
bob may read alice's; carol may do anything). Every request here is a real HTTP request to
that server; this test process also plays a kernel (the kernel API with the server's token).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import dill
import pytest
import requests

from jupyter_jobs import payload
from jupyter_jobs.kernel import api as kernel_api
from jupyter_jobs.payload import call_bytes, dumps

import jobfuncs
import two_users
from servers import TEST_CONFIG, RunningServer, submit_body

CONFIG = {
    **TEST_CONFIG,
    "ServerApp": {
        "identity_provider_class": "two_users.TokenUsers",
        "authorizer_class": "two_users.ReadersAndAdmins",
    },
}


class As:
    """Requests to the server as the user of one token."""

    def __init__(self, server: RunningServer, token: str) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.server.url + path, **kwargs)

    def json(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json() if response.content else None

    def refused(self, method: str, path: str, **kwargs: Any) -> str:
        """Assert a 403 NotAllowed; returns its message."""
        body = self.json(method, path, status=403, **kwargs)
        assert body["type"] == "NotAllowed", body
        return body["message"]

    def submit(self, **spec: Any) -> dict[str, Any]:
        body = submit_body(jobfuncs.add, 1, 2, **spec)
        return self.json("POST", "jobs/api/jobs", status=201, json=body)

    def ids(self, path: str = "jobs/api/jobs", **params: Any) -> list[int]:
        return [j["id"] for j in self.json("GET", path, params=params)["jobs"]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from servers import JupyterHome

    running = RunningServer(JupyterHome.create(tmp_path_factory.mktemp("users")), config=CONFIG)
    try:
        yield running.wait_ready()
    finally:
        running.close()
    running.assert_consumer_never_failed()


@pytest.fixture(scope="module")
def alice(server: RunningServer) -> As:
    return As(server, "alice-token")


@pytest.fixture(scope="module")
def bob(server: RunningServer) -> As:
    return As(server, "bob-token")


@pytest.fixture(scope="module")
def carol(server: RunningServer) -> As:
    return As(server, "carol-token")


def test_each_job_records_the_user_who_submitted_it(alice: As, bob: As) -> None:
    job = alice.submit(hold=True, name="alices")
    assert (job["user"], job["user_display_name"]) == ("alice", "Alice Liddell")
    assert bob.submit(hold=True)["user"] == "bob"
    assert alice.json("GET", "jobs/api/me") == {
        "username": "alice",
        "display_name": "Alice Liddell",
        "can_read_all": False,
        "can_write_all": False,
    }
    assert bob.json("GET", "jobs/api/me")["can_read_all"] is False


def test_listings_show_each_user_what_they_may_read(alice: As, bob: As, carol: As) -> None:
    mine = alice.submit(hold=True, owner="nb.ipynb")["id"]
    bobs = bob.submit(hold=True, owner="nb.ipynb")["id"]
    carols = carol.submit(hold=True)["id"]
    everything = carol.ids()
    assert {mine, bobs, carols} <= set(everything)
    assert carol.json("GET", "jobs/api/me")["can_write_all"] is True
    # without a filter, a user who may not read everyone's jobs gets their own
    assert mine in alice.ids() and not {bobs, carols} & set(alice.ids())
    assert alice.ids(mine="true") == alice.ids()
    assert bob.ids(user="alice") == alice.ids(mine="true")  # bob may read alice's
    assert "may not read the jobs of 'bob'" in alice.refused(
        "GET", "jobs/api/jobs", params={"user": "bob"}
    )
    assert bob.ids(owner="nb.ipynb") == [bobs]
    assert carol.ids(owner="nb.ipynb", user="bob") == [bobs]
    counts = alice.json("GET", "jobs/api/stats", params={"mine": "true"})["counts"]
    assert counts["pending"] == len(alice.ids(status="pending"))
    assert carol.json("GET", "jobs/api/stats")["counts"]["pending"] > counts["pending"]
    assert alice.ids(mine="true", user="bob") == alice.ids()  # mine wins


def test_reading_a_job_is_for_its_user_and_those_the_authorizer_allows(
    server: RunningServer, alice: As, bob: As
) -> None:
    alices = alice.submit()["id"]
    bobs = bob.submit()["id"]
    assert bob.json("GET", f"jobs/api/jobs/{alices}")["user"] == "alice"
    result = bob.call("GET", f"jobs/api/jobs/{alices}/result", params={"wait": 30})
    assert result.status_code == 200 and dill.loads(result.content) == 3
    message = alice.refused("GET", f"jobs/api/jobs/{bobs}")
    assert message == f"job {bobs} belongs to 'bob': 'alice' may not read it"
    for path in ("logs", "outputs", "result"):
        alice.refused("GET", f"jobs/api/jobs/{bobs}/{path}")
    alice.refused("GET", "jobs/api/status", params={"ids": f"{alices},{bobs}"})
    alice.refused("GET", "jobs/api/results", params={"ids": str(bobs)})
    status = alice.json("GET", "jobs/api/status", params={"ids": f"{alices},999999"})
    assert [j["id"] for j in status["jobs"]] == [alices] and status["missing"] == [999999]
    # the authorizer was asked about bob's job itself: the job is the resource context
    asked = [line for line in server.log_text().splitlines() if two_users.ASKED in line]
    assert any(f"alice read user='bob' job={bobs}" in line for line in asked), asked[-5:]


def test_only_its_user_acts_on_a_job_unless_the_authorizer_grants_write(
    alice: As, bob: As, carol: As
) -> None:
    held = alice.submit(hold=True)["id"]
    for verb in ("cancel", "retry", "release"):
        message = bob.refused("POST", f"jobs/api/jobs/{held}/{verb}")
        assert message == f"job {held} belongs to 'alice': 'bob' may not {verb} it"
    bob.refused("DELETE", f"jobs/api/jobs/{held}")
    assert alice.json("GET", f"jobs/api/jobs/{held}")["status"] == "pending"
    assert carol.json("POST", f"jobs/api/jobs/{held}/release")["user"] == "alice"
    cancelled = alice.submit(hold=True)["id"]
    assert alice.json("POST", f"jobs/api/jobs/{cancelled}/cancel")["status"] == "cancelled"
    alice.json("DELETE", f"jobs/api/jobs/{cancelled}", status=204)


def test_clear_finished_clears_only_what_the_user_may_delete(alice: As, bob: As) -> None:
    ended = {}
    for who in (alice, bob):
        job = who.submit(hold=True)["id"]
        who.json("POST", f"jobs/api/jobs/{job}/cancel")
        ended[who] = job
    deleted = alice.json("POST", "jobs/api/jobs/clear")["deleted"]
    assert ended[alice] in deleted and ended[bob] not in deleted
    assert bob.json("GET", f"jobs/api/jobs/{ended[bob]}")["status"] == "cancelled"
    bob.refused("POST", "jobs/api/jobs/clear", params={"user": "alice"})


def test_schedules_belong_to_their_maker(server: RunningServer, alice: As, bob: As, carol: As):
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (server.home.root_dir / "daily.ipynb").write_text(json.dumps(notebook))
    spec = {"target": {"kind": "notebook", "path": "daily.ipynb"}, "every": 3600}
    made = alice.json("POST", "jobs/api/schedules", status=201, json=spec)
    assert (made["user"], made["user_display_name"]) == ("alice", "Alice Liddell")
    sid = made["id"]
    assert bob.json("GET", f"jobs/api/schedules/{sid}")["user"] == "alice"
    for method, path in (("POST", "pause"), ("POST", "resume")):
        message = bob.refused(method, f"jobs/api/schedules/{sid}/{path}")
        assert message == f"schedule {sid} belongs to 'alice': 'bob' may not {path} it"
    bob.refused("PATCH", f"jobs/api/schedules/{sid}", json={"every": 7200})
    bob.refused("DELETE", f"jobs/api/schedules/{sid}")
    assert bob.json("GET", "jobs/api/schedules")["schedules"] == []
    assert carol.json("POST", f"jobs/api/schedules/{sid}/pause")["paused"] is True
    assert [s["id"] for s in alice.json("GET", "jobs/api/schedules")["schedules"]] == [sid]
    alice.json("DELETE", f"jobs/api/schedules/{sid}", status=204)


def test_a_kernels_jobs_are_the_user_its_servers_token_names(
    server: RunningServer, alice: As, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a kernel the server launched inherits: the server's URL and its own token.
    monkeypatch.setenv("JUPYTER_JOBS_URL", server.url)
    monkeypatch.setenv("JUPYTER_JOBS_TOKEN", server.token)
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/alice/analysis.ipynb")
    kernel_api.reset_connection()
    try:
        job = kernel_api.submit(jobfuncs.add, 20, 22)
        assert job.result(timeout=60) == 42
        assert (job.record.user, job.record.user_display_name) == ("alice", "Alice Liddell")
        assert job.id in [j.id for j in kernel_api.jobs(mine=True)]
    finally:
        kernel_api.reset_connection()
    assert alice.json("GET", f"jobs/api/jobs/{job.id}")["owner"] == "/home/alice/analysis.ipynb"


def test_a_channel_delivers_a_job_only_to_those_who_may_read_it(alice: As, bob: As) -> None:
    bobs = bob.submit(channel="shared-sweep")["id"]
    taken = bob.json("GET", "jobs/api/channels/shared-sweep/next", params={"wait": 30})
    assert [item["job"]["id"] for item in taken["items"]] == [bobs]
    message = alice.refused("GET", "jobs/api/channels/shared-sweep/next", params={"wait": 30})
    assert message == f"job {bobs} belongs to 'bob': 'alice' may not read it"


def test_the_type_filter_and_typed_schedules_keep_to_what_each_user_may_see(
    alice: As, bob: As, carol: As
) -> None:
    functions = payload.dumps({"run": jobfuncs.add, "summarize": None})
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = {"schema": schema, "functions": base64.b64encode(functions).decode()}
    alice.json("PUT", "jobs/api/types/adder", json=body)
    typed = {"type": "adder", "parameters": {"a": 1}, "spec": {"hold": True}}
    made = {who: who.json("POST", "jobs/api/jobs", status=201, json=typed)["id"]
            for who in (alice, bob, carol)}  # fmt: skip
    assert alice.ids(type="adder") == [made[alice]]  # may read no one else's
    assert bob.ids(type="adder") == [made[bob]]
    assert bob.ids(type="adder", user="alice") == [made[alice]]  # bob may read alice's
    assert "may not read the jobs of 'bob'" in alice.refused(
        "GET", "jobs/api/jobs", params={"type": "adder", "user": "bob"}
    )
    everyone = carol.json("GET", "jobs/api/jobs", params={"type": "adder"})
    assert [j["id"] for j in everyone["jobs"]] == sorted(made.values(), reverse=True)
    assert everyone["counts"]["pending"] == 3
    mine = bob.json("GET", "jobs/api/jobs", params={"type": "adder", "mine": "true"})
    assert mine["counts"]["pending"] == 1

    target = {"kind": "typed", "type": "adder", "parameters": {"a": 2}}
    refused = bob.json(
        "POST", "jobs/api/schedules", status=400,
        json={"target": {**target, "parameters": {"a": "x"}}, "every": 3600},
    )  # fmt: skip
    assert refused["detail"]["parameters"] == {"parameters.a": "'x' is not of type 'integer'"}
    spec = {"target": target, "every": 3600, "job": {"channel": "bobs"}}
    sid = bob.json("POST", "jobs/api/schedules", status=201, json=spec)["id"]
    change = {"target": {**target, "parameters": {"a": 3}}}
    message = alice.refused("PATCH", f"jobs/api/schedules/{sid}", json=change)
    assert message == f"schedule {sid} belongs to 'bob': 'alice' may not change it"
    changed = carol.json("PATCH", f"jobs/api/schedules/{sid}", json=change)
    assert (changed["user"], changed["target"]["parameters"]) == ("bob", {"a": 3})
    bob.json("DELETE", f"jobs/api/schedules/{sid}", status=204)
    for who in (alice, bob, carol):
        who.json("POST", f"jobs/api/jobs/{made[who]}/cancel")


# --- functions stored once are their senders' code ---------------------------------------------


def sent_function(size: int = 3000) -> tuple[Any, bytes, str]:
    """A function sent by value (its closure a few kilobytes of data), its bytes, their sha256."""
    data = os.urandom(size)

    def size_plus(x: int) -> int:
        return len(data) + x

    pickled = dumps(size_plus)
    return size_plus, pickled, hashlib.sha256(pickled).hexdigest()


def named_item(fn: Any, digest: str, x: int, name: str) -> dict[str, Any]:
    """A batch item that names its function by sha256 alone."""
    arguments = base64.b64encode(bytes(call_bytes(fn, (x,), {}))).decode()
    return {"spec": {"name": name}, "payload": arguments, "function": digest}


def result_of(who: As, job_id: int) -> Any:
    response = who.call("GET", f"jobs/api/jobs/{job_id}/result", params={"wait": 30})
    assert response.status_code == 200, response.text
    return dill.loads(response.content)


def test_a_function_is_found_and_named_by_its_senders_and_their_jobs_readers(
    server: RunningServer, alice: As, bob: As, carol: As
) -> None:
    fn, data, digest = sent_function()
    path = f"jobs/api/functions/{digest}"
    assert alice.json("GET", path, status=404)["type"] == "FunctionNotFound"
    assert alice.json("PUT", path, status=201, data=data)["references"] == 0
    assert alice.json("PUT", path, status=200, data=data)["size"] == len(data)
    # bob may read alice's jobs, carol everyone's: both may see it, and name it.
    assert bob.json("GET", path)["size"] == carol.json("GET", path)["size"] == len(data)
    body = {"items": [named_item(fn, digest, 1, "bobs")]}
    (job,) = bob.json("POST", "jobs/api/jobs/batch", status=201, json=body)["jobs"]
    assert job["user"] == "bob" and result_of(bob, job["id"]) == 3001
    asked = [line for line in server.log_text().splitlines() if two_users.ASKED in line]
    assert any("bob read user='alice' job=None" in line for line in asked), asked[-5:]
    # Each sees how many of their own jobs name it.
    assert bob.json("GET", path)["references"] == 1
    assert alice.json("GET", path)["references"] == 0


def test_another_users_function_is_not_found_by_its_hash_alone(alice: As, bob: As) -> None:
    fn, data, digest = sent_function()
    path = f"jobs/api/functions/{digest}"
    bob.json("PUT", path, status=201, data=data)
    # alice may not read bob's jobs: for her it is not stored, whether she asks or names it.
    refused = alice.json("GET", path, status=404)
    assert refused == bob.json("GET", f"jobs/api/functions/{'0' * 64}", status=404) | {
        "message": refused["message"],
        "detail": {"sha256": [digest]},
    }
    before = alice.ids()
    body = {"items": [named_item(fn, digest, 1, "alices")]}
    refused = alice.json("POST", "jobs/api/jobs/batch", status=404, json=body)
    assert refused["type"] == "FunctionNotFound" and refused["detail"] == {"sha256": [digest]}
    arguments = bytes(call_bytes(fn, (1,), {}))
    files = {
        "spec": (None, json.dumps({"name": "alone"}), "application/json"),
        "function": (None, digest),
        "payload": ("payload.dill", arguments, "application/octet-stream"),
    }
    refused = alice.json("POST", "jobs/api/jobs", status=404, files=files)
    assert refused["detail"] == {"sha256": [digest]}
    assert alice.ids() == before  # nothing was stored
    # Her own bytes prove she has it: new to her (201), then hers to name.
    assert alice.json("PUT", path, status=201, data=data)["references"] == 0
    made = alice.json("POST", "jobs/api/jobs", status=201, files=files)
    assert made["user"] == "alice" and result_of(alice, made["id"]) == 3001
    assert alice.json("GET", path)["references"] == 1
    assert bob.json("GET", path)["references"] == 0
