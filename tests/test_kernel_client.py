"""The kernel's HTTP client: keep-alive, error mapping, payload encodings, server discovery.

A tiny stdlib HTTP server stands in where the behaviour under test is HTTP itself (keep-alive,
a server closing idle connections); the jobs server is exercised for real in
tests/integration/test_kernel_api.py.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tornado.httputil import parse_body_arguments

from jupyter_jobs import errors
from jupyter_jobs.buffers import Framed
from jupyter_jobs.kernel.client import (
    Client,
    HttpBackend,
    Response,
    ServerInfo,
    discover,
    encode_submission,
    error_from_response,
    multipart,
)
from jupyter_jobs.models import Job, JobError, JobSpec, Kind, Progress, Reason, Status
from jupyter_jobs.payload import dumps_framed
from jupyter_jobs.server.bodies import MultipartReader


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.endswith("/slow"):
            time.sleep(2)
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.server.close_after_reply:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str | None]] = []
        self.connections = 0
        self.close_after_reply = False

    def get_request(self):  # type: ignore[no-untyped-def]
        self.connections += 1
        return super().get_request()


@pytest.fixture
def http_server() -> Iterator[CountingServer]:
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def client_for(server: CountingServer, token: str = "secret") -> Client:
    port = server.server_address[1]
    return Client(ServerInfo(f"http://127.0.0.1:{port}/base/", token, "test"))


def test_one_keep_alive_connection_serves_many_requests(http_server):
    client = client_for(http_server)
    for i in range(50):
        assert client.json("GET", "status", query={"ids": f"{i},{i + 1}"}) == {
            "path": f"/base/jobs/api/status?ids={i},{i + 1}"
        }
    assert http_server.connections == 1
    assert all(auth == "token secret" for _, auth in http_server.seen)


def test_a_connection_the_server_closed_is_replaced_transparently(http_server):
    http_server.close_after_reply = True
    client = client_for(http_server)
    for _ in range(5):
        client.json("GET", "stats")
    assert http_server.connections == 5


def test_an_interrupted_request_does_not_poison_the_next_one(http_server):
    client = client_for(http_server)
    client.json("GET", "stats")

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # Ctrl-C while waiting for the answer
        with pytest.raises(KeyboardInterrupt):
            client.json("GET", "slow")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert client.json("GET", "stats") == {"path": "/base/jobs/api/stats"}
    assert http_server.connections == 2


def test_no_credential_no_header(http_server):
    client_for(http_server, token="").json("GET", "stats")
    assert http_server.seen == [("/base/jobs/api/stats", None)]


def json_response(status: int, data: object) -> Response:
    return Response(status, "application/json", json.dumps(data).encode())


@pytest.mark.parametrize(
    "cls",
    [
        errors.InvalidRequest,
        errors.PayloadError,
        errors.IllegalTransition,
        errors.PayloadTooLarge,
        errors.ResultNotReady,
        errors.StorageError,
    ],
)
def test_json_errors_come_back_as_the_servers_own_type(cls):
    exc = error_from_response(
        json_response(cls.http_status, cls("bad thing", {"k": 1}).to_json()), "x"
    )
    assert type(exc) is cls
    assert exc.message == "bad thing" and exc.detail == {"k": 1}


def test_job_not_found_keeps_the_id():
    sent = errors.JobNotFound(42).to_json()
    exc = error_from_response(json_response(404, sent), "GET jobs/42")
    assert isinstance(exc, errors.JobNotFound) and exc.job_id == 42


def test_unknown_error_types_fall_back_on_the_status():
    body = {"message": "nope", "reason": "Conflict", "type": "Weird"}
    exc = error_from_response(json_response(409, body), "x")
    assert type(exc) is errors.IllegalTransition


def test_non_json_errors_say_what_to_check():
    refused = error_from_response(Response(403, "text/html", b"<html>Forbidden</html>"), "GET jobs")
    assert isinstance(refused, errors.ServerUnavailable)
    assert "JUPYTER_JOBS_TOKEN" in refused.message
    missing = error_from_response(Response(404, "text/html", b"Not Found"), "GET jobs")
    assert "server extension" in missing.message
    other = error_from_response(Response(502, "text/plain", b"bad gateway"), "GET jobs")
    assert "HTTP 502" in other.message and "bad gateway" in other.message


def test_records_survive_the_json_round_trip():
    record = Job(
        id=3,
        name="n",
        kind=Kind.CELL,
        owner="o",
        status=Status.FAILED,
        reason=Reason.TIMEOUT,
        progress=Progress(1.0, 4.0, "m", 5.0),
        error=JobError("TimeoutError", "slow", "tb"),
        after=[1, 2],
        options={"return": ["a"]},
    )
    data = json.loads(json.dumps(record.to_json()))
    data["added_by_a_newer_server"] = True
    assert Job.from_json(data) == record
    copied = record.to_json()  # shares nothing mutable with the record
    copied["after"].append(9)
    copied["options"]["return"].append("b")
    assert (record.after, record.options) == ([1, 2], {"return": ["a"]})


def test_payload_encodings_parse_as_the_server_parses_them():
    spec = JobSpec(name="big", owner="o")
    payload = bytes(range(256)) * 10
    parts, ctype = multipart(spec, payload)
    body = b"".join(parts)
    arguments: dict = {}
    files: dict = {}
    parse_body_arguments(ctype, body, arguments, files)  # plain multipart, as tornado reads it
    assert json.loads(arguments["spec"][0]) == spec.to_json()
    assert files["payload"][0]["body"] == payload
    reader = MultipartReader(ctype.partition("boundary=")[2])
    for at in range(0, len(body), 7):  # as the server reads it: in pieces, as they arrive
        reader.feed(body[at : at + 7])
    assert reader.ended and [name for name, _ in reader.parts] == ["spec", "payload"]
    assert json.loads(bytes(reader.parts[0][1])) == spec.to_json()
    assert reader.take() == payload
    inline = encode_submission(spec, payload)
    assert base64.b64decode(inline["payload"]) == payload and inline["spec"]["name"] == "big"


def test_a_framed_payload_is_sent_as_its_parts_with_the_arrays_memory_as_it_lies():
    import numpy as np

    big = np.arange(2**17, dtype=np.float64)
    payload = dumps_framed({"big": big})
    parts, _ = multipart(JobSpec(name="big"), payload)
    assert isinstance(payload, Framed)
    # the array's own memory is one of the parts: nothing joined, nothing copied
    assert any(isinstance(p, memoryview) and np.shares_memory(np.asarray(p), big) for p in parts)
    assert b"".join(parts[1:-1]) == bytes(payload)


def test_discovery_prefers_the_environment(monkeypatch):
    monkeypatch.setenv("JUPYTER_JOBS_URL", "http://127.0.0.1:8888/lab-base")
    monkeypatch.setenv("JUPYTER_JOBS_TOKEN", "tok")
    assert discover() == ServerInfo("http://127.0.0.1:8888/lab-base/", "tok", "JUPYTER_JOBS_URL")


def test_discovery_without_any_server_says_how_to_start_one(monkeypatch):
    monkeypatch.delenv("JUPYTER_JOBS_URL", raising=False)
    with pytest.raises(errors.ServerUnavailable, match="jupyter lab"):
        discover()


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(errors.ServerUnavailable, match="not an http"):
        Client(ServerInfo("ftp://example.org/", "", "JUPYTER_JOBS_URL"))


def test_a_negative_timeout_on_a_handle_being_submitted_means_now():
    backend = HttpBackend(Client(ServerInfo("http://127.0.0.1:9/", "", "test")))
    job = backend.pending("on its way")  # what `jj.submit` returns before the job is stored
    with pytest.raises(concurrent.futures.TimeoutError):
        job.result(timeout=-0.5)
    assert job.wait(timeout=-1) is job and not job.done()
    assert "being stored" in repr(job)
