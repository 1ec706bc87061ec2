"""The API answers that take more than one step; each runs in a thread (they block on SQLite).

Handlers call these through `JobsApp.run`, so that one request is one hop off the loop even
when it parses a body and writes, or needs two reads. A hop costs a thread wake-up and a loop
wake-up, as much as a small store call: a kernel's submit and result requests must not pay it
twice.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, Sequence
from typing import Any, BinaryIO, NamedTuple

from .. import job_types
from ..errors import JobNotFound, NotebookNotFound, ResultNotReady
from ..models import FileBytes, Job, JobSpec, JobUser, Kind, Status, now
from ..shared import SharedPayload
from ..store import Store
from . import parsing
from .parsing import NotebookByPath, TypedSubmit

#: Enough of a result's first bytes to tell its media type (`buffers.MAGIC` is 21).
_HEAD = 64


class NamesFunctions(NamedTuple):
    """A submit whose payloads name functions stored once by their sha256 alone (`shared.py`):
    the handler checks that its user may name them (`access.JobAccess.named_functions`, with
    each one's `senders`: empty for one not stored), then enqueues the `items`."""

    items: list[tuple[JobSpec, Any]]
    senders: dict[str, set[str]]


def names_functions(
    store: Store, items: list[tuple[JobSpec, Any]]
) -> list[tuple[JobSpec, Any]] | NamesFunctions:
    """`items` as they are, or with the senders of the functions they name by sha256 alone."""
    named = {
        payload.function.sha256
        for _, payload in items
        if isinstance(payload, SharedPayload) and payload.function.data is None
    }
    if not named:
        return items
    found = store.function_users(named)
    return NamesFunctions(items, {sha256: found.get(sha256, set()) for sha256 in named})


def submit(
    store: Store,
    parse: Callable[[], tuple[JobSpec, Any] | NotebookByPath | TypedSubmit],
    user: JobUser,
) -> tuple[Job, bool] | NotebookByPath | TypedSubmit | NamesFunctions:
    """Parse a submit body (`parsing.submit_json` or `submit_multipart`, bound to the body) and
    enqueue a job of `user`; also say whether the job is new (201) or an earlier one with the
    same key (200). A spooled payload (`FileBytes`, bodies.py) becomes the job's file.

    A notebook submit by path comes back as it is: the handler reads the file through the
    server's contents manager, then submits again; so does a typed submit, whose type the
    handler makes sure it knows before it builds the job, and one naming a stored function by
    its sha256 alone, which the handler checks the user may name (`NamesFunctions`).
    """
    parsed = parse()
    if isinstance(parsed, (NotebookByPath, TypedSubmit)):
        return parsed  # the handler reads the notebook or finds the type, then submits again
    checked = names_functions(store, [parsed])
    if isinstance(checked, NamesFunctions):
        return checked
    return enqueue(store, *parsed, user)


def enqueue(
    store: Store,
    spec: JobSpec,
    payload: bytes | FileBytes | SharedPayload,
    user: JobUser,
    others: Collection[str] | None = (),
) -> tuple[Job, bool]:
    """Store one job of `user` (`others`: `Store.enqueue`'s); whether it is new.

    The store returns the existing job for an `idempotency_key` it has seen: such a job was
    created before this call started. (Two concurrent first submits of one key both see a job
    created during their call and both answer 201; there is still only one job.)"""
    started = now()
    job = store.enqueue(spec, payload, user, others)
    return job, spec.idempotency_key is None or job.created_at >= started


def batch(store: Store, body: bytes, limit: int) -> list[tuple[JobSpec, Any]] | NamesFunctions:
    """A batch submit's items (`parsing.batch_json`), with the senders of the functions they
    name by sha256 alone, if any (`NamesFunctions`)."""
    return names_functions(store, parsing.batch_json(body, limit))


def result_media_type(data: bytes) -> str:
    """The media type of stored result bytes (their first bytes are enough), told without
    loading them: a pickle (function and cell jobs, a typed job's value that is not JSON)
    always starts with byte 0x80 or `buffers.MAGIC`; the rest (a notebook job's notebook, a
    typed job's JSON value) is JSON text."""
    if not data or job_types.is_pickle(data):
        return "application/octet-stream"
    return "application/json"


class Stored(NamedTuple):
    """Result bytes as the store keeps them: an open file (the caller closes it), its size,
    and its media type (`result_media_type`)."""

    file: BinaryIO
    size: int
    media_type: str


def _stored(file: BinaryIO, size: int) -> Stored:
    head = file.read(_HEAD)
    file.seek(0)
    return Stored(file, size, result_media_type(head))


def result(store: Store, job_id: int) -> Stored | Job:
    """The result of a succeeded job (or of a failed cell that sent names back), to be read a
    piece at a time, else its record: one hop for either answer."""
    try:
        return _stored(*store.open_result(job_id))
    except ResultNotReady:
        job = store.get(job_id)
    if job.status is Status.SUCCEEDED:  # it succeeded between the two reads
        return _stored(*store.open_result(job_id))
    return job


def notebook(store: Store, job_id: int) -> bytes:
    """A notebook job's executed notebook bytes (JSON, never unpickled): a succeeded run's, or
    as far as it ran for a failed, cancelled or timed-out one; `NotebookNotFound` while there
    is none."""
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


def read_log(
    store: Store, job_id: int, offset: int, limit: int, stream: str | None = None
) -> dict[str, Any]:
    """One chunk of a job's log as text, ending on a whole UTF-8 character when it can: of the
    whole log, its `parts` saying which stream wrote what, or of one `stream` (offsets in that
    stream's bytes); `streams` lists every stream with its size."""
    job, found = store.read_log_streams(job_id, offset, limit, stream)
    data, next_offset, parts = found.data, found.next_offset, found.parts
    whole = _whole_utf8(data)
    if whole < len(data):
        cut = len(data) - whole
        next_offset -= cut
        data = data[:whole]
        name, last = parts[-1]
        parts[-1] = (name, last[: len(last) - cut])
    sizes = dict(found.streams)
    size = job.log_size if stream is None else sizes[stream]
    return {
        "data": data.decode("utf-8", errors="replace"),
        "offset": offset,
        "next_offset": next_offset,
        "size": max(size, next_offset),
        "stream": stream,
        "streams": [{"name": name, "size": n} for name, n in found.streams],
        "parts": [
            {"stream": name, "data": part.decode("utf-8", errors="replace")}
            for name, part in parts
            if part
        ],
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


def stats(
    store: Store, extra: dict[str, Any], user: str | None = None, job_type: str | None = None
) -> dict[str, Any]:
    """`GET /jobs/api/stats`: the store's numbers (`Store.overview`, of `user`'s jobs and of
    `job_type`'s when given) and `extra`."""
    return {**store.overview(user, job_type), **extra}
