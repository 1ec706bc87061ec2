"""`Jobs`: the one front end (submit, map, get, jobs, cancel, retry, delete, release, results,
schedule, submit_typed and the job type verbs).

`JobQueue` (the engine's API, over a store file) and `jj.*` in kernels (over the Jupyter server's
REST API) are thin over it; they differ only by their `Backend` and by who the jobs belong to.
So a job submitted the same way is named and configured the same way from both, and a verb added
here is added to both.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Any

from . import job_types, notebooks, shared
from . import options as opts
from .channels import DEFAULT_READER, Results
from .errors import PayloadError
from .job import Backend, Job
from .job_types import JobType, TypedRun
from .models import JobSpec, Kind, Status
from .payload import call_bytes, dumps, function_bytes, function_payload
from .schedules import Schedule, ScheduleSpec
from .worker_info import WorkerInfo

#: Jobs one `jobs()` call lists unless told otherwise.
LIST_LIMIT = 1000


def _no_defaults() -> dict[str, str | None]:
    return {}


class Jobs:
    """Submit and follow jobs through `backend`.

    `owner()` names who submits (a script, a notebook); `defaults()` gives the `interpreter` and
    `cwd` a job gets when the caller names none (a kernel's own; none for the engine, where the
    worker's are used). Both are called per submit: a kernel's working directory may change.
    """

    def __init__(
        self,
        backend: Backend,
        owner: Callable[[], str],
        defaults: Callable[[], dict[str, str | None]] = _no_defaults,
    ) -> None:
        self.backend = backend
        self._owner = owner
        self._defaults = defaults

    def spec(self, kind: Kind, name: str, **options: Any) -> JobSpec:
        """A validated spec with this front end's owner and defaults (see `options.build_spec`)."""
        return opts.build_spec(kind, name, self._owner(), options, **self._defaults())

    # --- submitting --------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
        """Run `fn(*args, **kwargs)` as a job; returns its handle at once.

        Keywords named as submit options (below) configure the job; the others go to `fn`.
        What cannot be serialized and options that are not valid raise here. The job is stored
        a moment later, in the background, in submission order, batched with other submits into
        one transaction (see `submitter.py`): `job.id` waits until it is stored, and a job the
        store or server refuses (an unknown job in `after=`) raises that error from `job.id`,
        `result()` and the other verbs.
        """
        options, kwargs = opts.split_options(kwargs)
        name = opts.function_name(fn, options.pop("name", None))
        spec = self.spec(Kind.FUNCTION, name, **options)
        function = shared.Function.of(function_bytes(fn))
        payload = shared.payload_for(function, call_bytes(fn, args, kwargs))
        return self.backend.submit([(spec, payload)])[0]

    def map(self, fn: Callable[..., Any], iterable: Iterable[Any], /, **options: Any) -> list[Job]:
        """One job per item, `fn(item)`, stored in one transaction; waits until it is stored.

        Options are `submit`'s. Job names get the item's index (`f[0]`, `f[1]`...), so the jobs
        can be told apart in a list, and an `idempotency_key` gets one too, so each item is one
        job and a re-run of the same map stores nothing twice. `fn` is pickled once, and stored
        once (see `shared.py`): each job keeps only its item.
        """
        base = opts.function_name(fn, options.pop("name", None))
        key = options.pop("idempotency_key", None)
        spec = self.spec(Kind.FUNCTION, base, **options)  # validated once: items differ by name
        function = shared.Function.of(function_bytes(fn))
        items = []
        for index, item in enumerate(iterable):
            item_spec = dataclasses.replace(
                spec,
                name=f"{base}[{index}]",
                idempotency_key=None if key is None else f"{key}[{index}]",
            )
            item_spec.validate()  # the index may make the name too long
            items.append((item_spec, shared.payload_for(function, call_bytes(fn, (item,), {}))))
        return self.backend.submit_and_wait(items)

    def submit_notebook(
        self,
        path: str | os.PathLike[str],
        /,
        parameters: dict[str, Any] | None = None,
        kernel_name: str | None = None,
        **options: Any,
    ) -> Job:
        """Run the notebook at `path` as a job, in a fresh kernel; returns its handle at once.

        The notebook is read now (a snapshot: later edits change nothing). `parameters` (JSON
        values) are set in a cell injected after the cell tagged `parameters`, or at the top.
        The kernel is `kernel_name`, else the notebook's own, else python3. Options are
        `submit`'s; the job runs in the notebook's folder unless `cwd` says otherwise. Its
        `result()` is the executed notebook (`nbformat.NotebookNode`). A bad notebook,
        parameter name or value raises here, before anything is stored.
        """
        path = os.fspath(path)
        data = notebooks.payload(notebooks.read_file(path), parameters, kernel_name)
        name = options.pop("name", None) or notebooks.job_name(path)
        options.setdefault("cwd", os.path.dirname(os.path.abspath(path)))
        options["options"] = notebooks.display_options(path, parameters, kernel_name)
        spec = self.spec(Kind.NOTEBOOK, name, **options)
        return self.backend.submit([(spec, data)])[0]

    def submit_typed(
        self, type_name: str, /, parameters: dict[str, Any] | None = None, **options: Any
    ) -> Job:
        """Run a job of the job type `type_name` with `parameters` (JSON values, checked
        against the type's schema before this returns: a bad one raises `InvalidRequest`
        naming it, an unknown type `JobTypeNotFound`); returns its handle (over the store, the
        job is stored in the background as `submit`'s are; over REST, before this returns).

        Options are `submit`'s (the job's name defaults to the type's). The job runs where its
        type says (a kernel type: the interpreter and directory of the kernel that registered
        it) unless `interpreter` or `cwd` are given. Its `result()` is the run function's
        value (sent as JSON when it is plain JSON), its record's `summary` what the type's
        `summarize` made of it.
        """
        name = options.pop("name", None) or job_types.check_name(type_name)
        spec = opts.build_spec(
            Kind.TYPED, name, self._owner(), options, type=type_name, parameters=parameters
        )
        return self.backend.submit_typed(spec)  # type: ignore[attr-defined]

    # --- following and acting ----------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """The handle of an existing job (raises JobNotFound)."""
        return self.backend.handle(self.backend.get(int(job_id)))

    def jobs(
        self,
        status: str | Status | Iterable[str | Status] | None = None,
        *,
        owner: str | None = None,
        q: str | None = None,
        limit: int = LIST_LIMIT,
        user: str | None = None,
        mine: bool = False,
        type: str | None = None,
    ) -> list[Job]:
        """Handles for the jobs matching the filters, newest first: `status` (one or several),
        `owner`, `q` (in the name or notebook), `user` (whose jobs) or `mine` (your own: the
        OS user's for `JobQueue`, the server's user for you in a kernel), `type` (typed jobs
        of that job type), at most `limit`."""
        if isinstance(status, (str, Status)):
            status = [status]
        statuses = [str(s) for s in status] if status is not None else None
        records = self.backend.find(
            status=statuses, owner=owner, q=q, limit=limit, user=user, mine=mine, type=type
        )
        return [self.backend.handle(r) for r in records]

    def cancel(self, job_id: int) -> Job:
        """Cancel a job by id (see `Job.cancel` for a running one); returns its handle."""
        return self.backend.handle(self.backend.cancel(int(job_id)))

    def retry(self, job_id: int) -> Job:
        """Run a failed or cancelled job again; returns a handle to the new run."""
        return self.backend.handle(self.backend.retry(int(job_id)))

    def release(self, job_id: int) -> Job:
        """Let a job submitted with `hold=True` run; returns its handle."""
        return self.backend.handle(self.backend.release(int(job_id)))

    def delete(self, job_id: int) -> None:
        """Remove a job that is not running, with its payload, result and logs."""
        self.backend.delete(int(job_id))

    # --- job types ---------------------------------------------------------------------------

    def job_type(
        self,
        name: str | None = None,
        schema: dict[str, Any] | None = None,
        *,
        summarize: Callable[[TypedRun], Any] | None = None,
        description: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator: `register_type` the function it decorates, and return it unchanged."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.register_type(fn, name, schema, summarize=summarize, description=description)
            return fn

        return register

    def register_type(
        self,
        fn: Callable[..., Any],
        /,
        name: str | None = None,
        schema: dict[str, Any] | None = None,
        *,
        summarize: Callable[[TypedRun], Any] | None = None,
        description: str | None = None,
    ) -> JobType:
        """Register `fn` as the job type `name` (default: its name) whose parameters `schema`
        describes (default: made from its signature), with an optional `summarize(job)` that
        turns a finished run into a short JSON view. The functions are kept as dill bytes in
        the job database, which only workers load, so the type outlives this process and the
        server; registering a name again replaces it. Its jobs run with this process's
        interpreter in its working directory (a kernel's: its own). Returns the stored type.
        """
        described = job_types.describe_function(fn, name, schema, summarize, description)
        try:
            functions = dumps({"run": fn, "summarize": described.summarize})
        except Exception as exc:
            raise PayloadError(
                f"job type {described.name!r}: its functions cannot be saved: {exc}"
            ) from exc
        defaults = {"interpreter": None, "cwd": os.getcwd(), **self._defaults()}
        described.owner = self._owner()
        described.interpreter = defaults["interpreter"]
        described.cwd = defaults["cwd"]
        return self.backend.register_type(described, functions)  # type: ignore[attr-defined]

    def job_types(self) -> list[JobType]:
        """Every job type (installed ones, and those registered from kernels), by name."""
        return self.backend.job_types()  # type: ignore[attr-defined]

    def get_job_type(self, name: str) -> JobType:
        """One job type, with its schema (raises JobTypeNotFound)."""
        return self.backend.get_job_type(name)  # type: ignore[attr-defined]

    def delete_job_type(self, name: str) -> None:
        """Forget a job type registered from a kernel (its jobs keep their copy of it);
        installed types are removed by uninstalling their package."""
        self.backend.delete_job_type(name)  # type: ignore[attr-defined]

    def results(
        self,
        channel: str,
        *,
        reader: str = DEFAULT_READER,
        timeout: float | None = None,
        count: int | None = None,
    ) -> Results:
        """The jobs submitted with `channel=channel`, as they finish, for `reader`.

        Yields finished `Job` handles in the order they finished, each once per reader (its
        cursor is durable: a reader that restarts resumes after the last job it acknowledged;
        other readers get every job too). Asking for the next job acknowledges the one before
        it; `job.ack()` acknowledges at once (do it for the last one you handle). A reader that
        dies before acknowledging a job gets it again (at least once). `timeout`: seconds to
        wait for each next job (None: forever; 0: only those finished already); when it
        passes the iteration ends, or raises `TimeoutError` when fewer than `count` came.
        """
        return Results(self.backend, channel, reader, timeout, count)

    # --- the queue and its workers -----------------------------------------------------------

    def peek(self) -> Job | None:
        """The job that would run next, without taking it: the consumers' own rule (priority,
        then fair share between owners, then first come; only queued jobs whose time has
        come), or None when none waits. Another job may be taken first if one is submitted
        or a claim happens meanwhile."""
        record = self.backend.peek()
        return None if record is None else self.backend.handle(record)

    def __len__(self) -> int:
        """Jobs waiting for a worker (queued; claimed ones not started yet included). Pending
        jobs (held, waiting for `after=` jobs or `run_at`) cannot run yet: not counted."""
        return int(self.stats()["queued"])

    def __bool__(self) -> bool:
        """Always true: `if q:` asks whether there is a queue; `is_empty()` whether jobs wait."""
        return True

    def is_empty(self) -> bool:
        """No job waits for a worker (`len(q) == 0`)."""
        return len(self) == 0

    def stats(self, *, type: str | None = None) -> dict[str, Any]:
        """The queue in numbers, as `GET /jobs/api/stats` gives them: `counts` per status,
        `running`, `queued` (the length), `pending`, `db_size`, `workspace_bytes` (and the
        `executor` and `max_workers` of the consumer this front end runs or talks to); the
        numbers of job type `type`'s jobs when given (the bytes stay the whole store's)."""
        return self.backend.stats(type)

    def workers(self) -> list[WorkerInfo]:
        """The worker processes that run the jobs (`jupyter_jobs.worker_info.WorkerInfo`): pid,
        host, state, current job, started at, last heartbeat, jobs done."""
        return self.backend.workers()

    def drain_worker(self, worker_id: str) -> WorkerInfo:
        """Let the worker `worker_id` (`WorkerInfo.id`) finish its current job, then stop it;
        returns it as it is now."""
        return self.backend.drain_worker(str(worker_id))

    # --- schedules ---------------------------------------------------------------------------

    def schedule(
        self,
        target: Callable[..., Any] | str | os.PathLike[str] | None = None,
        *,
        job_type: str | None = None,
        cron: str | None = None,
        every: float | None = None,
        timezone: str | None = None,
        parameters: dict[str, Any] | None = None,
        name: str | None = None,
        overlap: str = "skip",
        catch_up: str = "latest",
        paused: bool = False,
        kernel_name: str | None = None,
        **job_options: Any,
    ) -> Schedule:
        """Run `target` at the times of `cron` (in `timezone`, default this machine's) or
        `every` seconds, as ordinary jobs; returns the stored schedule.

        `target` is a notebook path (`parameters` are injected papermill-style; a notebook
        whose parameters cell declares `scheduled_time` gets the run's time, ISO 8601) or a
        function (called as `target(**parameters)`); or, instead of a target, `job_type`
        names a job type whose runs get `parameters` (checked against its schema now: a bad
        one raises `InvalidRequest` naming it). `overlap`: "skip" (no new run while one
        is pending, queued or running) or "queue". `catch_up` after a stop: "latest" (one run),
        "none" or "all" (at most 100). `job_options`: priority, timeout, retries, retry_delay,
        interpreter, cwd, channel (each finished run goes to that result channel).
        """
        payload: bytes | None = None
        if (target is None) == (job_type is None):
            raise TypeError("schedule() takes a target (a notebook or a function) or a job_type")
        if job_type is not None:
            target_json: dict[str, Any] = {
                "kind": "typed",
                "type": job_type,
                "parameters": dict(parameters or {}),
            }
            fn_name = job_type
        elif callable(target):
            fn_name = opts.function_name(target)
            target_json = {"kind": "function", "name": fn_name}
            payload = function_payload(target, (), parameters or {})
            job_options = {**self._defaults(), **job_options}
        else:
            target_json = {
                "kind": "notebook",
                "path": os.fspath(target),
                "parameters": dict(parameters or {}),
                "kernel_name": kernel_name,
            }
            fn_name = ""
        spec = ScheduleSpec(
            name=name or fn_name,
            target=target_json,
            cron=cron,
            every=every,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
            paused=paused,
            job={k: v for k, v in job_options.items() if v is not None},
        )
        spec.validate()
        return self.backend.add_schedule(spec, payload, self._owner())  # type: ignore[attr-defined]

    def schedules(self) -> list[Schedule]:
        """Every schedule, oldest first."""
        return self.backend.schedules()  # type: ignore[attr-defined]

    def get_schedule(self, schedule_id: int) -> Schedule:
        """One schedule (raises ScheduleNotFound)."""
        return self.backend.get_schedule(int(schedule_id))  # type: ignore[attr-defined]

    def pause_schedule(self, schedule_id: int) -> Schedule:
        """Stop creating runs until resumed (runs already created are not touched)."""
        return self.backend.update_schedule(int(schedule_id), {"paused": True})  # type: ignore[attr-defined]

    def resume_schedule(self, schedule_id: int) -> Schedule:
        """Create runs again from the next time on (the times missed while paused are not)."""
        return self.backend.update_schedule(int(schedule_id), {"paused": False})  # type: ignore[attr-defined]

    def delete_schedule(self, schedule_id: int) -> None:
        """Remove a schedule; its runs stay as jobs."""
        self.backend.delete_schedule(int(schedule_id))  # type: ignore[attr-defined]


Jobs.submit.__doc__ = (Jobs.submit.__doc__ or "") + opts.describe()
Jobs.submit.__signature__ = opts.submit_signature(method=True)  # type: ignore[attr-defined]
