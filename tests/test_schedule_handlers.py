"""The schedule routes in an in-process Jupyter server (test_handlers.py's fixtures), with a real
store file and the real consumer: CRUD, pause/resume, preview, runs by `?schedule=`, 400s that
name the bad field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_handlers
from pytest_jupyter.jupyter_server import *  # noqa: F403 (fixtures, for this module only)
from test_handlers import Api

from jupyter_jobs.store import Store

# test_handlers.py's server fixtures, shared by name
jp_server_config = test_handlers.jp_server_config
authorizer_class = test_handlers.authorizer_class
unstarted_api = test_handlers.unstarted_api
api = test_handlers.api


def write_notebook(root: Path, name: str, parameters: str = "day = 'x'") -> None:
    cells = [
        {
            "id": "parameters",
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": parameters,
            "outputs": [],
            "execution_count": None,
        },
        {"id": "body", "cell_type": "code", "metadata": {}, "source": "print(day)", "outputs": [],
         "execution_count": None},
    ]  # fmt: skip
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (root / name).write_text(json.dumps(notebook))


def spec(**fields: Any) -> dict[str, Any]:
    base = {
        "name": "daily report",
        "target": {"kind": "notebook", "path": "report.ipynb", "parameters": {"day": "mon"}},
        "cron": "0 8 * * 1-5",
        "timezone": "Europe/Paris",
        "job": {"retries": 2, "timeout": 600},
    }
    return {**base, **fields}


def test_schedule_crud_pause_resume_and_delete(api: Api, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "report.ipynb")
    made = api.json("POST", "jobs/api/schedules", spec(), 201)
    assert made["name"] == "daily report" and made["overlap"] == "skip"
    assert made["catch_up"] == "latest" and made["job"] == {"retries": 2, "timeout": 600}
    assert made["next_run"] is not None and made["last_run"] is None
    sid = made["id"]
    listed = api.json("GET", "jobs/api/schedules")["schedules"]
    assert [s["id"] for s in listed] == [sid]
    assert api.json("GET", f"jobs/api/schedules/{sid}")["cron"] == "0 8 * * 1-5"

    changed = api.json("PATCH", f"jobs/api/schedules/{sid}", {"every": 3600, "overlap": "queue"})
    assert changed["every"] == 3600 and changed["cron"] is None and changed["overlap"] == "queue"
    paused = api.json("POST", f"jobs/api/schedules/{sid}/pause")
    assert paused["paused"] and paused["next_run"] is None
    resumed = api.json("POST", f"jobs/api/schedules/{sid}/resume")
    assert not resumed["paused"] and resumed["next_run"] is not None

    api.json("DELETE", f"jobs/api/schedules/{sid}", status=204)
    assert api.json("GET", "jobs/api/schedules")["schedules"] == []
    assert api.error("GET", f"jobs/api/schedules/{sid}", status=404)["type"] == "ScheduleNotFound"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"cron": None}, "cron, every"),
        ({"every": 3600}, "cron, every"),
        ({"cron": None, "every": 5}, "every"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"overlap": "wait"}, "overlap"),
        ({"catch_up": "some"}, "catch_up"),
        ({"job": {"hold": True}}, "job"),
        ({"target": {"kind": "notebook", "path": "report.ipynb", "parameters": {"a-b": 1}}},
         "target.parameters"),
        ({"target": {"kind": "function"}}, "target.kind"),
        ({"colour": "red"}, "colour"),
    ],
)  # fmt: skip
def test_bad_schedules_are_400_naming_the_field(
    api: Api, jp_root_dir: Path, fields: dict[str, Any], named: str
) -> None:
    write_notebook(jp_root_dir, "report.ipynb")
    data = api.error("POST", "jobs/api/schedules", spec(**fields), 400)
    assert named in data["message"], data


def test_a_missing_notebook_is_404_naming_the_path(api: Api) -> None:
    data = api.error("POST", "jobs/api/schedules", spec(), 404)
    assert data["type"] == "NotebookNotFound" and "report.ipynb" in data["message"]


def test_a_bad_change_is_400_and_changes_nothing(api: Api, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "report.ipynb")
    sid = api.json("POST", "jobs/api/schedules", spec(), 201)["id"]
    data = api.error("PATCH", f"jobs/api/schedules/{sid}", {"timezone": "Nowhere/Else"}, 400)
    assert "timezone" in data["message"]
    assert api.json("GET", f"jobs/api/schedules/{sid}")["timezone"] == "Europe/Paris"


def test_preview_describes_a_cron_and_refuses_a_bad_one(api: Api) -> None:
    answer = api.json(
        "GET", "jobs/api/schedules/preview", params={"cron": "0 8 * * 1-5", "timezone": "UTC"}
    )
    assert "08:00" in answer["description"] and len(answer["next"]) == 3
    assert answer["next"] == sorted(answer["next"])
    every = api.json("GET", "jobs/api/schedules/preview", params={"every": "7200"})
    assert every["description"] == "Every 2 hours"
    data = api.error("GET", "jobs/api/schedules/preview", params={"cron": "bad"}, status=400)
    assert "cron" in data["message"]
    data = api.error(
        "GET", "jobs/api/schedules/preview", params={"cron": "* * * * *", "timezone": "X/Y"}
    )
    assert "timezone" in data["message"]


def test_runs_are_listed_by_schedule_with_their_scheduled_time(api: Api, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "report.ipynb", "day = 'x'\nscheduled_time = None")
    made = api.json("POST", "jobs/api/schedules", spec(overlap="queue"), 201)
    with Store(api.app.store.path) as store:  # fire its next time, as a consumer would then
        (run,) = store.fire_schedules(made["next_run"] + 1)
    page = api.json("GET", "jobs/api/jobs", params={"schedule": str(made["id"])})
    (job,) = page["jobs"]
    assert job["id"] == run.id and job["kind"] == "notebook"
    assert job["schedule_id"] == made["id"] and job["scheduled_time"] == made["next_run"]
    assert job["options"]["notebook"]["parameters"] == {"day": "mon"}
    assert job["retries"] == 2 and job["timeout"] == 600
    queued = {"schedule": str(made["id"]), "status": "queued"}
    assert [j["id"] for j in api.json("GET", "jobs/api/jobs", params=queued)["jobs"]] == [run.id]
    finished = {"schedule": str(made["id"]), "status": "succeeded,failed"}
    assert api.json("GET", "jobs/api/jobs", params=finished)["jobs"] == []
    bad = {"schedule": str(made["id"]), "status": "later"}
    assert "later" in api.error("GET", "jobs/api/jobs", params=bad)["message"]
    plain = api.json("GET", "jobs/api/jobs", params={"schedule": "999"})
    assert plain["jobs"] == []
    other = api.submit()
    assert other["schedule_id"] is None and other["scheduled_time"] is None
    last = api.json("GET", f"jobs/api/schedules/{made['id']}")["last_run"]
    assert last["job_id"] == run.id


@pytest.mark.parametrize("bad", ["abc", "0", "01", str(10**18)])
def test_bad_schedule_ids_are_400_and_unknown_ones_404(api: Api, bad: str) -> None:
    for method, path in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/pause")]:
        body = {} if method in ("POST", "PATCH") else None
        data = api.error(method, f"jobs/api/schedules/{bad}{path}", body, 400)
        assert "invalid schedule id" in data["message"]
        data = api.error(method, f"jobs/api/schedules/4242{path}", body, 404)
        assert data["type"] == "ScheduleNotFound" and data["detail"] == {"id": 4242}
