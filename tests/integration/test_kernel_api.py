"""The kernel API (`jj.submit`, `map`, `get`, `jobs`) against a real `jupyter server`.

This test process plays the kernel: it finds the server through JUPYTER_JOBS_URL/TOKEN (what a
kernel launched by the server inherits) or through the server's runtime file, and its jobs run
in the server's worker processes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_jobs import errors
from jupyter_jobs.kernel import api
from jupyter_jobs.kernel import client as client_module
from jupyter_jobs.kernel.client import INLINE_PAYLOAD_LIMIT, discover
from jupyter_jobs.models import Status
from jupyter_jobs.server import handlers

import jobfuncs
from servers import RunningServer, poll

OWNER = "/notebooks/api-test.ipynb"


def connect(monkeypatch: pytest.MonkeyPatch, server: Any) -> None:
    monkeypatch.setenv("JUPYTER_JOBS_URL", server.url)
    monkeypatch.setenv("JUPYTER_JOBS_TOKEN", server.token)
    monkeypatch.setenv("JPY_SESSION_NAME", OWNER)
    api.reset_connection()


@pytest.fixture
def server(shared_jupyter_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    connect(monkeypatch, shared_jupyter_server)
    yield shared_jupyter_server
    api.reset_connection()


class Requests:
    """Every request the kernel's client sends: (method, path, query, content type)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], str | None]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Requests:
        client = api.connection().client
        original = client.request

        def request(method: str, path: str, **kwargs: Any) -> Any:
            query = dict(kwargs.get("query") or {})
            self.calls.append((method, path, query, kwargs.get("content_type")))
            return original(method, path, **kwargs)

        monkeypatch.setattr(client, "request", request)
        return self

    def install_with_threads(self, monkeypatch: pytest.MonkeyPatch) -> Requests:
        """Also note which thread sent each request (`threaded`: thread name, path)."""
        self.threaded: list[tuple[str, str]] = []
        client = api.connection().client
        original = client.request

        def request(method: str, path: str, **kwargs: Any) -> Any:
            self.threaded.append((threading.current_thread().name, path))
            return original(method, path, **kwargs)

        monkeypatch.setattr(client, "request", request)
        return self

    def from_this_thread(self) -> list[str]:
        here = threading.current_thread().name
        return [path for thread, path in self.threaded if thread == here]


def test_submit_runs_with_this_processes_interpreter_cwd_and_owner(server):
    job = api.submit(jobfuncs.add, 2, b=3, name="adding")
    assert job.result(timeout=60) == 5
    record = job.record
    assert record.name == "adding" and record.status is Status.SUCCEEDED
    assert record.interpreter == sys.executable
    assert record.cwd == os.getcwd()
    assert record.owner == OWNER
    assert job.done() and not job.running() and job.exception() is None


def test_map_sends_one_request(server, monkeypatch):
    seen = Requests().install(monkeypatch)
    jobs = api.map(jobfuncs.add, range(5), name="plus", priority=3)
    posts = [c for c in seen.calls if c[0] == "POST"]
    assert [(m, p) for m, p, _, _ in posts] == [("POST", "jobs/batch")]
    assert [j.name for j in jobs] == [f"plus[{i}]" for i in range(5)]
    assert [j.result(timeout=60) for j in jobs] == [0, 1, 2, 3, 4]
    assert {j.record.priority for j in jobs} == {3}
    assert api.map(jobfuncs.add, []) == []


def test_get_and_jobs_list_this_notebooks_jobs(server):
    mine = api.submit(jobfuncs.add, 1)
    theirs = server.submit(jobfuncs.add, 1, owner="/elsewhere.ipynb")
    mine.result(timeout=60)
    server.wait_status(theirs["id"], "succeeded")
    assert api.get(mine.id).result(timeout=60) == 1
    own_ids = [j.id for j in api.jobs()]
    assert mine.id in own_ids and theirs["id"] not in own_ids
    all_ids = [j.id for j in api.jobs(all=True)]
    assert {mine.id, theirs["id"]} <= set(all_ids)
    assert all_ids == sorted(all_ids, reverse=True)  # newest first
    assert [j.id for j in api.jobs(status="failed")] == []
    assert mine.id in [j.id for j in api.jobs(status=["succeeded", "failed"])]


