"""Functions stored once (`shared.py`) over REST and through the kernel API, against a real
`jupyter server`: a batch carries its function once, the server checks the bytes' sha256 (and
never loads them), a kernel sends a function the server has by name only, a large one raw and
once, and one freed meanwhile in full again."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from test_kernel_api import connect

from jupyter_jobs import errors
from jupyter_jobs.kernel import api
from jupyter_jobs.kernel.functions import UPLOAD_OVER
from jupyter_jobs.payload import call_bytes, dumps

import jobfuncs
from servers import RunningServer


def closing_over(data: bytes):
    def size_plus(x: int) -> int:
        return len(data) + x

    return size_plus


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def server(shared_jupyter_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    connect(monkeypatch, shared_jupyter_server)
    yield shared_jupyter_server
    api.reset_connection()


class Sent:
    """What the kernel's client sends (spied on, then sent for real): (method, path, JSON body
    or None, content type)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str, Any, str | None]] = []
        client = api.connection().client
        request = client.request

        def spy(method: str, path: str, **kwargs: Any) -> Any:
            ctype, body = kwargs.get("content_type"), kwargs.get("body")
            found = json.loads(body) if ctype == "application/json" else None
            self.calls.append((method, path, found, ctype))
            return request(method, path, **kwargs)

        monkeypatch.setattr(client, "request", spy)

    def batches(self) -> list[dict[str, Any]]:
        return [body for method, path, body, _ in self.calls if path == "jobs/batch"]

    def clear(self) -> None:
        self.calls.clear()


def stored(server: RunningServer, digest: str) -> dict[str, Any]:
    response = server.api("GET", f"jobs/api/functions/{digest}")
    assert response.status_code == 200, response.text
    return response.json()


# --- REST -------------------------------------------------------------------------------------


def test_put_stores_bytes_under_their_sha256_and_refuses_other_bytes(server) -> None:
    data = dumps(closing_over(os.urandom(5000)))
    digest = sha256(data)
    missing = server.api("GET", f"jobs/api/functions/{digest}")
    assert missing.status_code == 404 and missing.json()["type"] == "FunctionNotFound"
    wrong = server.api("PUT", f"jobs/api/functions/{sha256(b'other')}", data=data)
    assert wrong.status_code == 400, wrong.text
    assert f"have sha256 {digest}" in wrong.json()["message"]
    bad_name = server.api("PUT", "jobs/api/functions/NOT-A-SHA", data=data)
    assert bad_name.status_code == 400 and "sha256" in bad_name.json()["message"]
    put = server.api("PUT", f"jobs/api/functions/{digest}", data=data)
    assert put.status_code == 201, put.text
    assert put.json() == {"sha256": digest, "size": len(data), "references": 0}
    assert server.api("PUT", f"jobs/api/functions/{digest}", data=data).status_code == 200
    assert stored(server, digest)["size"] == len(data)


def test_a_batch_carries_its_function_once_and_its_items_name_it(server) -> None:
    fn = closing_over(os.urandom(3000))
    function = dumps(fn)
    digest = sha256(function)
    items = [
        {"spec": {"name": f"f[{i}]"}, "payload": b64(call_bytes(fn, (i,), {})), "function": digest}
        for i in range(5)
    ]
    made = server.api(
        "POST", "jobs/api/jobs/batch", json={"items": items, "functions": {digest: b64(function)}}
    )
    assert made.status_code == 201, made.text
    ids = [job["id"] for job in made.json()["jobs"]]
    assert [server.result(i) for i in ids] == [3000 + i for i in range(5)]
    assert stored(server, digest)["references"] == 5
    rows = sqlite3.connect(server.home.db_path).execute(
        "SELECT COUNT(*) FROM shared_blobs WHERE sha256 = ?", (digest,)
    )
    assert rows.fetchall() == [(1,)]
    # Named only, now that the server has it.
    again = server.api("POST", "jobs/api/jobs/batch", json={"items": items[:1]})
    assert again.status_code == 201, again.text
    assert server.result(again.json()["jobs"][0]["id"]) == 3000


