"""Result channels through a real `jupyter server`: the REST routes (`/jobs/api/channels/...`,
a long poll on the waiter machinery) and `jupyter_jobs.results` in a kernel (this test process
plays the kernel, as in test_kernel_api)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_jobs import errors
from jupyter_jobs.kernel import api

import jobfuncs
from servers import RunningServer


def connect(monkeypatch: pytest.MonkeyPatch, server: RunningServer) -> None:
    """Play a kernel the server started (as test_kernel_api does)."""
    monkeypatch.setenv("JUPYTER_JOBS_URL", server.url)
    monkeypatch.setenv("JUPYTER_JOBS_TOKEN", server.token)
    monkeypatch.setenv("JPY_SESSION_NAME", "/notebooks/channels.ipynb")
    api.reset_connection()


@pytest.fixture
def server(shared_jupyter_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    connect(monkeypatch, shared_jupyter_server)
    yield shared_jupyter_server
    api.reset_connection()


def next_batch(server: RunningServer, channel: str, **query: Any) -> dict[str, Any]:
    response = server.api("GET", f"jobs/api/channels/{channel}/next", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def test_rest_next_answers_in_finishing_order_and_ack_moves_the_cursor(server):
    jobs = [server.submit(jobfuncs.add, i, channel="rest-1") for i in range(3)]
    for job in jobs:
        server.wait_status(job["id"], "succeeded")
    batch = next_batch(server, "rest-1", reader="r", limit=10)
    assert batch["acked"] == 0 and {i["job"]["id"] for i in batch["items"]} == {
        j["id"] for j in jobs
    }
    seqs = [item["seq"] for item in batch["items"]]
    assert seqs == sorted(seqs)
    finished = [item["job"]["finished_at"] for item in batch["items"]]
    assert finished == sorted(finished)
    ack = server.api("POST", "jobs/api/channels/rest-1/ack", json={"reader": "r", "seq": seqs[1]})
    assert ack.json() == {"channel": "rest-1", "reader": "r", "acked": seqs[1]}
    rest = next_batch(server, "rest-1", reader="r", limit=10)
    assert [i["seq"] for i in rest["items"]] == seqs[2:] and rest["acked"] == seqs[1]


def test_rest_next_long_polls_until_a_job_of_the_channel_ends(server):
    got: list[dict[str, Any]] = []
    waiter = threading.Thread(
        target=lambda: got.append(next_batch(server, "rest-wait", reader="w", wait=60))
    )
    waiter.start()
    other = server.submit(jobfuncs.add, 1, channel="rest-elsewhere")
    server.wait_status(other["id"], "succeeded")
    job = server.submit(jobfuncs.sleep, 0.3, channel="rest-wait")
    waiter.join(90)
    assert not waiter.is_alive()
    assert [item["job"]["id"] for item in got[0]["items"]] == [job["id"]]


def test_rest_refuses_bad_names_and_numbers_with_400(server):
    assert server.api("GET", "jobs/api/channels/-bad/next").status_code == 400
    bad_reader = server.api("GET", "jobs/api/channels/ok/next", params={"reader": "a b"})
    assert bad_reader.status_code == 400 and "reader" in bad_reader.json()["message"]
    for body in ({"seq": "one"}, {"seq": 0}, {"seq": 10**15}, {"seq": 1, "extra": 1}):
        response = server.api("POST", "jobs/api/channels/ok/ack", json=body)
        assert response.status_code == 400, (body, response.text)
    too_long = server.api("GET", f"jobs/api/channels/{'x' * 201}/next")
    assert too_long.status_code == 400 and "longer" in too_long.json()["message"]


def test_kernel_results_are_each_delivered_once_per_reader(server):
    jobs = api.map(jobfuncs.add, range(4), channel="kernel-sweep")
    for job in jobs:
        job.result(timeout=60)
    first = [job.id for job in api.results("kernel-sweep", reader="k1", timeout=0)]
    second = api.results("kernel-sweep", reader="k2", timeout=60, count=4)
    values = sorted(job.result() for job in second)
    assert sorted(first) == sorted(j.id for j in jobs) and values == [0, 1, 2, 3]
    assert list(api.results("kernel-sweep", reader="k1", timeout=0)) == []


def test_kernel_results_wait_for_jobs_submitted_later(server):
    reader = api.results("kernel-live", timeout=60, count=1)
    job = api.submit(jobfuncs.sleep, 0.3, channel="kernel-live")
    (got,) = reader
    assert got.id == job.id and got.result() == 0.3


def test_kernel_results_timeout_raises_with_a_count(server):
    with pytest.raises(TimeoutError, match="got 0 of 1"):
        next(api.results("kernel-empty", timeout=0.2, count=1))
    with pytest.raises(errors.InvalidRequest, match="channel"):
        api.submit(jobfuncs.add, 1, channel="with space")


def test_a_kernel_reader_resumes_after_what_it_acknowledged(server):
    for i in range(2):
        api.submit(jobfuncs.add, i, channel="kernel-resume").result(timeout=60)
    first = next(api.results("kernel-resume", reader="me", timeout=0))
    # a new iterator (a restarted kernel) gets the unacknowledged job again ...
    again = next(api.results("kernel-resume", reader="me", timeout=0))
    assert again.id == first.id
    again.ack()
    # ... and after the ack, the next one
    (rest,) = api.results("kernel-resume", reader="me", timeout=0)
    assert rest.id != first.id
