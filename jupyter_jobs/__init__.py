"""jupyter_jobs: background jobs that feel native in Jupyter.

`import jupyter_jobs` stays cheap (worker processes import it for every job): the heavier parts load
on first use through module `__getattr__`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Eager on purpose: `jupyter_jobs.progress` must be the function, never the submodule of the same
# name (importing a submodule binds it on the package), and it is what job code calls.
from .progress import current_job, progress

__version__ = "0.1.0"

# name -> module that defines it (relative to this package)
_LAZY = {
    "JobQueue": "queue",
    "Jobs": "front",
    "Job": "job",
    "Status": "models",
    "Reason": "models",
    "JobFailed": "errors",
    "JobCancelled": "errors",
    "JobNotFound": "errors",
    "ScheduleNotFound": "errors",
    "PayloadError": "errors",
    "ServerUnavailable": "errors",
    # the kernel side: `import jupyter_jobs as jj; jj.submit(...)`, `%load_ext jupyter_jobs`
    "submit": "kernel.api",
    "submit_notebook": "kernel.api",
    "map": "kernel.api",
    "get": "kernel.api",
    "jobs": "kernel.api",
    "cancel": "kernel.api",
    "retry": "kernel.api",
    "release": "kernel.api",
    "delete": "kernel.api",
    "results": "kernel.api",
    "schedule": "kernel.api",
    "list_schedules": "kernel.api",  # not `schedules`: that is the module of the rules
    "get_schedule": "kernel.api",
    "pause_schedule": "kernel.api",
    "resume_schedule": "kernel.api",
    "delete_schedule": "kernel.api",
    "job_type": "kernel.api",
    "submit_typed": "kernel.api",
    "list_job_types": "kernel.api",  # not `job_types`: that is the module of the vocabulary
    "get_job_type": "kernel.api",
    "delete_job_type": "kernel.api",
    "JobTypeNotFound": "errors",
    "peek": "kernel.api",
    "is_empty": "kernel.api",
    "stats": "kernel.api",
    "workers": "kernel.api",
    "drain_worker": "kernel.api",
    "load_ipython_extension": "kernel.magics",
    # what job code calls (a quiet no-op outside a job)
    "stream": "streams",
}

__all__ = [*_LAZY, "__version__", "current_job", "progress"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-jobs"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The server extension (jupyter_jobs.server.app.JobsApp), imported only by the server."""
    from .server.app import JobsApp

    return [{"module": "jupyter_jobs", "app": JobsApp}]
