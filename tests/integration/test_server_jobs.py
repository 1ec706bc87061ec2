"""A real `jupyter server` subprocess hosting jupyter_jobs: submit over HTTP, run, fetch results,
events over the websocket, the kernel environment, and `jupyter server extension list`."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from jupyter_jobs.payload import function_payload
from jupyter_jobs.workspace import INCOMING, folder_for

import jobfuncs
from servers import (
    TEST_CONFIG,
    RunningServer,
    ServerFactory,
    entries,
    job_events,
    poll,
    submit_body,
)


@pytest.fixture
def server(shared_jupyter_server: RunningServer) -> RunningServer:
    """One server for this module's tests: none of them needs the queue to itself."""
    return shared_jupyter_server


def test_submit_run_result_over_http(server: RunningServer) -> None:
    job = server.submit(jobfuncs.add, 2, 40, name="add")
    assert job["status"] in ("queued", "running")
    assert server.result(job["id"]) == 42
    done = server.job(job["id"])
    assert done["status"] == "succeeded"
    assert done["attempt"] == 1
    assert done["started_at"] <= done["finished_at"]


def test_large_payload_by_multipart_and_large_result(server: RunningServer) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB of every byte value
    payload = function_payload(len, (data,))
    response = server.api(
        "POST",
        "jobs/api/jobs",
        files={
            "spec": (None, json.dumps({"name": "len"}), "application/json"),
            "payload": ("payload", payload, "application/octet-stream"),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["payload_size"] == len(payload)
    assert server.result(response.json()["id"]) == len(data)
    big = server.submit(jobfuncs.blob, 5 * 2**20)
    assert server.result(big["id"]) == b"x" * (5 * 2**20)


def test_an_upload_cut_short_leaves_no_file_behind(server: RunningServer) -> None:
    incoming = folder_for(server.home.db_path) / INCOMING
    boundary = "cut-short"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="spec"\r\n\r\n{{}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="payload"\r\n\r\n'
    ).encode()
    request = (
        f"POST /jobs/api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: token {server.token}\r\nContent-Length: {100 * 2**20}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request + head + b"x" * (3 * 2**20))  # of 100 MiB announced
        poll(lambda: incoming.exists() and any(incoming.iterdir()), 30, "the payload spooled")
    poll(lambda: not any(incoming.iterdir()), 30, "the spooled part removed")


def test_failed_job_result_is_409_with_the_error(server: RunningServer) -> None:
    job = server.submit(jobfuncs.fail, "broken on purpose")
    response = server.api("GET", f"jobs/api/jobs/{job['id']}/result", params={"wait": 60})
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail["status"] == "failed"
    assert detail["error"]["type"] == "ValueError"
    assert "broken on purpose" in detail["error"]["message"]


def test_events_arrive_in_order_over_the_websocket(server: RunningServer) -> None:
    events = job_events(server, lambda: server.submit(jobfuncs.sleep, 0.5)["id"])
    # Changes within one window (50 ms) arrive as one entry: the claim and the start may join
    # the creation; the half-second run keeps the end apart.
    assert [(e["action"], e["previous"], e["status"]) for e in events] in (
        [
            ("created", None, "queued"),
            ("transition", "queued", "running"),
            ("transition", "running", "succeeded"),
        ],
        [("created", None, "running"), ("transition", "running", "succeeded")],
    )
    assert events[-1]["attempt"] == 1
    assert {e["name"] for e in events} == {"sleep"}


def test_progress_events(server: RunningServer) -> None:
    events = job_events(server, lambda: server.submit(jobfuncs.progress_steps, 3, 0.3)["id"])
    assert events[-1]["status"] == "succeeded", events[-1]
    done = [e["progress"]["done"] for e in events if e["action"] == "progress"]
    assert done, events
    assert done == sorted(done)
    assert events[-1]["progress"] == {"done": 3, "total": 3, "message": "step 3"}


def test_events_websocket_needs_the_token(server: RunningServer) -> None:
    url = server.url.replace("http", "ws", 1) + "api/events/subscribe"
    try:
        websocket.create_connection(url, timeout=30).close()
    except websocket.WebSocketBadStatusException as e:
        assert e.status_code == 403
    else:
        raise AssertionError("the events websocket accepted a request without a token")


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (whatever thread started them)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def test_kernels_started_by_the_server_can_reach_it(server: RunningServer) -> None:
    before = set(child_pids(server.process.pid))
    response = server.api("POST", "api/kernels", json={"name": "python3"})
    assert response.status_code == 201, response.text
    kernel_id = response.json()["id"]
    try:
        kernels = poll(
            lambda: [
                p
                for p in set(child_pids(server.process.pid)) - before
                if "ipykernel" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
            ],
            60,
            "kernel process",
        )
        env = environ(kernels[0])
        assert env["JUPYTER_JOBS_URL"] == server.url
        assert env["JUPYTER_JOBS_TOKEN"] == server.token
        # What the kernel got is enough to use the API.
        stats = requests.get(
            env["JUPYTER_JOBS_URL"] + "jobs/api/stats",
            headers={"Authorization": f"token {env['JUPYTER_JOBS_TOKEN']}"},
            timeout=30,
        )
        assert stats.status_code == 200
    finally:
        server.api("DELETE", f"api/kernels/{kernel_id}")
    assert server.token not in server.log_text()


def test_server_answers_within_a_second_while_500_jobs_churn(
    server: RunningServer,
) -> None:
    # Each job writes log lines: the consumer has logs, transitions and results to record.
    items = [submit_body(jobfuncs.print_lines, 20) for _ in range(500)]
    response = server.api("POST", "jobs/api/jobs/batch", json={"items": items})
    assert response.status_code == 201, response.text
    ids = [j["id"] for j in response.json()["jobs"]]
    slowest = 0.0
    samples = 0
    deadline = time.monotonic() + 240
    while True:
        start = time.monotonic()
        assert server.api("GET", "api/status").status_code == 200
        slowest = max(slowest, time.monotonic() - start)
        samples += 1
        status = server.api("GET", "jobs/api/status", params={"ids": ",".join(map(str, ids))})
        states = [j["status"] for j in status.json()["jobs"]]
        if states.count("succeeded") == len(ids):
            break
        assert "failed" not in states
        assert time.monotonic() < deadline, states
        time.sleep(0.05)
    assert samples > 1
    assert slowest < 1.0, f"GET /api/status took {slowest:.2f} s while jobs ran"


def test_extension_is_listed_as_enabled(server: RunningServer) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "extension", "list"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = listing.stdout + listing.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)  # drop the colours
    assert re.search(r"^\s+jupyter_jobs enabled$", plain, re.M), output
    assert re.search(r"^\s+jupyter_jobs \S* ?OK$", plain, re.M), output


def test_submit_bad_payload_runs_and_fails_cleanly(server: RunningServer) -> None:
    # The server stores bytes it never unpickles; the worker reports the bad payload.
    body = {"spec": {"name": "junk"}, "payload": base64.b64encode(b"not dill").decode()}
    job = server.api("POST", "jobs/api/jobs", json=body).json()
    done = server.wait_status(job["id"], "failed")
    assert done["reason"] == "payload"


def test_jupyter_lab_hosts_the_queue_too(jupyter_lab: RunningServer) -> None:
    assert jupyter_lab.api("GET", "lab").status_code == 200
    job = jupyter_lab.submit(jobfuncs.add, 1, 1)
    assert jupyter_lab.result(job["id"]) == 2


def test_jupyter_notebook_hosts_the_queue_too(jupyter_server_factory: ServerFactory) -> None:
    notebook = jupyter_server_factory(app="notebook", config=TEST_CONFIG)
    assert notebook.api("GET", "tree").status_code == 200
    job = notebook.submit(jobfuncs.add, 2, 2)
    assert notebook.result(job["id"]) == 4


def test_jobs_waiting_behind_busy_workers_show_queued_until_they_start(
    jupyter_server: RunningServer, tmp_path: Path
) -> None:
    server = jupyter_server
    # Short jobs first: the consumer then claims ahead and sends jobs ahead to busy workers.
    for job in [server.submit(jobfuncs.noop) for _ in range(30)]:
        server.wait_status(job["id"], "succeeded")
    ws = websocket.create_connection(
        server.url.replace("http", "ws", 1) + "api/events/subscribe",
        header=[f"Authorization: token {server.token}"],
        timeout=60,
    )
    try:
        gate = tmp_path / "gate"
        ids = [server.submit(jobfuncs.wait_for_file, str(gate))["id"] for _ in range(4)]
        stats = poll(
            lambda: (s := server.api("GET", "jobs/api/stats").json())["running"] == 2 and s,
            60,
            "two jobs running",
        )
        jobs = [server.job(i) for i in ids]
        assert (stats["queued"], stats["counts"]["queued"], stats["counts"]["running"]) == (2, 2, 2)
        waiting = [j["id"] for j in jobs if j["status"] == "queued"]
        assert len(waiting) == 2
        assert [server.job(i)["started_at"] for i in waiting] == [None, None]
        listed = server.api("GET", "jobs/api/jobs", params={"status": "running"}).json()
        assert sorted(j["id"] for j in listed["jobs"]) == sorted(set(ids) - set(waiting))
        # Events go out per 50 ms window, a job's changes in one window as one entry: open the
        # gate once the window that saw the two jobs start has gone out.
        shown: dict[int, str] = {}
        deadline = time.monotonic() + 60
        while [shown.get(i) for i in ids] != [j["status"] for j in jobs]:
            assert time.monotonic() < deadline, shown
            shown.update((e["id"], e["status"]) for e in entries(json.loads(ws.recv())))
        opened = time.time()
        gate.touch()
        events: list[dict[str, Any]] = []
        ended: set[int] = set()
        while len(ended) < 4:
            assert time.monotonic() < deadline, events
            for event in entries(json.loads(ws.recv())):
                if event["id"] in ids:
                    events.append(event)
                    if event["status"] in ("succeeded", "failed", "cancelled"):
                        ended.add(event["id"])
    finally:
        ws.close()
    # Out of the queue only once a worker came free: after the event of the job that ended
    # (in the same commit, the ended job's event comes first), or later.
    first_end = next(n for n, e in enumerate(events) if e["status"] == "succeeded")
    for job_id in waiting:
        left = [n for n, e in enumerate(events) if e["id"] == job_id and e["action"] != "created"]
        assert left and left[0] >= first_end, events
        assert server.job(job_id)["started_at"] >= opened


def test_with_an_events_socket_open_every_job_of_a_drain_ends_in_its_final_state(
    jupyter_server_factory: ServerFactory,
) -> None:
    # 2,000 no-op jobs drain while a subscriber listens: the events are coalesced per window,
    # and the last entry of every job must carry its final status (none lost).
    server = jupyter_server_factory(config={"JobsApp": {"max_workers": 2}})
    ws = websocket.create_connection(
        server.url.replace("http", "ws", 1) + "api/events/subscribe",
        header=[f"Authorization: token {server.token}"],
        timeout=60,
    )
    last: dict[int, dict[str, Any]] = {}
    ended_at: dict[int, float] = {}
    try:
        item = submit_body(jobfuncs.noop)
        ids: list[int] = []
        for _ in range(4):
            response = server.api("POST", "jobs/api/jobs/batch", json={"items": [item] * 500})
            assert response.status_code == 201, response.text
            ids += [job["id"] for job in response.json()["jobs"]]
        deadline = time.monotonic() + 300
        while len(ended_at) < len(ids):
            assert time.monotonic() < deadline, f"{len(ended_at)} of {len(ids)} jobs ended"
            for event in entries(json.loads(ws.recv())):
                last[event["id"]] = event
                if event["status"] in ("succeeded", "failed", "cancelled"):
                    ended_at.setdefault(event["id"], time.time())
    finally:
        ws.close()
    assert sorted(last) == sorted(ids)
    assert {last[i]["status"] for i in ids} == {"succeeded"}
    assert {last[i]["actions"] == ["delete"] for i in ids} == {True}
    # The final state arrives soon after the job ended (a generous bound: the window is 50 ms).
    finished = {
        job["id"]: job["finished_at"]
        for job in server.api(
            "GET", "jobs/api/status", params={"ids": ",".join(map(str, ids[-200:]))}
        ).json()["jobs"]
    }
    late = {i: ended_at[i] - finished[i] for i in finished if ended_at[i] - finished[i] > 5.0}
    assert not late, late