def test_a_batch_with_bytes_that_are_not_their_name_or_an_unknown_function_is_refused(
    server,
) -> None:
    fn = closing_over(os.urandom(3000))
    function = dumps(fn)
    unknown = sha256(b"never sent")
    item = {"spec": {"name": "f"}, "payload": b64(call_bytes(fn, (1,), {}))}
    mislabeled = server.api(
        "POST",
        "jobs/api/jobs/batch",
        json={"items": [{**item, "function": unknown}], "functions": {unknown: b64(function)}},
    )
    assert mislabeled.status_code == 400, mislabeled.text
    assert mislabeled.json()["detail"] == {"sha256": unknown, "received": sha256(function)}
    missing = server.api(
        "POST", "jobs/api/jobs/batch", json={"items": [{**item, "function": unknown}]}
    )
    assert missing.status_code == 404, missing.text
    assert missing.json()["type"] == "FunctionNotFound"
    assert missing.json()["detail"] == {"sha256": [unknown]}
    unused = server.api(
        "POST",
        "jobs/api/jobs/batch",
        json={"items": [item], "functions": {sha256(function): b64(function)}},
    )
    assert unused.status_code == 400 and "named by no item" in unused.json()["message"]
    bad = server.api("POST", "jobs/api/jobs/batch", json={"items": [{**item, "function": "F00"}]})
    assert bad.status_code == 400 and "items[0]: function must be a sha256" in bad.text


def test_functions_over_the_servers_limit_are_413(jupyter_server_factory) -> None:
    server = jupyter_server_factory(config={"JobsApp": {"max_payload_size": 10_000}})
    data = b"\x80" + os.urandom(20_000)
    put = server.api("PUT", f"jobs/api/functions/{sha256(data)}", data=data)
    assert put.status_code == 413, put.text
    item = {"spec": {"name": "f"}, "payload": b64(b"\x80"), "function": sha256(data)}
    body = {"items": [item], "functions": {sha256(data): b64(data)}}
    assert server.api("POST", "jobs/api/jobs/batch", json=body).status_code == 413


# --- the kernel API ---------------------------------------------------------------------------


def test_a_kernel_map_sends_its_function_once_then_by_name(server, monkeypatch) -> None:
    sent = Sent(monkeypatch)
    fn = closing_over(os.urandom(20_000))
    jobs = api.map(fn, range(50))
    (batch,) = sent.batches()
    (digest,) = batch["functions"]
    assert {item["function"] for item in batch["items"]} == {digest}
    assert max(len(item["payload"]) for item in batch["items"]) < 100
    assert [j.result(timeout=120) for j in jobs] == [20_000 + i for i in range(50)]
    sent.clear()
    more = [*api.map(fn, range(3)), api.submit(fn, 7)]
    assert [j.result(timeout=120) for j in more] == [20_000, 20_001, 20_002, 20_007]
    assert sent.batches() and all("functions" not in body for body in sent.batches())
    assert stored(server, digest)["references"] == 54


def test_a_large_function_is_uploaded_raw_once(server, monkeypatch) -> None:
    sent = Sent(monkeypatch)
    fn = closing_over(os.urandom(UPLOAD_OVER + 10_000))
    digest = sha256(dumps(fn))
    jobs = api.map(fn, range(4))
    assert [(m, p, t) for m, p, _, t in sent.calls if "functions/" in p] == [
        ("GET", f"functions/{digest}", None),
        ("PUT", f"functions/{digest}", "application/octet-stream"),
    ]
    assert [list(body) for body in sent.batches()] == [["items"]]  # the bytes went raw
    assert [j.result(timeout=120) for j in jobs] == [UPLOAD_OVER + 10_000 + i for i in range(4)]
    sent.clear()
    assert api.map(fn, [9])[0].result(timeout=120) == UPLOAD_OVER + 10_009
    assert [p for _, p, _, _ in sent.calls if "functions/" in p] == []