def test_errors_come_back_as_their_types(server):
    with pytest.raises(errors.JobNotFound) as missing:
        api.get(10**9)
    assert missing.value.job_id == 10**9
    done = api.submit(jobfuncs.add, 1)
    done.result(timeout=60)
    with pytest.raises(errors.IllegalTransition):
        api.connection().cancel(done.id)
    assert done.cancel() is False  # the handle knows it finished
    with pytest.raises(errors.InvalidRequest, match="priority"):
        api.submit(jobfuncs.add, 1, priority="high")


def test_a_failure_carries_the_remote_error_and_retry_runs_it_again(server):
    job = api.submit(jobfuncs.fail, "broken on purpose")
    with pytest.raises(errors.JobFailed) as failed:
        job.result(timeout=60)
    assert failed.value.type.endswith("ValueError")
    assert failed.value.remote_message == "broken on purpose"
    assert "broken on purpose" in failed.value.remote_traceback
    assert isinstance(job.exception(), errors.JobFailed)
    again = job.retry()
    assert again.id == job.id
    with pytest.raises(errors.JobFailed):
        again.result(timeout=60)
    assert again.record.attempt == 2


def test_cancel_a_running_job(server):
    job = api.submit(jobfuncs.chatty_then_sleep, 60)
    poll(lambda: "started" in job.logs(), 60, "the job's first log line")
    assert job.running()
    assert job.cancel() is True
    with pytest.raises(errors.JobCancelled):
        job.result(timeout=60)
    assert job.cancelled()


def test_wait_is_bounded_and_jobs_are_awaitable(server):
    job = api.submit(jobfuncs.sleep, 2.0)
    assert job.wait(timeout=0.1) is job
    assert not job.done()

    async def main() -> float:
        return await job

    assert asyncio.run(asyncio.wait_for(main(), 60)) == 2.0


def test_a_zero_timeout_asks_the_server_once(server):
    job = api.submit(jobfuncs.add, 2, 3)
    poll(lambda: server.job(job.id)["status"] == "succeeded", 60, "the job succeeded")
    assert job.result(timeout=0) == 5  # the handle had not heard: it asks, without waiting
    running = api.submit(jobfuncs.sleep, 60)
    with pytest.raises(concurrent.futures.TimeoutError):
        running.result(timeout=0)
    running.cancel()


def test_large_payloads_go_multipart(server, monkeypatch):
    seen = Requests().install(monkeypatch)
    data = b"\x00\xff" * INLINE_PAYLOAD_LIMIT  # twice the inline limit, not valid UTF-8
    job = api.submit(len, data)
    assert job.result(timeout=60) == len(data)
    small = api.submit(len, b"abc")
    assert small.result(timeout=60) == 3
    big_post, small_post = [c[3] for c in seen.calls if c[0] == "POST"]
    assert big_post.startswith("multipart/form-data; boundary=")
    assert small_post == "application/json"


def test_big_array_arguments_and_results_travel_as_their_memory(server, monkeypatch):
    import numpy as np

    seen = Requests().install(monkeypatch)
    data = np.arange(2_000_000.0)  # 16 MB
    job = api.submit(np.multiply, data, 2)
    back = job.result(timeout=120)
    assert np.array_equal(back, data * 2) and back.flags.owndata and back.flags.writeable
    (post,) = [c[3] for c in seen.calls if c[0] == "POST"]
    assert post.startswith("multipart/form-data; boundary=")


def test_a_payload_over_the_servers_limit_is_refused(jupyter_server_factory, monkeypatch):
    server = jupyter_server_factory(config={"JobsApp": {"max_payload_size": 50_000}})
    connect(monkeypatch, server)
    with pytest.raises(errors.PayloadTooLarge):
        api.submit(len, b"x" * 100_000)
    with pytest.raises(errors.PayloadTooLarge):
        api.submit(len, b"x" * (INLINE_PAYLOAD_LIMIT + 1))
    api.reset_connection()


