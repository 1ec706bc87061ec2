"""The kernel's side of the REST API: find the server, speak HTTP to it, and back `Job` handles.

Why stdlib `http.client` and not `requests`: a kernel submits and polls a lot of tiny requests,
and a keep-alive connection per thread costs about a millisecond a round trip on localhost; it
also keeps `requests` out of the runtime dependencies. Errors come back as the same
`jupyter_jobs.errors` types the server raised (by the `type` field of the JSON error body), so a
notebook catches `JobNotFound` whether it asked the engine or the server.

Big variables are never copied on the way: a payload goes out as its parts (its arrays'
own memory, buffers.py) behind the multipart head, and a result's arrays are read from the
response straight into their memory.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import http.client
import json
import os
import select
import threading
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .. import buffers, errors
from ..channels import Batch
from ..errors import InvalidRequest, JobNotFound, JobsError, ServerUnavailable
from ..job import Backend
from ..job_types import JobType
from ..models import Job as JobRecord
from ..models import JobSpec, Page
from ..schedules import Schedule, ScheduleSpec
from ..shared import Payload, SharedPayload, size
from ..worker_info import WorkerInfo
from .functions import FunctionSender

if TYPE_CHECKING:
    from .handle import RemoteJob

T = TypeVar("T")

#: Whether a handle's future is settled, without `RemoteJob.done()` having the poller follow it.
settled = concurrent.futures.Future.done

ENV_URL = "JUPYTER_JOBS_URL"
ENV_TOKEN = "JUPYTER_JOBS_TOKEN"
ENV_SUBMIT_PATIENCE = "JUPYTER_JOBS_SUBMIT_PATIENCE"
API_PREFIX = "jobs/api/"

#: Payloads up to this size travel as base64 inside the JSON body (one small request); larger
#: ones as multipart/form-data, which avoids the 4/3 base64 blow-up and a JSON parse of megabytes.
INLINE_PAYLOAD_LIMIT = 256 * 2**10
#: Ids per `/status?ids=` request, so the URL stays far below tornado's header size limit.
STATUS_CHUNK = 400
#: Longest single long poll on `/results?wait=`; the server caps it at 300 s.
LONG_POLL = 30.0
#: Ids in one `/results` poll: the awaited job and this many minus one other unsettled ones.
RESULTS_BATCH = 500
#: Result bytes one `/results` answer may carry; results beyond come one by one, unencoded
#: (for results of a megabyte, base64 inside JSON costs more than a request each).
RESULTS_BYTES = 2**20

_UNKNOWN = object()

#: Reads an answer's body of the given size from the response (`Client.request`).
Receive = Callable[[Any, int], Any]

START_HINT = (
    "Start one in a terminal with `jupyter lab` (or `jupyter server`), with jupyter_jobs "
    "installed, then run this again."
)

_ERROR_TYPES: dict[str, type[JobsError]] = {
    cls.__name__: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, JobsError)
}
_ERROR_BY_STATUS: dict[int, type[JobsError]] = {
    400: errors.InvalidRequest,
    404: JobNotFound,
    409: errors.IllegalTransition,
    413: errors.PayloadTooLarge,
}


@dataclass(frozen=True)
class ServerInfo:
    """Where the server is: `url` ends with the base_url and a slash; `source` says how we knew."""

    url: str
    token: str
    source: str


@dataclass
class Response:
    status: int
    content_type: str
    #: The bytes; or, from a `receive` reader, what it made of them.
    body: Any

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def discover() -> ServerInfo:
    """The server this kernel should use: the one that launched it, else a running one.

    A kernel launched by a Jupyter server with jupyter_jobs inherits `JUPYTER_JOBS_URL` and
    `JUPYTER_JOBS_TOKEN`; any other kernel (a console, an IDE, a script) looks through the
    servers' runtime files and takes the first whose jobs extension answers.
    """
    url = os.environ.get(ENV_URL)
    if url:
        return ServerInfo(_with_slash(url), os.environ.get(ENV_TOKEN, ""), ENV_URL)
    from jupyter_server.serverapp import list_running_servers

    tried: list[str] = []
    for info in list_running_servers():
        server = ServerInfo(_with_slash(info["url"]), info.get("token", ""), "runtime file")
        try:
            Client(server, timeout=2.0).json("GET", "capabilities")
        except JobsError as exc:
            tried.append(f"{server.url}: {exc.message}")
            continue
        return server
    found = "; ".join(tried) if tried else "no running Jupyter server found"
    raise ServerUnavailable(
        f"No Jupyter server with jupyter_jobs to send jobs to ({found}). {START_HINT}",
        {"tried": tried},
    )


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


class Client:
    """A small keep-alive HTTP client for `/jobs/api/`, one connection per thread.

    One connection per thread because the poller, the `Job` waiters and the main thread each
    make requests, and a long poll must not hold up the others.
    """

    def __init__(self, server: ServerInfo, timeout: float = 30.0) -> None:
        self.server = server
        self.timeout = timeout
        parts = urllib.parse.urlsplit(server.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerUnavailable(f"{server.source} is not an http(s) URL: {server.url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base_path = parts.path + API_PREFIX
        self._headers = {"Authorization": f"token {server.token}"} if server.token else {}
        self._local = threading.local()

    # --- transport ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: bytes | list[buffers.Part] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        expect: tuple[int, ...] = (),
        receive: Receive | None = None,
    ) -> Response:
        """One request; raises the mapped `JobsError` for a status >= 400 not in `expect`.

        `body` may be a list of parts, sent one after the other (never joined). `receive`
        reads a 200 answer of known length from the response as it arrives (`buffers.receive`:
        arrays straight into their memory); the answer's `body` is what it returns."""
        target = self._base_path + path
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            target += "?" + urllib.parse.urlencode(pairs, safe=",")
        headers = dict(self._headers)
        if content_type:
            headers["Content-Type"] = content_type
        if isinstance(body, list):
            headers["Content-Length"] = str(sum(len(part) for part in body))
        response = self._send(method, target, body, headers, timeout or self.timeout, receive)
        if response.status >= 400 and response.status not in expect:
            raise error_from_response(response, f"{method} {path}")
        return response

    def json(self, method: str, path: str, payload: Any = None, **kwargs: Any) -> Any:
        """A JSON request and its decoded JSON answer."""
        body = None if payload is None else json.dumps(payload).encode()
        ctype = None if payload is None else "application/json"
        return self.request(method, path, body=body, content_type=ctype, **kwargs).json()

    def _send(
        self,
        method: str,
        target: str,
        body: bytes | list[buffers.Part] | None,
        headers: dict[str, str],
        timeout: float,
        receive: Receive | None = None,
    ) -> Response:
        # A reused connection the server has closed in the meantime fails at once; only then is
        # it safe to send again, since the server never saw the request.
        for attempt in (0, 1):
            conn, fresh = self._connection()
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(method, target, body=body, headers=headers)
                raw = conn.getresponse()
                size = raw.length
                if receive is not None and raw.status == 200 and size is not None:
                    data = receive(raw, size)
                else:
                    data = raw.read()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._drop(conn)
                stale = isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError))
                if attempt == 0 and not fresh and stale:
                    continue
                raise errors.ServerUnreachable(
                    f"the Jupyter server at {self.server.url} (from {self.server.source}) does "
                    f"not answer: {exc}. {START_HINT}",
                    {"url": self.server.url},
                ) from exc
            except BaseException:
                # Interrupted mid-request (Ctrl-C in a `%%job --wait`): an unread response
                # would poison the next request on this connection.
                self._drop(conn)
                raise
            if raw.will_close:
                self._drop(conn)
            return Response(raw.status, raw.getheader("Content-Type", ""), data)
        raise AssertionError("unreachable")

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and _peer_closed(conn.sock):
            conn.close()
            conn = None
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
            return conn, True
        return conn, False

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._drop(conn)


