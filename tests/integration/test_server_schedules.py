"""Schedules against a real `jupyter server` process: the kernel API (`jj.schedule` and the
schedule verbs, over REST) creates, lists, pauses, resumes and deletes a notebook schedule, and
the runs a consumer creates are listed by `?schedule=`."""

from __future__ import annotations

import json

import pytest

from jupyter_jobs.errors import InvalidRequest, NotebookNotFound, ScheduleNotFound
from jupyter_jobs.front import Jobs
from jupyter_jobs.kernel.client import Client, HttpBackend, ServerInfo
from jupyter_jobs.store import Store

from servers import RunningServer


@pytest.fixture
def jobs(jupyter_server: RunningServer):
    front = Jobs(
        HttpBackend(Client(ServerInfo(jupyter_server.url, jupyter_server.token, "test"))),
        lambda: "notebook.ipynb",
    )
    yield front
    front.backend.close()


def test_the_kernel_api_schedules_a_notebook_through_the_server(
    jupyter_server: RunningServer, jobs: Jobs
) -> None:
    cell = {"id": "p", "cell_type": "code", "metadata": {"tags": ["parameters"]},
            "source": "scheduled_time = None", "outputs": [], "execution_count": None}  # fmt: skip
    notebook = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (jupyter_server.home.root_dir / "daily.ipynb").write_text(json.dumps(notebook))

    made = jobs.schedule("daily.ipynb", cron="0 6 * * *", timezone="Europe/Paris", retries=1)
    assert made.name == "daily" and made.job == {"retries": 1} and made.next_run is not None
    assert [s.id for s in jobs.schedules()] == [made.id]
    assert jobs.pause_schedule(made.id).next_run is None
    resumed = jobs.resume_schedule(made.id)
    assert resumed.next_run == made.next_run  # the same next 06:00

    # the server's consumer fires it when it is due; here the store is told the time
    with Store(jupyter_server.home.db_path) as store:
        (run,) = store.fire_schedules(made.next_run + 1)
    page = jupyter_server.session.get(
        f"{jupyter_server.url}jobs/api/jobs", params={"schedule": made.id}, timeout=30
    ).json()
    assert [j["id"] for j in page["jobs"]] == [run.id]
    assert page["jobs"][0]["scheduled_time"] == made.next_run

    jobs.delete_schedule(made.id)
    with pytest.raises(ScheduleNotFound):
        jobs.get_schedule(made.id)


def test_the_kernel_api_refuses_what_the_server_cannot_schedule(jobs: Jobs) -> None:
    with pytest.raises(NotebookNotFound, match=r"nowhere\.ipynb"):
        jobs.schedule("nowhere.ipynb", every=3600)
    with pytest.raises(InvalidRequest, match="JobQueue"):
        jobs.schedule(len, every=3600)
    with pytest.raises(InvalidRequest, match="timezone"):
        jobs.schedule("x.ipynb", cron="0 6 * * *", timezone="Nowhere/Land")