def test_submits_of_one_large_function_in_a_loop_are_batched(server, monkeypatch) -> None:
    sent = Sent(monkeypatch)
    fn = closing_over(os.urandom(UPLOAD_OVER + 1000))
    jobs = [api.submit(fn, i) for i in range(100)]
    assert [j.result(timeout=120) for j in jobs] == [UPLOAD_OVER + 1000 + i for i in range(100)]
    batches = sent.batches()
    assert sum(len(body["items"]) for body in batches) == 100
    assert len(batches) < 100  # what piled up went together: the function counts once
    assert [p for m, p, _, _ in sent.calls if m == "PUT"] == [f"functions/{sha256(dumps(fn))}"]


def test_a_submit_with_big_arrays_goes_multipart_beside_its_stored_function(
    server, monkeypatch
) -> None:
    import numpy as np

    sent = Sent(monkeypatch)
    big = np.arange(2**18, dtype=np.int64)  # 2 MiB: beside the pickle, streamed, mapped
    expected = ("mmap", True, int(big.sum()))
    job = api.submit(jobfuncs.memory_of, big)
    assert job.result(timeout=120) == expected
    digest = sha256(dumps(jobfuncs.memory_of))
    calls = [(m, p, t.split(";")[0] if t else t) for m, p, _, t in sent.calls if m != "GET"]
    assert calls == [
        ("PUT", f"functions/{digest}", "application/octet-stream"),  # small: no GET first
        ("POST", "jobs", "multipart/form-data"),
    ]
    with sqlite3.connect(server.home.db_path) as conn:
        ((shared, path),) = conn.execute(
            "SELECT shared, path FROM blobs WHERE kind = 'payload' AND job_id = ?", (job.id,)
        ).fetchall()
    assert shared == digest and path is not None  # the arguments are the job's file
    sent.clear()
    again = api.submit(jobfuncs.memory_of, big)
    assert again.result(timeout=120) == expected
    assert [m for m, p, _, _ in sent.calls if "functions/" in p] == []  # known by now


def test_a_function_freed_meanwhile_is_sent_again(server, monkeypatch) -> None:
    fn = closing_over(os.urandom(10_000))
    digest = sha256(dumps(fn))
    jobs = api.map(fn, range(3))
    assert [j.result(timeout=120) for j in jobs] == [10_000, 10_001, 10_002]
    for job in jobs:
        api.delete(job.id)
    assert server.api("GET", f"jobs/api/functions/{digest}").status_code == 404
    sent = Sent(monkeypatch)
    assert [j.result(timeout=120) for j in api.map(fn, range(2))] == [10_000, 10_001]
    first, second = sent.batches()
    assert "functions" not in first and list(second["functions"]) == [digest]
    assert stored(server, digest)["references"] == 2


def test_a_kernel_types_jobs_name_its_functions_stored_once(server) -> None:
    data = os.urandom(30_000)

    def measure(extra: int) -> int:
        return len(data) + extra

    api.front().register_type(measure, "stored_once_measure")
    jobs = [api.submit_typed("stored_once_measure", {"extra": i}) for i in range(3)]
    assert [j.result(timeout=120) for j in jobs] == [30_000, 30_001, 30_002]
    with sqlite3.connect(server.home.db_path) as conn:
        ((digest,),) = conn.execute(
            "SELECT shared FROM job_types WHERE name = 'stored_once_measure'"
        ).fetchall()
        named = conn.execute(
            "SELECT COUNT(*) FROM blobs WHERE shared = ? AND job_id IN (?, ?, ?)",
            (digest, *(j.id for j in jobs)),
        ).fetchall()
    assert named == [(3,)]
    assert stored(server, digest)["references"] == 3  # the user's three jobs (and the type)
    api.delete_job_type("stored_once_measure")
    with pytest.raises(errors.JobTypeNotFound):
        api.get_job_type("stored_once_measure")
    assert stored(server, digest)["references"] == 3  # kept: its jobs name it