def _keyed(spec: JobSpec) -> JobSpec:
    """`spec` with an idempotency key: its own, or a new one for this submit."""
    if spec.idempotency_key is not None:
        return spec
    return dataclasses.replace(spec, idempotency_key=f"kernel-{uuid.uuid4().hex}")


def _segment(text: str) -> str:
    """`text` as one URL path segment."""
    return urllib.parse.quote(text, safe="")


def _peer_closed(sock: Any) -> bool:
    """An idle keep-alive socket that is readable has been closed by the server."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def error_from_response(response: Response, what: str) -> JobsError:
    """The `JobsError` an error response stands for (the server's own type when it names one)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and "type" in data and "message" in data:
        cls = _ERROR_TYPES.get(str(data.get("type")))
        cls = cls or _ERROR_BY_STATUS.get(response.status, JobsError)
        detail = data.get("detail")
        if cls is JobNotFound:
            job_id = detail.get("id") if isinstance(detail, dict) else None
            return JobNotFound(job_id if job_id is not None else "?")
        if cls is errors.ScheduleNotFound:
            found = detail.get("id") if isinstance(detail, dict) else None
            return errors.ScheduleNotFound(found if found is not None else "?")
        if cls in (errors.JobFailed, errors.JobCancelled):
            cls = JobsError  # only raised from a record, never received as an HTTP error
        return cls(str(data["message"]), detail)
    text = response.body[:300].decode("utf-8", errors="replace")
    if isinstance(data, dict) and "message" in data:  # jupyter_server's own error pages
        text = str(data["message"])
    if response.status in (401, 403):
        return ServerUnavailable(
            f"{what}: the Jupyter server refused this kernel's credential ({response.status}: "
            f"{text}). Set {ENV_TOKEN} to the server's token, or restart the kernel from it."
        )
    if response.status == 404:
        return ServerUnavailable(
            f"{what}: the Jupyter server answered 404: is the jupyter_jobs server extension "
            f"enabled? (`jupyter server extension list`)"
        )
    return JobsError(f"{what}: HTTP {response.status}: {text}", {"status": response.status})


def encode_submission(spec: JobSpec, payload: bytes | buffers.Framed) -> dict[str, Any]:
    """One item of a JSON submit or batch body."""
    return {"spec": spec.to_json(), "payload": base64.b64encode(bytes(payload)).decode("ascii")}


def multipart(
    spec: JobSpec, payload: bytes | buffers.Framed, function: str | None = None
) -> tuple[list[buffers.Part], str]:
    """A multipart/form-data body with the spec as JSON text and the payload as a file: its
    parts, to be sent one after the other (a framed payload's arrays as they lie in memory).
    `function`: the sha256 of the stored function the payload is the arguments of
    (`shared.py`), as a part of its own."""
    boundary = uuid.uuid4().hex
    named = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="function"\r\n\r\n{function}\r\n'
        if function is not None
        else ""
    )
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="spec"\r\n'
        "Content-Type: application/json\r\n\r\n"
        f"{json.dumps(spec.to_json())}\r\n"
        f"{named}"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="payload"; filename="payload.dill"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return [head, *buffers.parts(payload), tail], f"multipart/form-data; boundary={boundary}"


