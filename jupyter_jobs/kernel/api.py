"""`jj.submit`, `map`, `get`, `jobs`, `cancel`, `retry`, `release`, `delete`, `schedule`,
`list_schedules`, `get_schedule`, `pause_schedule`, `resume_schedule`, `delete_schedule`,
`peek`, `is_empty`, `stats`, `workers`, `drain_worker` from a notebook.

The `Jobs` front end (`front.py`), as `JobQueue` is, over the Jupyter server's REST API: the same
options, names and `Job` interface (result, exception, cancel, done, progress, logs, wait,
await), but the jobs run with this kernel's interpreter in this kernel's working directory, and
belong to this notebook (the owner). These functions only find the server and fill those in.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..front import Jobs
from ..models import JobSpec, Kind, Status
from ..schedules import Schedule
from ..worker_info import WorkerInfo
from .client import Client, HttpBackend, discover
from .handle import RemoteJob
from .session import owner

_front: Jobs | None = None
_front_lock = threading.Lock()


def front() -> Jobs:
    """This process's front end, over its connection to the server (found on first use;
    ServerUnavailable if none)."""
    global _front
    with _front_lock:
        if _front is None:
            _front = Jobs(HttpBackend(Client(discover())), this_owner, kernel_defaults)
        return _front


def connection() -> HttpBackend:
    """This process's connection to the server (see `front`)."""
    return front().backend  # type: ignore[return-value]


def reset_connection() -> None:
    """Forget the server (after it moved); the next call discovers it again."""
    global _front
    with _front_lock:
        old, _front = _front, None
    if old is not None:
        old.backend.close()


def user_namespace() -> dict[str, Any] | None:
    from IPython import get_ipython

    shell = get_ipython()
    return shell.user_ns if shell is not None else None


def this_owner() -> str:
    """The notebook (else kernel, else process) the jobs submitted here belong to."""
    return owner(user_namespace())


def kernel_defaults() -> dict[str, str | None]:
    """Jobs run with this kernel's interpreter, in its working directory, unless told otherwise."""
    return {"interpreter": sys.executable, "cwd": os.getcwd()}


def make_spec(kind: Kind, name: str, **options: Any) -> JobSpec:
    """A spec with this kernel's owner, interpreter and working directory; bad options raise
    TypeError (unknown name) or InvalidRequest (bad value), before anything is sent."""
    return front().spec(kind, name, **options)


def submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RemoteJob:
    return front().submit(fn, *args, **kwargs)  # type: ignore[return-value]


def submit_notebook(
    path: str,
    /,
    parameters: dict[str, Any] | None = None,
    kernel_name: str | None = None,
    **options: Any,
) -> RemoteJob:
    return front().submit_notebook(  # type: ignore[return-value]
        path, parameters, kernel_name, **options
    )


def map(fn: Callable[..., Any], iterable: Iterable[Any], /, **options: Any) -> list[RemoteJob]:
    return front().map(fn, iterable, **options)  # type: ignore[return-value]


def get(job_id: int) -> RemoteJob:
    return front().get(job_id)  # type: ignore[return-value]


def jobs(
    status: str | Iterable[str] | Status | None = None, all: bool = False, limit: int = 1000
) -> list[RemoteJob]:
    """This notebook's jobs, newest first (`all=True`: everyone's); `status` filters."""
    who = None if all else this_owner()
    return front().jobs(status, owner=who, limit=limit)  # type: ignore[return-value]


def cancel(job_id: int) -> RemoteJob:
    return front().cancel(job_id)  # type: ignore[return-value]


def retry(job_id: int) -> RemoteJob:
    return front().retry(job_id)  # type: ignore[return-value]


def release(job_id: int) -> RemoteJob:
    return front().release(job_id)  # type: ignore[return-value]


def delete(job_id: int) -> None:
    front().delete(job_id)


def peek() -> RemoteJob | None:
    return front().peek()  # type: ignore[return-value]


def is_empty() -> bool:
    return front().is_empty()


def stats() -> dict[str, Any]:
    return front().stats()


def workers() -> list[WorkerInfo]:
    return front().workers()


def drain_worker(worker_id: str) -> WorkerInfo:
    return front().drain_worker(worker_id)


def schedule(target: Any, /, **options: Any) -> Schedule:
    return front().schedule(target, **options)


def list_schedules() -> list[Schedule]:
    """Every schedule, oldest first (`jupyter_jobs.schedules` is the module of the rules)."""
    return front().schedules()


def get_schedule(schedule_id: int) -> Schedule:
    return front().get_schedule(schedule_id)


def pause_schedule(schedule_id: int) -> Schedule:
    return front().pause_schedule(schedule_id)


def resume_schedule(schedule_id: int) -> Schedule:
    return front().resume_schedule(schedule_id)


def delete_schedule(schedule_id: int) -> None:
    front().delete_schedule(schedule_id)


_SCHEDULE_VERBS = (schedule, get_schedule, pause_schedule, resume_schedule, delete_schedule)
_QUEUE_VERBS = (peek, is_empty, stats, workers, drain_worker)
for _fn in (
    submit,
    submit_notebook,
    map,
    get,
    cancel,
    retry,
    release,
    delete,
    *_SCHEDULE_VERBS,
    *_QUEUE_VERBS,
):
    _fn.__doc__ = getattr(Jobs, _fn.__name__).__doc__
del _fn
schedule.__signature__ = inspect.signature(
    Jobs.schedule
).replace(  # type: ignore[attr-defined]
    parameters=list(inspect.signature(Jobs.schedule).parameters.values())[1:]
)
submit.__signature__ = Jobs.submit.__signature__.replace(  # type: ignore[attr-defined]
    parameters=list(Jobs.submit.__signature__.parameters.values())[1:]  # type: ignore[attr-defined]
)
