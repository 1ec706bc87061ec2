"""Many clients at once against a real server: every accepted job runs exactly once."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from jupyter_jobs.payload import function_payload

import jobfuncs
from servers import RunningServer, ServerFactory, poll

CLIENTS = 8
SUBMITS = 250


@pytest.mark.slow
def test_8_clients_250_submits_each_run_exactly_once(
    jupyter_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = jupyter_server_factory(config={"JobsApp": {"max_workers": 2}})
    marks = tmp_path / "marks"
    payload = base64.b64encode(function_payload(jobfuncs.mark, (str(marks),))).decode()

    def client(n: int) -> list[int]:
        with requests.Session() as session:
            session.headers["Authorization"] = f"token {server.token}"
            ids = []
            for i in range(SUBMITS):
                body = {"spec": {"name": f"c{n}-{i}", "owner": f"client{n}"}, "payload": payload}
                response = session.post(server.url + "jobs/api/jobs", json=body, timeout=60)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            return ids

    with ThreadPoolExecutor(CLIENTS) as pool:
        submitted = [i for ids in pool.map(client, range(CLIENTS)) for i in ids]
    assert len(submitted) == len(set(submitted)) == CLIENTS * SUBMITS

    def all_done() -> bool:
        counts = server.api("GET", "jobs/api/stats").json()["counts"]
        assert counts["failed"] == counts["cancelled"] == 0, counts
        return counts["succeeded"] == CLIENTS * SUBMITS

    poll(all_done, 600, "all jobs succeeded", interval=0.5)
    runs = [line.split() for line in marks.read_text().splitlines()]
    ran = [int(job_id) for job_id, _ in runs]
    assert sorted(ran) == sorted(submitted), "a job ran twice, or not at all"
    assert {attempt for _, attempt in runs} == {"1"}


def test_concurrent_submits_with_one_idempotency_key_make_one_job(
    jupyter_server: RunningServer,
) -> None:
    payload = base64.b64encode(function_payload(jobfuncs.noop)).decode()
    body = {"spec": {"idempotency_key": f"once-{time.time()}"}, "payload": payload}

    def submit(_: int) -> tuple[int, int]:
        response = jupyter_server.api("POST", "jobs/api/jobs", json=body)
        assert response.status_code in (200, 201), response.text
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(submit, range(CLIENTS * 4)))
    assert len({job_id for _, job_id in answers}) == 1
    assert 201 in {status for status, _ in answers}
    counts = jupyter_server.api("GET", "jobs/api/stats").json()["counts"]
    assert sum(counts.values()) == 1
