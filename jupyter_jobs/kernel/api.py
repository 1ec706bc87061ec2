"""`jj.submit`, `map`, `get`, `jobs`, `cancel`, `retry`, `release`, `delete`, `results`,
`schedule`, `list_schedules`, `get_schedule`, `pause_schedule`, `resume_schedule`,
`delete_schedule`, `job_type`, `submit_typed`, `list_job_types`, `get_job_type`,
`delete_job_type`, `peek`, `is_empty`, `stats`, `workers`, `drain_worker` from a notebook.

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

from .. import job_types
from ..channels import Results
from ..front import Jobs
from ..job_types import JobType, TypedRun
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
    status: str | Iterable[str] | Status | None = None,
    all: bool = False,
    limit: int = 1000,
    user: str | None = None,
    mine: bool = False,
    type: str | None = None,
) -> list[RemoteJob]:
    """This notebook's jobs, newest first (`all=True`: every notebook's); `status` filters,
    `user` keeps one user's jobs, `mine` yours (the user the server takes this kernel for),
    `type` the typed jobs of one job type."""
    who = None if all else this_owner()
    return front().jobs(  # type: ignore[return-value]
        status, owner=who, limit=limit, user=user, mine=mine, type=type
    )


def cancel(job_id: int) -> RemoteJob:
    return front().cancel(job_id)  # type: ignore[return-value]


def retry(job_id: int) -> RemoteJob:
    return front().retry(job_id)  # type: ignore[return-value]


def release(job_id: int) -> RemoteJob:
    return front().release(job_id)  # type: ignore[return-value]


def delete(job_id: int) -> None:
    front().delete(job_id)


def results(channel: str, /, **options: Any) -> Results:
    return front().results(channel, **options)


def peek() -> RemoteJob | None:
    return front().peek()  # type: ignore[return-value]


def is_empty() -> bool:
    return front().is_empty()


def stats(*, type: str | None = None) -> dict[str, Any]:
    return front().stats(type=type)


def workers() -> list[WorkerInfo]:
    return front().workers()


def drain_worker(worker_id: str) -> WorkerInfo:
    return front().drain_worker(worker_id)


def schedule(target: Any = None, /, **options: Any) -> Schedule:
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


def job_type(
    name: str | None = None,
    schema: dict[str, Any] | None = None,
    *,
    summarize: Callable[[TypedRun], Any] | None = None,
    description: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make the decorated function a job type: `@jupyter_jobs.job_type("train", schema={...})`.

    A function defined in the notebook (module `__main__`) is registered with the server at
    once (`Jobs.register_type`: kept in the job database with this kernel's interpreter and
    directory, so it outlives the kernel and the server). In a package's module the decorator
    only describes the function, for the `jupyter_jobs.types` entry point that installs it.
    """
    describe = job_types.job_type(name, schema, summarize=summarize, description=description)

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        describe(fn)
        if getattr(fn, "__module__", None) == "__main__":
            front().register_type(fn)
        return fn

    return register


def submit_typed(
    type_name: str, /, parameters: dict[str, Any] | None = None, **options: Any
) -> RemoteJob:
    return front().submit_typed(type_name, parameters, **options)  # type: ignore[return-value]


def list_job_types() -> list[JobType]:
    """Every job type the server knows, by name (`jupyter_jobs.job_types` is the module)."""
    return front().job_types()


def get_job_type(name: str) -> JobType:
    return front().get_job_type(name)


def delete_job_type(name: str) -> None:
    front().delete_job_type(name)


_SCHEDULE_VERBS = (schedule, get_schedule, pause_schedule, resume_schedule, delete_schedule)
_VERBS = (submit, submit_notebook, map, get, cancel, retry, release, delete, results)
_TYPE_VERBS = (submit_typed, get_job_type, delete_job_type)
_QUEUE_VERBS = (peek, is_empty, stats, workers, drain_worker)
for _fn in (*_VERBS, *_SCHEDULE_VERBS, *_TYPE_VERBS, *_QUEUE_VERBS):
    _fn.__doc__ = getattr(Jobs, _fn.__name__).__doc__
del _fn
results.__signature__ = inspect.signature(
    Jobs.results
).replace(  # type: ignore[attr-defined]
    parameters=list(inspect.signature(Jobs.results).parameters.values())[1:]
)
schedule.__signature__ = inspect.signature(
    Jobs.schedule
).replace(  # type: ignore[attr-defined]
    parameters=list(inspect.signature(Jobs.schedule).parameters.values())[1:]
)
submit.__signature__ = Jobs.submit.__signature__.replace(  # type: ignore[attr-defined]
    parameters=list(Jobs.submit.__signature__.parameters.values())[1:]  # type: ignore[attr-defined]
)