class HttpBackend(Backend):
    """`Job` handles over HTTP: every verb is one REST call, but results come in batches.

    Unfinished handles are not watched by the engine's watcher thread: they join the kernel's
    one `Poller` (see `poller.py`), which also feeds the widgets, so a kernel makes one batched
    status request per tick however many jobs and widgets it shows. Waiting for one handle
    (`result()`, `wait()`) long-polls `/results` for it and up to RESULTS_BATCH - 1 other
    unfinished handles: every one that ended comes back in the same answer, result bytes
    included, so a loop over a thousand handles' results costs a few requests, not a thousand.
    """

    #: Larger payloads are sent on their own, as multipart (see `store_jobs`).
    submit_alone_over = INLINE_PAYLOAD_LIMIT
    #: Seconds a submit keeps trying while the server does not answer (it is restarting).
    submit_patience = float(os.environ.get(ENV_SUBMIT_PATIENCE) or 60.0)

    def __init__(self, client: Client) -> None:
        super().__init__()
        from .poller import Poller

        self.client = client
        self.poller = Poller(self.get_many)
        self.functions = FunctionSender(client)
        self._limit: Any = _UNKNOWN
        self._results: dict[int, bytes] = {}
        self._results_lock = threading.Lock()
        #: The widget of each job shown through this connection (`widget.widget_for`).
        self.widgets: dict[int, Any] = {}
        self.widgets_lock = threading.Lock()
        # Unsettled handles by job id, oldest first: who else to ask about in a `/results` poll.
        self._unsettled: dict[int, weakref.WeakSet[RemoteJob]] = {}
        self._unsettled_lock = threading.Lock()

    # --- submit and list ---------------------------------------------------------------------

    def submit(self, items: Sequence[tuple[JobSpec, Payload]]) -> list[RemoteJob]:
        """Queue jobs to be stored together (see `Backend.submit`); a payload over the server's
        limit is refused here, before anything is queued."""
        limit = self._payload_limit()
        for spec, payload in items:
            if limit is not None and size(payload) > limit:
                raise errors.PayloadTooLarge(
                    f"job {spec.name!r}: payload of {size(payload)} bytes is larger than the "
                    f"server's limit of {limit} bytes",
                    {"max_payload_size": limit, "size": size(payload)},
                )
        return super().submit(items)

    def store_jobs(self, items: Sequence[tuple[JobSpec, Payload]]) -> list[JobRecord]:
        """Store jobs in one request and one transaction (the submitter's transport).

        A server restart must not fail a notebook's submits: while the server does not answer,
        or answers that it is stopping, the request goes again for up to `submit_patience`
        seconds. Every job carries an idempotency key (its own, or one made here), so a request
        the server stored but could not answer is stored once however often it is sent.
        """
        items = [(_keyed(spec), payload) for spec, payload in items]
        return self._patiently(lambda: self._store_once(items))

    def _patiently(self, send: Callable[[], T]) -> T:
        """`send()` again while the server does not answer or is stopping, for up to
        `submit_patience` seconds (what it sends must carry idempotency keys)."""
        deadline = time.monotonic() + self.submit_patience
        pause = 0.05
        while True:
            try:
                return send()
            except (errors.ServerUnreachable, errors.ShuttingDown):
                if time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)  # a backoff, not a synchronisation: the server is away
            pause = min(pause * 2, 1.0)

    def _store_once(self, items: Sequence[tuple[JobSpec, Payload]]) -> list[JobRecord]:
        """One job as `POST /jobs` (multipart when its payload is large), several as
        `POST /jobs/batch`; jobs that share a function as a batch that names it
        (`functions.py`)."""
        if any(isinstance(payload, SharedPayload) for _, payload in items):
            spec, alone = items[0]
            large = isinstance(alone, SharedPayload) and len(alone.arguments) > INLINE_PAYLOAD_LIMIT
            if len(items) == 1 and large:
                return [self._store_alone(spec, alone)]
            return self.functions.store(items)
        if len(items) > 1:
            body = {"items": [encode_submission(spec, payload) for spec, payload in items]}
            data = self.client.json("POST", "jobs/batch", body)
            return [JobRecord.from_json(j) for j in data["jobs"]]
        spec, payload = items[0]
        if len(payload) <= INLINE_PAYLOAD_LIMIT:
            data = self.client.json("POST", "jobs", encode_submission(spec, payload))
        else:
            body, ctype = multipart(spec, payload)
            data = self.client.request("POST", "jobs", body=body, content_type=ctype).json()
        return [JobRecord.from_json(data)]

    def _store_alone(self, spec: JobSpec, payload: SharedPayload) -> JobRecord:
        """One job whose arguments are large: multipart, as any large payload (its arrays
        sent as they lie in memory), naming its function, which goes on its own first."""

        def send() -> Any:
            body, ctype = multipart(spec, payload.arguments, payload.function.sha256)
            return self.client.request("POST", "jobs", body=body, content_type=ctype).json()

        return JobRecord.from_json(self.functions.named(payload.function, send))

    def _payload_limit(self) -> int | None:
        """The server's `max_payload_size` (asked once per connection; None if it has none, or
        does not answer now: the submit waits for it, and the server checks the size itself)."""
        if self._limit is _UNKNOWN:
            try:
                limit = self.capabilities().get("max_payload_size")
            except errors.ServerUnreachable:
                return None
            self._limit = int(limit) if isinstance(limit, int) and limit > 0 else None
        return self._limit

    def page(
        self,
        *,
        status: Sequence[str] | None,
        owner: str | None,
        q: str | None,
        limit: int,
        cursor: str | None,
        user: str | None = None,
        mine: bool = False,
        type: str | None = None,
    ) -> Page:
        query = {
            "status": ",".join(status) if status else None,
            "owner": owner,
            "q": q,
            "limit": limit,
            "cursor": cursor,
            "user": user,
            "mine": "true" if mine else None,
            "type": type,
        }
        data = self.client.json("GET", "jobs", query=query)
        jobs = [JobRecord.from_json(j) for j in data["jobs"]]
        return Page(jobs, data.get("next_cursor"), data.get("counts", {}))

    def delete(self, job_id: int) -> None:
        self.client.request("DELETE", f"jobs/{int(job_id)}")

    # --- Backend verbs -----------------------------------------------------------------------

    def get(self, job_id: int) -> JobRecord:
        return JobRecord.from_json(self.client.json("GET", f"jobs/{int(job_id)}"))

    def get_many(self, job_ids: Iterable[int]) -> list[JobRecord]:
        ids = [int(i) for i in job_ids]
        records: list[JobRecord] = []
        for start in range(0, len(ids), STATUS_CHUNK):
            chunk = ",".join(map(str, ids[start : start + STATUS_CHUNK]))
            data = self.client.json("GET", "status", query={"ids": chunk})
            records.extend(JobRecord.from_json(j) for j in data["jobs"])
        return records

    def collect(self, job: RemoteJob, wait: float) -> None:
        """Long-poll up to `wait` s for `job` or another unsettled handle to end, and settle
        every handle whose job ended (a succeeded one keeps its result bytes)."""
        ids = [job.id, *self._others(job.id, RESULTS_BATCH - 1)]
        query = {
            "ids": ",".join(map(str, ids)),
            "wait": f"{max(0.0, min(wait, 300.0)):g}",
            "max_bytes": RESULTS_BYTES,
        }
        data = self.client.json("GET", "results", query=query, timeout=wait + self.client.timeout)
        for item in data["results"]:
            value = base64.b64decode(item["data"])
            for handle in self._holders(item["id"], job):
                handle.found_result(value)
        for raw in data["jobs"]:
            record = JobRecord.from_json(raw)
            for handle in self._holders(record.id, job):
                handle.observe(record)
        for job_id in data["missing"]:
            for handle in self._holders(job_id, job):
                handle.observe_missing(job_id)

    def _others(self, job_id: int, limit: int) -> list[int]:
        """Up to `limit` ids of other unsettled handles, oldest first (the order a loop over
        submitted jobs asks in); settled and forgotten handles are dropped on the way."""
        picked: list[int] = []
        with self._unsettled_lock:
            done = []
            for other, handles in self._unsettled.items():
                if len(picked) >= limit:
                    break
                if all(settled(h) for h in handles):
                    done.append(other)
                elif other != job_id:
                    picked.append(other)
            for other in done:
                del self._unsettled[other]
        return picked

    def _holders(self, job_id: int, asking: RemoteJob) -> list[RemoteJob]:
        with self._unsettled_lock:
            handles = set(self._unsettled.get(job_id, ()))
        if asking.id == job_id:
            handles.add(asking)
        return list(handles)

    def keep_result(self, job_id: int, data: bytes) -> None:
        """Hold a handle's prefetched bytes for the `result_bytes` call that follows at once."""
        with self._results_lock:
            self._results[job_id] = data

    def result_bytes(self, job_id: int) -> bytes | bytearray | buffers.Received:
        """A result as `payload.loads` takes it: a framed one with its arrays read already."""
        with self._results_lock:
            cached = self._results.pop(job_id, None)
        if cached is not None:
            return cached
        response = self.client.request("GET", f"jobs/{int(job_id)}/result", receive=buffers.receive)
        if response.status != 200:  # 202: not finished (a 409 raised ResultNotReady already)
            raise errors.ResultNotReady(f"job {job_id} has no result", {"id": job_id})
        return response.body

    def outputs(self, job_id: int) -> list[dict[str, Any]]:
        return self.client.json("GET", f"jobs/{int(job_id)}/outputs")["outputs"]

    def read_log(
        self, job_id: int, offset: int = 0, stream: str | None = None
    ) -> tuple[bytes, int]:
        data = self.log_page(job_id, offset, stream=stream)
        return data["data"].encode("utf-8"), int(data["next_offset"])

    def log_page(
        self, job_id: int, offset: int = 0, limit: int | None = None, stream: str | None = None
    ) -> dict[str, Any]:
        """The log from byte `offset` as the server sends it: data, offset, next_offset, size,
        and its streams (`stream`: of that one alone)."""
        query = {"offset": int(offset), "limit": limit, "stream": stream}
        return self.client.json("GET", f"jobs/{int(job_id)}/logs", query=query)

    def cancel(self, job_id: int) -> JobRecord:
        record = JobRecord.from_json(self.client.json("POST", f"jobs/{int(job_id)}/cancel", {}))
        self.poller.poke()
        return record

    def retry(self, job_id: int) -> JobRecord:
        record = JobRecord.from_json(self.client.json("POST", f"jobs/{int(job_id)}/retry", {}))
        self.poller.poke()
        return record

    def release(self, job_id: int) -> JobRecord:
        record = JobRecord.from_json(self.client.json("POST", f"jobs/{int(job_id)}/release", {}))
        self.poller.poke()
        return record

    # --- job types: the server builds a typed job's payload, from its name and parameters ----

    def submit_typed(self, spec: JobSpec) -> RemoteJob:
        """`POST /jobs` with the type and parameters (the server checks them): the job's
        handle, once it is stored; sent again while the server restarts (idempotency key)."""
        data = _keyed(spec).to_json()
        body = {"type": data.pop("type"), "parameters": data.pop("parameters"), "spec": data}
        del data["kind"]
        record = self._patiently(lambda: self.client.json("POST", "jobs", body))
        return self.handle(JobRecord.from_json(record))

    def register_type(self, job_type: JobType, functions: bytes) -> JobType:
        body = {
            "description": job_type.description,
            "schema": job_type.schema,
            "summarize": job_type.has_summarize,
            "owner": job_type.owner,
            "interpreter": job_type.interpreter,
            "cwd": job_type.cwd,
            "functions": base64.b64encode(functions).decode("ascii"),
        }
        return JobType.from_json(self.client.json("PUT", f"types/{_segment(job_type.name)}", body))

    def job_types(self) -> list[JobType]:
        return [JobType.from_json(t) for t in self.client.json("GET", "types")["types"]]

    def get_job_type(self, name: str) -> JobType:
        return JobType.from_json(self.client.json("GET", f"types/{_segment(name)}"))

    def delete_job_type(self, name: str) -> None:
        self.client.request("DELETE", f"types/{_segment(name)}")

    # --- result channels ----------------------------------------------------------------------

    def channel_next(
        self, channel: str, reader: str, after: int | None, limit: int, wait: float | None
    ) -> Batch:
        wait = LONG_POLL if wait is None else min(wait, LONG_POLL)
        query = {"reader": reader, "after": after, "limit": limit, "wait": f"{wait:g}"}
        path = f"channels/{urllib.parse.quote(channel, safe='')}/next"
        data = self.client.json("GET", path, query=query, timeout=wait + self.client.timeout)
        return Batch.from_json(data)

    def channel_ack(self, channel: str, reader: str, seq: int) -> int:
        path = f"channels/{urllib.parse.quote(channel, safe='')}/ack"
        return int(self.client.json("POST", path, {"reader": reader, "seq": seq})["acked"])

    # --- schedules (REST creates notebook and typed schedules: a function's would be a pickle)

    def add_schedule(self, spec: ScheduleSpec, payload: bytes | None, owner: str) -> Schedule:
        if spec.target["kind"] == "function":
            raise InvalidRequest(
                "a function schedule needs the engine (JobQueue); from a kernel, schedule a "
                "notebook (its path relative to the server's root) or a job type (job_type=)"
            )
        made = self.client.json("POST", "schedules", ScheduleSpec.to_json(spec))
        return Schedule.from_stored(made)

    def schedules(self) -> list[Schedule]:
        found = self.client.json("GET", "schedules")["schedules"]
        return [Schedule.from_stored(s) for s in found]

    def get_schedule(self, schedule_id: int) -> Schedule:
        return Schedule.from_stored(self.client.json("GET", f"schedules/{int(schedule_id)}"))

    def update_schedule(self, schedule_id: int, changes: dict[str, Any]) -> Schedule:
        path = f"schedules/{int(schedule_id)}"
        if set(changes) == {"paused"}:
            verb = "pause" if changes["paused"] else "resume"
            return Schedule.from_stored(self.client.json("POST", f"{path}/{verb}", {}))
        return Schedule.from_stored(self.client.json("PATCH", path, changes))

    def delete_schedule(self, schedule_id: int) -> None:
        self.client.request("DELETE", f"schedules/{int(schedule_id)}")

    def wait_for_change(self, timeout: float) -> bool:
        return self.poller.wait_tick(timeout)

    def watch(self, job: Any) -> None:
        with self._unsettled_lock:
            self._unsettled.setdefault(job.id, weakref.WeakSet()).add(job)
        self.poller.watch(job.id, job)

    def handle(self, record: JobRecord) -> Any:
        from .handle import RemoteJob

        return RemoteJob(self, record)

    def pending(self, name: str) -> Any:
        from .handle import RemoteJob

        return RemoteJob(self, None, name)

    def capabilities(self) -> dict[str, Any]:
        return self.client.json("GET", "capabilities")

    def peek(self) -> JobRecord | None:
        job = self.client.json("GET", "queue/next")["job"]
        return None if job is None else JobRecord.from_json(job)

    def stats(self, type: str | None = None) -> dict[str, Any]:
        return self.client.json("GET", "stats", query={"type": type})

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo.from_json(w) for w in self.client.json("GET", "workers")["workers"]]

    def drain_worker(self, worker_id: str) -> WorkerInfo:
        path = f"workers/{urllib.parse.quote(worker_id, safe='')}/drain"
        return WorkerInfo.from_json(self.client.json("POST", path, {}))

    def close(self) -> None:
        super().close()
        self.poller.stop()
        self.client.close()
