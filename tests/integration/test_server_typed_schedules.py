"""Typed schedules, the `?type=` filter and typed jobs' events against a real `jupyter server`
whose workers find a package of job types: a schedule of a job type made over REST and through
the kernel API, its parameters refused by name, its runs delivered to its result channel, their
events carrying the type and summary over the websocket, and the job list by type."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import jupyter_jobs as jj
from jupyter_jobs.errors import InvalidRequest, JobTypeNotFound
from jupyter_jobs.kernel import api as kernel_api
from jupyter_jobs.store import Store

import typed_package
from servers import REPO, TEST_CONFIG, TESTS_DIR, RunningServer, ServerFactory, job_events


@pytest.fixture
def server(jupyter_server_factory: ServerFactory, tmp_path: Path) -> RunningServer:
    """A server whose workers (and describer) find the test package of job types."""
    site = typed_package.install(tmp_path)
    path = os.pathsep.join([str(site), str(REPO), str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])
    return jupyter_server_factory(None, config=TEST_CONFIG, env={"PYTHONPATH": path})


def call(server: RunningServer, method: str, path: str, status: int, **kwargs: Any) -> Any:
    response = server.api(method, f"jobs/api/{path}", **kwargs)
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content else None


def fire(server: RunningServer, schedule: dict[str, Any]) -> int:
    """Fire the schedule's next time now (the store told the time, as the consumer would be
    when it comes); the server's consumer runs it. The new run's id."""
    with Store(server.home.db_path) as store:
        (run,) = store.fire_schedules(schedule["next_run"] + 1)
    return run.id


def test_a_typed_schedule_over_rest_checks_its_parameters_and_delivers_its_runs(
    server: RunningServer,
) -> None:
    call(server, "GET", "types", 200)  # described
    timing = {"every": 3600}
    bad = {"kind": "typed", "type": "train", "parameters": {"epochs": 99, "depth": 2}}
    refused = call(server, "POST", "schedules", 400, json={"target": bad, **timing})
    assert refused["type"] == "InvalidRequest"
    assert refused["detail"]["parameters"] == {
        "parameters.epochs": "99 is greater than the maximum of 50",
        "parameters.depth": "is not a parameter of this type",
    }
    unknown = {"kind": "typed", "type": "trian"}
    missing = call(server, "POST", "schedules", 404, json={"target": unknown, **timing})
    assert missing["type"] == "JobTypeNotFound" and "train" in missing["message"]
    assert call(server, "GET", "schedules", 200)["schedules"] == []

    target = {"kind": "typed", "type": "train", "parameters": {"epochs": 2}}
    spec = {"target": target, "job": {"channel": "nightly", "priority": 2}, **timing}
    made = call(server, "POST", "schedules", 201, json=spec)
    assert (made["name"], made["target"], made["job"]) == ("train", target, spec["job"])

    events = job_events(server, lambda: fire(server, made))
    run_id = events[-1]["id"]
    # the entry that ends the run carries the summary: no read needed to show it
    assert (events[-1]["status"], events[-1]["type"]) == ("succeeded", "train")
    assert events[-1]["summary"] == {"accuracy": 0.6667, "epochs": 2}
    assert {e["type"] for e in events} == {"train"}
    taken = call(server, "GET", "channels/nightly/next", 200, params={"wait": 60})
    (item,) = taken["items"]
    assert item["job"]["id"] == run_id and item["job"]["schedule_id"] == made["id"]
    assert item["job"]["summary"] == events[-1]["summary"] and item["job"]["priority"] == 2

    listed = call(server, "GET", "jobs", 200, params={"type": "train"})
    assert [j["id"] for j in listed["jobs"]] == [run_id] and listed["counts"]["succeeded"] == 1
    assert call(server, "GET", "jobs", 200, params={"type": "explain"})["jobs"] == []
    assert (
        "type: job type name" in call(server, "GET", "jobs", 400, params={"type": "a b"})["message"]
    )

    # a new target is checked and built again; a bad one changes nothing
    worse = {"target": {**target, "parameters": {"epochs": 0}}}
    refused = call(server, "PATCH", f"schedules/{made['id']}", 400, json=worse)
    assert refused["detail"]["parameters"] == {
        "parameters.epochs": "0 is less than the minimum of 1"
    }
    better = {"target": {**target, "parameters": {"epochs": 4}}}
    changed = call(server, "PATCH", f"schedules/{made['id']}", 200, json=better)
    assert changed["target"]["parameters"] == {"epochs": 4}
    again = fire(server, changed)
    done = server.wait_status(again, "succeeded", timeout=120)
    assert done["parameters"] == {"epochs": 4} and done["summary"]["epochs"] == 4


def test_the_kernel_api_schedules_a_job_type_through_the_server(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a kernel the server launched inherits: the server's URL and its own token.
    monkeypatch.setenv("JUPYTER_JOBS_URL", server.url)
    monkeypatch.setenv("JUPYTER_JOBS_TOKEN", server.token)
    monkeypatch.setenv("JPY_SESSION_NAME", "analysis.ipynb")
    kernel_api.reset_connection()
    try:
        with pytest.raises(InvalidRequest) as caught:
            jj.schedule(job_type="train", parameters={"epochs": "many"}, every=3600)
        assert caught.value.detail["parameters"] == {
            "parameters.epochs": "'many' is not of type 'integer'"
        }
        with pytest.raises(JobTypeNotFound):
            jj.schedule(job_type="nope", every=3600)
        made = jj.schedule(
            job_type="explain", parameters={"rows": 3}, cron="0 6 * * *", channel="why"
        )
        assert made.target == {"kind": "typed", "type": "explain", "parameters": {"rows": 3}}
        assert made.job == {"channel": "why"} and made.user
        run = fire(server, made.to_json())
        (job,) = list(jj.results("why", timeout=120, count=1))
        assert job.id == run and job.result() == (3, {"a", "b"})
        assert [j.id for j in jj.jobs(type="explain", all=True)] == [run]
        assert jj.jobs(type="train", all=True) == []
    finally:
        kernel_api.reset_connection()
