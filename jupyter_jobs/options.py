"""Submit options, the same for every client: keyword arguments become a validated `JobSpec`.

`JobQueue.submit` (engine), `jj.submit` and `%%job` (kernel) take the same options; this module
is where they are read, so the clients cannot drift apart. It is light on purpose: kernels import
it without the store, the consumer or the executors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from .models import JobSpec, Kind

TimeLike = float | int | dt.datetime | dt.timedelta | None


def as_epoch(value: TimeLike) -> float | None:
    """Accept epoch seconds, an aware/naive datetime (local time), or a delay from now."""
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return dt.datetime.now().timestamp() + value.total_seconds()
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


def job_ids(after: Any) -> list[int]:
    """`after=` accepts job handles (anything with an `id`) or ids, one or many."""
    if after is None:
        return []
    if isinstance(after, int) or hasattr(after, "id"):
        after = [after]
    return [int(a.id) if hasattr(a, "id") else int(a) for a in after]


def function_name(fn: Callable[..., Any], name: str | None = None) -> str:
    """The job name: the one given, else the function's qualified name."""
    return name or getattr(fn, "__qualname__", None) or repr(fn)


def build_spec(
    kind: Kind,
    name: str,
    owner: str,
    options: dict[str, Any],
    *,
    interpreter: str | None = None,
    cwd: str | None = None,
) -> JobSpec:
    """A validated spec from submit options; `interpreter`/`cwd` are the client's defaults.

    Unknown options raise TypeError (naming them) and bad values InvalidRequest, before
    anything is stored or sent.
    """
    options = dict(options)
    spec = JobSpec(
        kind=kind,
        name=name,
        owner=owner,
        priority=options.pop("priority", 0),
        timeout=options.pop("timeout", None),
        retries=options.pop("retries", 0),
        retry_delay=options.pop("retry_delay", 1.0),
        after=job_ids(options.pop("after", None)),
        run_at=as_epoch(options.pop("run_at", None)),
        expires_at=as_epoch(options.pop("expires_at", None)),
        hold=options.pop("hold", False),
        idempotency_key=options.pop("idempotency_key", None),
        interpreter=options.pop("interpreter", None) or interpreter,
        cwd=options.pop("cwd", None) or cwd,
        options=options.pop("options", {}),
    )
    if options:
        raise TypeError(f"unknown option(s): {', '.join(sorted(options))}")
    spec.validate()
    return spec