def test_one_batched_status_request_per_tick(server, monkeypatch):
    seen = Requests().install(monkeypatch)
    jobs = [api.submit(jobfuncs.sleep, 1.0 + i * 0.1) for i in range(6)]
    assert all(j.id for j in jobs)  # stored (in the background: `id` waits for it)
    submitted = len(seen.calls)
    assert [c for c in seen.calls if c[1] == "status"] == []  # nobody waits on a future yet
    finished, _ = concurrent.futures.wait(jobs, timeout=120)  # waits on the futures: polled
    assert len(finished) == 6
    assert sorted(j.result(timeout=120) for j in jobs) == [1.0 + i * 0.1 for i in range(6)]
    batches = [
        {int(i) for i in q["ids"].split(",")}
        for m, p, q, _ in seen.calls[submitted:]
        if p == "status"
    ]
    assert batches, "the poller asked nothing"
    assert max(len(b) for b in batches) == 6  # all watched jobs in one request
    # each tick asks about every job still watched: the sets only shrink
    assert all(later <= earlier for earlier, later in itertools.pairwise(batches))
    poll(lambda: not api.connection().poller.running, 30, "poller stopped")


def test_results_of_many_jobs_come_in_one_batched_request(server, monkeypatch):
    jobs = [api.submit(jobfuncs.add, i) for i in range(30)]
    failing = api.submit(jobfuncs.fail, "broken on purpose")
    for job in [*jobs, failing]:
        server.wait_status(job.id, "succeeded", "failed")
    seen = Requests().install(monkeypatch)
    assert [j.result(timeout=60) for j in jobs] == list(range(30))
    with pytest.raises(errors.JobFailed, match="broken on purpose"):
        failing.result(timeout=60)
    assert [(m, p) for m, p, _, _ in seen.calls] == [("GET", "results")]
    asked = [int(i) for i in seen.calls[0][2]["ids"].split(",")]
    assert asked[0] == jobs[0].id and set(asked) == {j.id for j in [*jobs, failing]}


def test_results_beyond_the_batch_byte_limit_come_one_by_one(server, monkeypatch):
    monkeypatch.setattr(client_module, "RESULTS_BYTES", 5000)
    jobs = [api.submit(jobfuncs.blob, 3000) for _ in range(3)]
    for job in jobs:
        server.wait_status(job.id, "succeeded")
    seen = Requests().install(monkeypatch)
    assert [j.result(timeout=60) for j in jobs] == [b"x" * 3000] * 3
    paths = [p for _, p, _, _ in seen.calls]
    assert paths[0] == "results"
    assert len(paths) == 3  # one batch brought the first result; the other two, one each
    assert paths[1:] == [f"jobs/{j.id}/result" for j in jobs[1:]]


def test_discovery_through_the_servers_runtime_file(server, monkeypatch):
    monkeypatch.delenv("JUPYTER_JOBS_URL")
    monkeypatch.delenv("JUPYTER_JOBS_TOKEN")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(server.home.runtime_dir))
    found = discover()
    assert found.url == server.url and found.token == server.token
    assert found.source == "runtime file"
    api.reset_connection()
    assert api.submit(jobfuncs.add, 20, 22).result(timeout=60) == 42


def test_requests_share_one_keep_alive_connection(server, monkeypatch):
    client = api.connection().client
    opened = []
    original = client._connection

    def counting() -> Any:
        conn, fresh = original()
        opened.append((threading.current_thread().name, fresh))
        return conn, fresh

    monkeypatch.setattr(client, "_connection", counting)
    for i in range(10):
        assert api.submit(jobfuncs.add, i).result(timeout=60) == i
    # submits go from the submitter's thread, result polls from this one
    assert len(opened) >= 20
    fresh = sorted(name for name, new in opened if new)
    assert fresh == sorted({name for name, _ in opened})  # one connection per thread


