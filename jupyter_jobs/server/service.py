"""The API answers that take more than one step; each runs in a thread (they block on SQLite).

Handlers call these through `JobsApp.run`, so that one request is one hop off the loop even
when it parses a body and writes, or needs two reads. A hop costs a thread wake-up and a loop
wake-up, as much as a small store call: a kernel's submit and result requests must not pay it
twice.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, NamedTuple

from ..errors import JobNotFound, NotebookNotFound, ResultNotReady
from ..models import FileBytes, Job, JobSpec, Kind, Status, now
from ..store import Store
from .parsing import NotebookByPath


def submit(
    store: Store, parse: Callable[[], tuple[JobSpec, bytes | FileBytes] | NotebookByPath]
) -> tuple[Job, bool] | NotebookByPath:
    """Parse a submit body (`parsing.submit_json` or `submit_multipart`, bound to the body) and
    enqueue; also say whether the job is new (201) or an earlier one with the same key (200).
    A spooled payload (`FileBytes`, bodies.py) becomes the job's file.

    The store returns the existing job for an `idempotency_key` it has seen: such a job was
    created before this call started. (Two concurrent first submits of one key both see a job
    created during their call and both answer 201; there is still only one job.) A notebook
    submit by path comes back as it is: the handler reads the file through the server's
    contents manager, then submits again.
    """
    parsed = parse()
    if isinstance(parsed, NotebookByPath):
        return parsed  # the handler reads the notebook, then submits again
    spec, payload = parsed
    started = now()
    job = store.enqueue(spec, payload)
    return job, spec.idempotency_key is None or job.created_at >= started


class Stored(NamedTuple):
    """Result bytes as the store keeps them: an open file (the caller closes it) and its size."""

    file: BinaryIO
    size: int


def result(store: Store, job_id: int) -> Stored | Job:
    """The result of a succeeded job (or of a failed cell that sent names back), to be read a
    piece at a time, else its record: one hop for either answer."""
    try:
        return Stored(*store.open_result(job_id))
    except ResultNotReady:
        job = store.get(job_id)
    if job.status is Status.SUCCEEDED:  # it succeeded between the two reads
        return Stored(*store.open_result(job_id))
    return job


def notebook(store: Store, job_id: int) -> bytes:
    """A notebook job's executed notebook bytes (JSON, never unpickled): a succeeded run's, or
    a failed one's as far as it ran; `NotebookNotFound` while there is none."""
    job = store.get(job_id)
    if job.kind is not Kind.NOTEBOOK:
        raise NotebookNotFound(
            f"job {job_id} is a {job.kind} job: it has no notebook", {"id": job_id}
        )
    try:
        return store.result(job_id)
    except ResultNotReady:
        raise NotebookNotFound(
            f"job {job_id} has no executed notebook: it is {job.status}", {"id": job_id}
        ) from None


def notebook_html(data: bytes) -> str:
    """The notebook rendered by nbconvert's HTML exporter (its default template)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.reads(data.decode("utf-8"), as_version=4))
    return body


class Batch(NamedTuple):
    """A `/results` answer: whether any job asked about has ended (or does not exist), and the
    JSON body, encoded in the thread because it can be megabytes."""

    ended: bool
    body: bytes


def results(store: Store, job_ids: Sequence[int], max_bytes: int) -> Batch:
    """`GET /jobs/api/results`: the ended jobs among `job_ids`.

    Succeeded jobs come with their result bytes (base64 of the stored bytes: never unpickled),
    in the order asked, while their total stays within `max_bytes`; finished jobs beyond that,
    and failed or cancelled ones, come as records; unfinished ones are left out.
    """
    jobs, missing = store.finished_among(job_ids)
    with_bytes: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    budget = max_bytes
    for job in jobs:
        if job.status is Status.SUCCEEDED and (job.result_size or 0) <= budget:
            try:
                data = store.result(job.id)
            except JobNotFound:  # deleted since the first read
                missing.append(job.id)
                continue
            budget -= len(data)
            with_bytes.append({"id": job.id, "data": base64.b64encode(data).decode("ascii")})
        else:
            records.append(job.to_json())
    body = {"results": with_bytes, "jobs": records, "missing": missing}
    return Batch(bool(with_bytes or records or missing), json.dumps(body).encode())


def read_log(store: Store, job_id: int, offset: int, limit: int) -> dict[str, Any]:
    """One chunk of a job's log as text, ending on a whole UTF-8 character when it can."""
    job = store.get(job_id)
    data, next_offset = store.read_log(job_id, offset, limit)
    whole = _whole_utf8(data)
    if whole < len(data):
        next_offset -= len(data) - whole
        data = data[:whole]
    return {
        "data": data.decode("utf-8", errors="replace"),
        "offset": offset,
        "next_offset": next_offset,
        "size": max(job.log_size, next_offset),
    }


def _whole_utf8(data: bytes) -> int:
    """Length of `data` without a trailing, incomplete UTF-8 sequence (which the next chunk
    completes). A chunk that is nothing but such a fragment is kept, so tailing moves on."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: how long is its sequence?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need or back == len(data) else len(data) - back
    return len(data)


def stats(store: Store, extra: dict[str, Any]) -> dict[str, Any]:
    """`GET /jobs/api/stats`: counts per status, queue depth, database size (+ `extra`)."""
    numbers = store.stats()
    counts = {s.value: int(numbers.get(s.value, 0)) for s in Status}
    return {
        "counts": counts,
        "running": counts[Status.RUNNING.value],
        "queued": counts[Status.QUEUED.value],
        "db_size": int(numbers.get("db_size", 0)),
        **extra,
    }
