"""`jj.submit`, `jj.map`, `jj.get`, `jj.jobs`: the engine's API, over HTTP, from a notebook.

Same options and the same `Job` interface as `JobQueue` (result, exception, cancel, done,
progress, logs, wait, await), but the jobs go to the Jupyter server, run with this kernel's
interpreter in this kernel's working directory, and belong to this notebook (the owner).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..job import Job
from ..models import JobSpec, Kind, Status
from ..options import TimeLike, build_spec, function_name
from ..payload import function_payload
from .client import Client, HttpBackend, discover
from .handle import RemoteJob
from .session import owner

_backend: HttpBackend | None = None
_backend_lock = threading.Lock()


def connection() -> HttpBackend:
    """This process's connection to the server (found on first use; ServerUnavailable if none)."""
    global _backend
    with _backend_lock:
        if _backend is None:
            _backend = HttpBackend(Client(discover()))
        return _backend


def reset_connection() -> None:
    """Forget the server (after it moved); the next call discovers it again."""
    global _backend
    with _backend_lock:
        old, _backend = _backend, None
    if old is not None:
        old.close()


def user_namespace() -> dict[str, Any] | None:
    from IPython import get_ipython

    shell = get_ipython()
    return shell.user_ns if shell is not None else None


def make_spec(kind: Kind, name: str, **options: Any) -> JobSpec:
    """A spec with this kernel's owner, interpreter and working directory; bad options raise
    TypeError (unknown name) or InvalidRequest (bad value), before anything is sent."""
    owner_ = owner(user_namespace())
    return build_spec(kind, name, owner_, options, interpreter=sys.executable, cwd=os.getcwd())


def submit(
    fn: Callable[..., Any],
    /,
    *args: Any,
    name: str | None = None,
    priority: int = 0,
    timeout: float | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    after: Iterable[Job | int] | Job | int | None = None,
    run_at: TimeLike = None,
    expires_at: TimeLike = None,
    idempotency_key: str | None = None,
    interpreter: str | None = None,
    cwd: str | None = None,
    **kwargs: Any,
) -> RemoteJob:
    """Run `fn(*args, **kwargs)` as a background job; returns its handle at once.

    The options are `JobQueue.submit`'s; `interpreter` and `cwd` default to this kernel's.
    In a notebook the handle displays as a live widget. What cannot be serialized or is not a
    valid option raises here; the job itself is stored a moment later, in the background and
    batched with other submits, in order: `job.id` waits until it is stored, and a job the
    server refuses raises that error from `job.id`, `result()` and the other verbs.
    """
    spec = make_spec(
        Kind.FUNCTION,
        function_name(fn, name),
        priority=priority,
        timeout=timeout,
        retries=retries,
        retry_delay=retry_delay,
        after=after,
        run_at=run_at,
        expires_at=expires_at,
        idempotency_key=idempotency_key,
        interpreter=interpreter,
        cwd=cwd,
    )
    payload = function_payload(fn, args, kwargs)
    return connection().submit([(spec, payload)])[0]


def map(fn: Callable[..., Any], iterable: Iterable[Any], /, **options: Any) -> list[RemoteJob]:
    """One job per item, `fn(item)`, sent in one request and stored in one transaction.

    Options are `submit`'s; job names get the item's index (`f[0]`, `f[1]`...), and an
    `idempotency_key` gets one too, so a re-run of the same map does not submit twice.
    """
    base = function_name(fn, options.pop("name", None))
    key = options.pop("idempotency_key", None)
    items = []
    for index, item in enumerate(iterable):
        spec = make_spec(
            Kind.FUNCTION,
            f"{base}[{index}]",
            idempotency_key=None if key is None else f"{key}[{index}]",
            **dict(options),
        )
        items.append((spec, function_payload(fn, (item,), {})))
    return connection().submit_and_wait(items) if items else []


def get(job_id: int) -> RemoteJob:
    """The handle of any job on the server, by id (raises JobNotFound)."""
    backend = connection()
    return backend.handle(backend.get(int(job_id)))


def jobs(
    status: str | Iterable[str] | Status | None = None, all: bool = False, limit: int = 1000
) -> list[RemoteJob]:
    """This notebook's jobs, newest first (`all=True`: everyone's); `status` filters."""
    if isinstance(status, (str, Status)):
        status = [str(status)]
    statuses = [str(s) for s in status] if status is not None else None
    who = None if all else owner(user_namespace())
    backend = connection()
    records, cursor = [], None
    while len(records) < limit:
        page, cursor, _ = backend.list(
            status=statuses, owner=who, limit=min(200, limit - len(records)), cursor=cursor
        )
        records.extend(page)
        if not cursor:
            break
    return [backend.handle(r) for r in records]