def test_submits_in_a_loop_are_batched_and_stored_in_order(server, monkeypatch):
    seen = Requests().install(monkeypatch)
    jobs = [api.submit(jobfuncs.add, i, name=f"loop{i}") for i in range(300)]
    ids = [j.id for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 300  # stored in submission order
    posts = [p for m, p, _, _ in seen.calls if m == "POST"]
    assert "jobs/batch" in posts and len(posts) < 300  # what piled up went together
    assert [j.result(timeout=120) for j in jobs] == list(range(300))
    assert [j.record.name for j in jobs[:3]] == ["loop0", "loop1", "loop2"]


def test_a_job_the_server_refuses_fails_alone_with_the_servers_error(server):
    before = api.submit(jobfuncs.add, 1)
    bad = api.submit(jobfuncs.add, 2, after=[10**9])  # valid here, unknown to the server
    later = api.submit(jobfuncs.add, 3)
    with pytest.raises(errors.JobNotFound) as refused:
        bad.result(timeout=60)
    assert refused.value.job_id == 10**9
    assert isinstance(bad.exception(timeout=60), errors.JobNotFound)
    assert bad.done() and not bad.running() and not bad.cancelled() and not bad.cancel()
    with pytest.raises(errors.JobNotFound):
        bad.id  # noqa: B018  (a refused job has no id)
    assert "refused" in repr(bad)
    assert before.result(timeout=60) == 1 and later.result(timeout=60) == 3
    with pytest.raises(errors.JobNotFound):  # map is one transaction: it raises at once
        api.map(jobfuncs.add, [1, 2], after=[10**9])


def test_a_job_can_wait_on_one_still_being_submitted(server):
    first = api.submit(jobfuncs.sleep, 0.5)
    second = api.submit(jobfuncs.add, 1, after=[first])
    assert second.result(timeout=60) == 1
    assert second.record.after == [first.id]
    assert first.done()


def test_a_process_that_exits_right_after_submitting_loses_no_job(server, tmp_path):
    owner = f"/exit-test-{os.getpid()}.ipynb"
    script = (
        "import jobfuncs\n"
        "from jupyter_jobs.kernel import api\n"
        "for i in range(200):\n"
        "    api.submit(jobfuncs.add, i)\n"
    )
    env = dict(
        os.environ,
        JPY_SESSION_NAME=owner,
        PYTHONPATH=os.pathsep.join([str(jobfuncs.__file__).rsplit(os.sep, 1)[0], *sys.path]),
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    listed = server.api("GET", "jobs/api/jobs", params={"owner": owner, "limit": 500}).json()
    assert len(listed["jobs"]) == 200
    assert sorted(j["name"] for j in listed["jobs"]) == sorted(["add"] * 200)


def test_a_widget_tells_a_record_from_before_its_end_from_a_run_started_elsewhere(server, tmp_path):
    """The widget's part of following retries, in this process (no kernel: its namespace work
    runs at once); test_widget.py does the same from a real kernel."""
    from jupyter_jobs.kernel.widget import widget_for

    job = api.submit(jobfuncs.fail_until, str(tmp_path / "marks"), 2, name="rerun-widget")
    with pytest.raises(errors.JobFailed):
        job.result(timeout=60)
    widget = widget_for(job)
    widget.complete()  # what `show()` does, besides displaying (which needs a kernel)
    api.connection().poller.watch(job.id, widget)
    assert widget.record.status is Status.FAILED and widget.action.description == "Retry"

    # fetched by the poller just before the end the widget shows: not a new run
    before_end = dataclasses.replace(job.record, status=Status.RUNNING, finished_at=None)
    widget.observe(before_end)
    assert widget.job is job and widget.record.status is Status.FAILED

    response = server.api("POST", f"jobs/api/jobs/{job.id}/retry", json={})  # the sidebar's
    assert response.status_code == 200, response.text
    poll(lambda: widget.record.status is Status.SUCCEEDED, 60, "the widget follows the retry")
    assert widget.job is not job and widget.job.result() == 2
    assert widget.record.attempt == 2 and widget.outputs == []


def test_submits_while_the_server_restarts_wait_for_it_and_run_once(
    jupyter_server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import TEST_CONFIG

    first = jupyter_server_factory(config=TEST_CONFIG)
    connect(monkeypatch, first)
    assert api.submit(jobfuncs.add, 1, 1).result(60) == 2
    first.kill()
    # A notebook loop goes on submitting while nothing answers (`map` waits until its jobs are
    # stored, so the server comes back meanwhile): no error, nothing lost, nothing twice.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        restarted = pool.submit(
            jupyter_server_factory, first.home, config=TEST_CONFIG, replacing=first
        )
        handles = [api.submit(jobfuncs.add, i, 100) for i in range(5)]
        handles += api.map(jobfuncs.add, range(105, 110))
        second = restarted.result(120)
    assert [h.result(60) for h in handles] == [i + 100 for i in range(10)]
    assert second.api("GET", "jobs/api/stats").json()["counts"]["succeeded"] == 11
    api.reset_connection()


def test_a_submit_whose_answer_was_lost_is_stored_once(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = api.connection()
    store_once = backend._store_once
    lost: list[int] = []

    def answer_lost_once(items: Any) -> Any:
        records = store_once(items)  # the server stored them ...
        if not lost:
            lost.append(len(records))  # ... and the connection died before the answer
            raise errors.ServerUnreachable("connection reset")
        return records

    monkeypatch.setattr(backend, "_store_once", answer_lost_once)
    before = sum(server.api("GET", "jobs/api/stats").json()["counts"].values())
    job = api.submit(jobfuncs.add, 20, 22)
    assert job.result(60) == 42 and lost == [1]
    assert sum(server.api("GET", "jobs/api/stats").json()["counts"].values()) == before + 1
    assert server.job(job.id)["idempotency_key"].startswith("kernel-")


def test_done_asks_the_server_nothing_and_sees_the_end_the_poller_pushed(
    server, tmp_path, monkeypatch
):
    gate = tmp_path / "gate"
    job = api.submit(jobfuncs.wait_for_file, str(gate), 60)
    job.id  # noqa: B018  (stored)
    seen = Requests().install_with_threads(monkeypatch)
    assert not any(job.done() for _ in range(200))
    assert seen.from_this_thread() == []
    gate.touch()
    poll(job.done, 60, "done() turns True from the poller's push")
    assert seen.from_this_thread() == []
    assert any(path == "status" for _, path in seen.threaded)  # the poller asked, batched


def test_cancelled_turns_true_once_a_cancelled_running_job_has_ended(server):
    job = api.submit(jobfuncs.chatty_then_sleep, 60)
    poll(lambda: "started" in job.logs(), 60, "the job's first log line")
    assert job.cancel() is True and not job.done()
    poll(job.cancelled, 60, "cancelled() without a wait")
    with pytest.raises(concurrent.futures.CancelledError):  # JobCancelled is one
        job.result(timeout=0)


def test_both_front_ends_name_and_configure_a_map_the_same_way(server, tmp_path):
    from jupyter_jobs import JobQueue, options

    call = {
        "name": "same",
        "priority": 4,
        "retries": 2,
        "retry_delay": 0.5,
        "timeout": 30.0,
        "idempotency_key": f"same-{os.getpid()}-{tmp_path.name}",
    }
    remote = api.map(jobfuncs.add, [1, 2], **call)
    with JobQueue(tmp_path / "engine.db") as queue:  # no consumer: only what is stored counts
        local = queue.map(jobfuncs.add, [1, 2], **call)
        # a kernel's jobs run with its own interpreter and directory, the engine's with none
        compared = [o.name for o in options.OPTIONS if o.name not in ("interpreter", "cwd")]
        for a, b in zip(remote, local, strict=True):
            assert {f: getattr(a.record, f) for f in compared if hasattr(a.record, f)} == {
                f: getattr(b.record, f) for f in compared if hasattr(b.record, f)
            }
        assert [j.name for j in local] == ["same[0]", "same[1]"]


@pytest.mark.skipif(
    not any(pattern.endswith("/release") for pattern, _ in handlers.ROUTES),
    reason="the server has no release route yet (added by the store work of issue 14)",
)
def test_a_held_job_runs_once_released_through_the_server(server):
    job = api.submit(jobfuncs.add, 40, b=2, hold=True)
    assert job.refresh().status is Status.PENDING
    assert api.release(job.id).id == job.id
    assert job.result(timeout=60) == 42
    with pytest.raises(errors.IllegalTransition):
        api.release(job.id)


def test_waiting_on_a_handle_merges_nothing_until_the_done_callback_of_the_cell(server):
    """The namespace work of a `%%job` cell is the done callback its magic registers on the
    handle (`finish_if_main`); `wait()` itself knows nothing of widgets or namespaces."""
    from jupyter_jobs.kernel.widget import widget_for

    merged: list[Any] = []
    job = api.submit(jobfuncs.add, 41, 1)
    widget = widget_for(job, on_result=merged.append)
    assert job.wait(60).done()  # on the main thread, where names could be set
    assert merged == []
    job.add_done_callback(widget.finish_if_main)  # what `%%job` registers
    assert merged == [42]


def test_a_held_jobs_widget_offers_release_and_releasing_runs_it(server):
    from jupyter_jobs.kernel.widget import widget_for

    job = api.submit(jobfuncs.add, 2, 3, name="held-widget", hold=True)
    widget = widget_for(job)
    widget.observe(poll(lambda: job.refresh() if job.id else None, 30, "the job stored"))
    assert job.record.held
    assert widget.release.layout.display == ""
    assert widget.action.description == "Cancel"
    widget.release.click()
    assert not widget.problem
    assert job.result(timeout=60) == 5
    widget.observe(job.refresh())
    assert widget.release.layout.display == "none"
