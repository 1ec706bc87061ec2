"""Run a typed job in the worker, and describe the installed job types: user code, never the
server's process.

`runner.py` calls `run(payload, job_id, attempt)` for a job of kind "typed": it imports the
type's run function (an installed type's entry point, `module:function`) or loads it (a kernel
type's dill bytes), calls it with the JSON parameters as keywords, and returns the result bytes
(`job_types.encode_result`: JSON when it can be) and the summary that the type's `summarize`
made of the run (JSON, or None). A summarize that fails or returns what cannot be stored does
not fail the job: the job's log says why, and the job has no summary.

`python -m jupyter_jobs.typed_run describe` prints the installed types as JSON: the server runs
it in a worker's interpreter to learn their schemas without importing them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from . import job_types
from .errors import InvalidRequest
from .job_types import JobType, TypedRun


class TypeNotLoaded(Exception):
    """The type's run function cannot be imported or loaded here (the job fails `payload`)."""


class RunFailed(Exception):
    """The run function raised: `error` is the exception (the job fails `error`)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def import_entry_point(name: str, value: str) -> Callable[..., Any]:
    """The run function an installed type's entry point (`module:function`) names, imported
    here."""
    try:
        fn = EntryPoint(name, value, job_types.ENTRY_POINT_GROUP).load()
    except Exception as exc:
        raise TypeNotLoaded(
            f"job type {name!r}: {value} cannot be imported: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(fn):
        raise TypeNotLoaded(f"job type {name!r}: {value} is a {type(fn).__name__}, not a function")
    return fn


def load_entry_point(name: str, value: str) -> JobType:
    """The `JobType` of an installed type, described (its schema checked with jsonschema). The
    entry point's name is the type's name."""
    found = job_types.describe_function(import_entry_point(name, value), name)
    found.name, found.entry_point = name, value
    return found


def describe_installed() -> list[JobType]:
    """Every installed job type, imported here; one that cannot be is listed with its error."""
    found: dict[str, JobType] = {}
    for point in sorted(entry_points(group=job_types.ENTRY_POINT_GROUP), key=lambda p: p.name):
        if point.name in found:  # the first on the path wins, as importlib.metadata's order
            continue
        try:
            found[point.name] = load_entry_point(point.name, point.value)
        except (TypeNotLoaded, InvalidRequest) as exc:
            message = exc.message if isinstance(exc, InvalidRequest) else str(exc)
            found[point.name] = JobType(name=point.name, entry_point=point.value, error=message)
    return list(found.values())


def _functions(
    payload: job_types.TypedPayload, load: Callable[[], Any] | None
) -> tuple[Callable[..., Any], Any]:
    """(run, summarize) of the payload's type; `load`: gets a kernel type's functions stored
    apart from the payload (`shared.py`)."""
    if payload.entry_point is not None:  # not described: no schema check needed to run it
        fn = import_entry_point(payload.type, payload.entry_point)
        return fn, job_types.summarize_of(fn)
    from . import payload as payloads

    try:
        loaded = load() if load is not None else payloads.load_payload(payload.functions)
    except Exception as exc:
        raise TypeNotLoaded(
            f"job type {payload.type!r}: its functions cannot be loaded in this worker "
            f"(Python {sys.version.split()[0]} at {sys.executable}): {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(loaded, dict) or not callable(loaded.get("run")):
        raise TypeNotLoaded(f"job type {payload.type!r}: its stored functions hold no run function")
    return loaded["run"], loaded.get("summarize")


def run(
    data: bytes | memoryview, job_id: int, attempt: int, functions: Callable[[], Any] | None = None
) -> tuple[bytes, Any]:
    """Run the typed job in `data`; (result bytes, summary). `functions`: loads a kernel
    type's functions when they come apart from `data` (a pack's: `shared.py`). `TypeNotLoaded`
    when its type cannot be loaded, `RunFailed` when the run function raised."""
    from . import payload as payloads

    try:
        payload = job_types.decode_payload(data, functions_apart=functions is not None)
    except InvalidRequest as exc:
        raise TypeNotLoaded(exc.message) from None
    fn, summarize = _functions(payload, functions)
    try:
        value = fn(**payload.parameters)
        if inspect.iscoroutine(value):
            value = asyncio.run(value)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt end this job, not the worker
        raise RunFailed(exc) from exc
    result = job_types.encode_result(value, payloads.dumps)
    view = TypedRun(job_id, attempt, payload.type, payload.parameters, value)
    return result, _summary(summarize, view)


def _summary(summarize: Callable[[TypedRun], Any] | None, view: TypedRun) -> Any:
    """What `summarize` makes of the run, checked; None (and why, in the log) if nothing."""
    if summarize is None:
        return None
    try:
        return job_types.summary_json(summarize(view))
    except InvalidRequest as exc:
        why = exc.message
    except Exception:
        why = "summarize raised:\n" + traceback.format_exc()
    print(f"[jupyter_jobs] job type {view.type!r}: no summary: {why}", file=sys.stderr, flush=True)
    return None


def main(argv: list[str]) -> int:
    """`describe`: the installed types as JSON (`{"types": [...]}`) on stdout."""
    if argv != ["describe"]:
        print("usage: python -m jupyter_jobs.typed_run describe", file=sys.stderr)
        return 2
    with contextlib.redirect_stdout(sys.stderr):  # what importing them prints is not JSON
        found = describe_installed()
    json.dump({"types": [t.to_json() for t in found]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
