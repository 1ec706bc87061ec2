"""The few API answers that combine store calls; each runs in a thread (they block on SQLite).

Handlers call these through `JobsApp.run`, so that one request is one hop off the loop even
when it needs two reads.
"""

from __future__ import annotations

from typing import Any

from ..models import Job, JobSpec, Status, now
from ..store import Store


def submit(store: Store, spec: JobSpec, payload: bytes) -> tuple[Job, bool]:
    """Enqueue; also say whether the job is new (201) or an earlier one with the same key (200).

    The store returns the existing job for an `idempotency_key` it has seen: such a job was
    created before this call started. (Two concurrent first submits of one key both see a job
    created during their call and both answer 201; there is still only one job.)
    """
    started = now()
    job = store.enqueue(spec, payload)
    return job, spec.idempotency_key is None or job.created_at >= started


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
