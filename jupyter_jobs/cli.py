"""`jupyter jobs ...`: list, inspect and steer jobs from a terminal, or run a headless consumer.

The CLI opens the store file directly: a consumer serving the same database (the Jupyter server's
or a `jupyter jobs consumer`) hears about cancels and retries at once through the doorbell, so
there is no need to find a server first. So it asks no server who you are: "mine" (`--mine`) is
the OS user running it, whom `JobQueue` and a single-user Jupyter server record too; and whoever
can open the database file (0600, its owner's) may act on every job in it.

Only `consumer` creates a database: a typo in `--db` must not look like an empty queue. With
`--json`, everything it prints is JSON, errors included (on stderr, in the REST API's error
shape).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from . import cli_schedules, cli_types, cli_workers, notebooks, options, wording
from .channels import DEFAULT_READER, check_name
from .errors import DatabaseNotFound, InvalidRequest, JobsError, error_body
from .models import Job, JobUser, Status
from .store import DEFAULT_RETENTION_DAYS, Store, default_db_path

DB_ENV = "JUPYTER_JOBS_DB"
#: Seconds between two looks at a followed job's log.
_FOLLOW_INTERVAL = 0.2


class _Parser(argparse.ArgumentParser):
    """Usage errors are raised (as `InvalidRequest`), so that under --json they are JSON too."""

    def error(self, message: str) -> NoReturn:
        raise InvalidRequest(message, {"usage": self.format_usage().strip()})


def _db_path(args: argparse.Namespace) -> str:
    return args.db or os.environ.get(DB_ENV) or str(default_db_path())


def _job_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"job id must be an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"job id must be positive, got {value}")
    return value


def _name(what: str) -> Callable[[str], str]:
    """An argparse type for a channel's or reader's name (a bad one is a usage error)."""

    def check(text: str) -> str:
        try:
            return check_name(what, text)
        except InvalidRequest as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    return check


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _elapsed(job: Job) -> str:
    seconds = wording.elapsed(job)
    return "-" if seconds is None else wording.duration(seconds)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _describe(job: Job) -> str:
    fields = [
        ("id", str(job.id)),
        ("name", job.name),
        ("kind", job.kind.value),
        ("owner", job.owner or "-"),
        ("user", _user(job)),
        ("status", wording.status_word(job)),
        ("attempt", f"{job.attempt} (retries allowed: {job.retries})"),
        ("actions", ", ".join(job.actions) or "-"),
        ("priority", str(job.priority)),
        ("after", ", ".join(map(str, job.after)) or "-"),
        ("progress", wording.progress_text(job) or "-"),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("elapsed", _elapsed(job)),
        ("timeout", f"{job.timeout:g}s" if job.timeout else "-"),
        ("log", f"{job.log_size} bytes"),
    ]
    if job.type is not None:
        fields.insert(3, ("type", f"{job.type} {json.dumps(job.parameters)}"))
    if job.summary is not None:
        fields.append(("summary", json.dumps(job.summary)))
    text = "\n".join(f"{k:<10}{v}" for k, v in fields)
    if job.error:
        text += f"\nerror     {job.error.type}: {job.error.message}"
        if job.error.traceback:
            text += "\n\n" + job.error.traceback.rstrip()
    return text


def _user(job: Job) -> str:
    """The job's user as people know them: the display name, with the username when it says
    something else."""
    shown = job.user_display_name or job.user
    if shown and job.user and shown != job.user:
        return f"{shown} ({job.user})"
    return shown or "-"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def cmd_list(store: Store, args: argparse.Namespace) -> int:
    status = args.status.split(",") if args.status else None
    if status:
        unknown = sorted(set(status) - {s.value for s in Status})
        if unknown:
            raise JobsError(
                f"unknown status {', '.join(unknown)}; choose from "
                f"{', '.join(s.value for s in Status)}"
            )
    user = JobUser.of_process().username if args.mine else args.user
    page = store.query(
        status=status, owner=args.owner, q=args.q, limit=args.limit, user=user, type=args.type
    )
    if args.json:
        _print_json(
            {
                "jobs": [j.to_json() for j in page.jobs],
                "counts": page.counts,
                "next_cursor": page.next_cursor,
            }
        )
        return 0
    rows = [
        [
            str(j.id),
            j.name[:40],
            j.status.value,
            (j.reason.value if j.reason else ""),
            wording.progress_count(j) or "-",
            _elapsed(j),
            _when(j.created_at),
            (j.owner or "")[:40],
            j.user[:20] or "-",
        ]
        for j in page.jobs
    ]
    headers = ["ID", "NAME", "STATUS", "REASON", "PROGRESS", "ELAPSED", "CREATED", "OWNER", "USER"]
    print(_table(rows, headers))
    counts = ", ".join(f"{n} {s}" for s, n in page.counts.items() if n)
    print(f"\n{counts or 'no jobs'}")
    return 0


def cmd_show(store: Store, args: argparse.Namespace) -> int:
    job = store.get(args.id)
    if args.json:
        _print_json(job.to_json())
    else:
        print(_describe(job))
    return 0


def _log_chunks(
    store: Store, job_id: int, follow: bool, stream: str | None = None
) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of the job's log (or of one of its streams) in order; when following,
    until the job has ended."""

    def read(offset: int) -> tuple[bytes, int]:
        if stream is None:
            return store.read_log(job_id, offset)
        found = store.read_log_streams(job_id, offset, stream=stream)[1]
        return found.data, found.next_offset

    offset = 0
    while True:
        data, offset = read(offset)
        if data:
            yield offset - len(data), data
            continue
        if not follow or store.get(job_id).finished:
            # The rest: the job may have written its final lines as it finished.
            while data := read(offset)[0]:
                yield offset, data
                offset += len(data)
            return
        time.sleep(_FOLLOW_INTERVAL)


def cmd_logs(store: Store, args: argparse.Namespace) -> int:
    chunks = _log_chunks(store, args.id, args.follow, args.stream)
    if not args.json:
        out = sys.stdout.buffer
        for _, data in chunks:
            out.write(data)
            out.flush()
        return 0
    # The REST API's log chunk: {"data", "offset", "next_offset"}; one object for the whole
    # log, or with -f one line per chunk as it comes (JSON Lines).
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    if not args.follow:
        whole = [data for _, data in chunks]
        size = sum(map(len, whole))
        text = decoder.decode(b"".join(whole), final=True)
        _print_json({"id": args.id, "data": text, "offset": 0, "next_offset": size})
        return 0
    for offset, data in chunks:
        line = {"id": args.id, "data": decoder.decode(data), "offset": offset}
        print(json.dumps({**line, "next_offset": offset + len(data)}), flush=True)
    return 0


def cmd_cancel(store: Store, args: argparse.Namespace) -> int:
    return _report(store.request_cancel(args.id), args)


def cmd_retry(store: Store, args: argparse.Namespace) -> int:
    return _report(store.retry(args.id), args)


def cmd_release(store: Store, args: argparse.Namespace) -> int:
    """Release each held job in turn; one that cannot be released is reported and the rest
    still are (exit code: the worst, as for one job)."""
    code = 0
    for job_id in args.ids:
        try:
            _report(store.release(job_id), args)
        except JobsError as exc:
            _report_error(exc, args.json)
            code = max(code, 2 if exc.http_status == 404 else 1)
    return code


def cmd_rm(store: Store, args: argparse.Namespace) -> int:
    store.delete(args.id)
    if args.json:
        _print_json({"deleted": args.id})
    else:
        print(f"job {args.id} deleted")
    return 0


def cmd_gc(store: Store, args: argparse.Namespace) -> int:
    days, max_mb = args.older_than_days, args.max_mb
    if days is None and max_mb is None:  # the server's retention defaults
        days = DEFAULT_RETENTION_DAYS
    older = days * 86400 if days is not None else None
    max_bytes = int(max_mb * 2**20) if max_mb is not None else None
    deleted = store.gc(older, max_bytes)
    if args.json:
        _print_json({"deleted": deleted, "older_than_days": days, "max_mb": max_mb})
        return 0
    rules = []
    if days is not None:
        rules.append(f"finished over {days:g} days ago")
    if max_mb is not None:
        rules.append(f"the oldest beyond {max_mb:g} MB in all")
    rule = " or ".join(rules)
    if deleted:
        ids = ", ".join(map(str, deleted))
        print(f"deleted {len(deleted)} finished job(s) ({rule}): {ids}")
    else:
        print(f"nothing to delete: no finished job matched ({rule})")
    return 0


def _report(job: Job, args: argparse.Namespace) -> int:
    if args.json:
        _print_json(job.to_json())
    else:
        print(f"job {job.id}: {wording.status_word(job)}")
    return 0


def cmd_consumer(store: Store, args: argparse.Namespace) -> int:
    """Run jobs headless with the server's configuration: `c.JobsApp` (executor, lease,
    kill_grace, retention, log_limit ...) and the executor's section (`c.LocalExecutor` ...)
    from the Jupyter config files the server reads; the command line's flags win."""
    from .server.app import JobsApp, load_config

    config = load_config()
    if args.max_workers is not None:
        config.JobsApp.max_workers = args.max_workers
    if args.progress_interval is not None:
        config.JobsApp.progress_interval = args.progress_interval
    if args.executor is not None:
        config.JobsApp.executor_class = args.executor
    app = JobsApp(config=config)
    store.log_limit = app.log_limit  # the server opens its store with it

    async def serve() -> None:
        consumer = app.make_consumer(store, owns_loop=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
                loop.add_signal_handler(sig, stop.set)
        await consumer.start()
        executor = consumer.executor
        if args.json:
            started = {"consumer": consumer.consumer_id, "database": str(store.path)}
            started.update(executor=executor.name, max_workers=executor.max_workers)
            print(json.dumps(started), file=sys.stderr)
        else:
            print(
                f"jupyter-jobs consumer {consumer.consumer_id} serving {store.path} "
                f"with the {executor.name} executor, {executor.max_workers} worker(s)",
                file=sys.stderr,
            )
        sys.stderr.flush()
        try:
            await stop.wait()
        finally:
            await consumer.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def cmd_run(store: Store, args: argparse.Namespace) -> int:
    """Submit a notebook job; with --wait, wait for it (a consumer must serve the database)
    and exit 0 only if it succeeded."""
    from .front import Jobs
    from .queue import StoreBackend

    parameters = notebooks.cli_parameters(args.parameters)
    front = Jobs(StoreBackend(store), lambda: f"cli:{os.getpid()}")
    try:
        given = options.given(vars(args))
        job = front.submit_notebook(args.notebook, parameters, args.kernel, **given)
        record = job.wait().record if args.wait else job.record
    finally:
        front.backend.close()
    if args.json:
        _print_json(record.to_json())
    else:
        print(f"job {record.id} {record.name!r}: {record.status}")
        if record.error:
            print(record.error.message)
    return 0 if not args.wait or record.status is Status.SUCCEEDED else 1


def cmd_results(store: Store, args: argparse.Namespace) -> int:
    """Print the finished jobs of a result channel for a reader, in the order they finished,
    each acknowledged once printed (when the next is asked for): run again, it prints only what
    finished since. With -f, keep waiting for more until interrupted."""
    from .front import Jobs
    from .queue import StoreBackend

    front = Jobs(StoreBackend(store), lambda: f"cli:{os.getpid()}")
    jobs = front.results(args.channel, reader=args.reader, timeout=None if args.follow else 0)
    try:
        for job in jobs:
            record = job.record
            if args.json:
                seen = {"channel": args.channel, "reader": args.reader, "seq": job.channel_seq}
                print(json.dumps({**seen, "job": record.to_json()}), flush=True)
            else:
                line = f"{job.channel_seq:>6}  job {record.id:<6} {wording.status_word(record)}"
                print(f"{line}  {record.name}", flush=True)
    except KeyboardInterrupt:  # -f ends this way; what was printed is acknowledged
        pass
    finally:
        front.backend.close()
    if not args.json and not jobs.delivered and not args.follow:
        print(f"no new finished job in channel {args.channel!r} for reader {args.reader!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--db",
        help=f"database path (default: ${DB_ENV}, else {{jupyter_data_dir}}/jupyter_jobs/jobs.db)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = _Parser(prog="jupyter jobs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", parents=[common], help="list jobs, newest first")
    p.add_argument("--status", help="comma-separated statuses to show")
    p.add_argument("--owner", help="only jobs of this notebook/owner")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--user", help="only jobs of this user (their username)")
    who.add_argument(
        "--mine", action="store_true", help="only your jobs (those of the OS user running this)"
    )
    p.add_argument("-q", help="only jobs whose name contains this")
    p.add_argument("--type", metavar="TYPE", help="only typed jobs of this job type")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_list)
    for name, func, help_ in [
        ("show", cmd_show, "one job in full"),
        ("cancel", cmd_cancel, "cancel a job"),
        ("retry", cmd_retry, "queue a failed or cancelled job again"),
        ("rm", cmd_rm, "delete a finished job and its files"),
    ]:
        p = sub.add_parser(name, parents=[common], help=help_)
        p.add_argument("id", type=_job_id)
        p.set_defaults(func=func)
    p = sub.add_parser("release", parents=[common], help="let jobs submitted with hold=True run")
    p.add_argument("ids", type=_job_id, nargs="+", metavar="ID")
    p.set_defaults(func=cmd_release)
    p = sub.add_parser("logs", parents=[common], help="print a job's log")
    p.add_argument("id", type=_job_id)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    p.add_argument(
        "--stream",
        help='only this stream of the log: "main", "thread NAME", "pid N" or a '
        "jupyter_jobs.stream label (offsets in --json count its bytes)",
    )
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser(
        "results",
        parents=[common],
        help="print the jobs of a result channel as they finish (each once per reader)",
    )
    p.add_argument(
        "channel",
        type=_name("channel"),
        metavar="NAME",
        help="the channel (the jobs' `channel` option)",
    )
    p.add_argument(
        "--reader",
        type=_name("reader"),
        default=DEFAULT_READER,
        help=f"the reader whose cursor moves (default {DEFAULT_READER!r}); each reader gets "
        "every job",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for more jobs")
    p.set_defaults(func=cmd_results)
    p = sub.add_parser("run", parents=[common], help="run a notebook as a job")
    p.add_argument("notebook", help="the .ipynb file (read now: a snapshot)")
    notebooks.add_parameter_argument(p)
    p.add_argument("--kernel", help="the kernelspec (default: the notebook's, else python3)")
    p.add_argument("--name", help="the job's name (default: the notebook's file name)")
    p.add_argument(
        "--wait", action="store_true", help="wait until it ends; exit 1 unless it succeeded"
    )
    options.add_arguments(p, set(options.BY_NAME) - {"name"})  # --name: its own help
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "gc",
        parents=[common],
        help="delete old finished jobs (by default those finished over "
        f"{DEFAULT_RETENTION_DAYS:g} days ago, as the server does)",
    )
    p.add_argument("--older-than-days", type=float)
    p.add_argument("--max-mb", type=float, help="keep the total size under this")
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser(
        "consumer",
        parents=[common],
        help="run jobs from the database (headless); creates the database if it is missing",
    )
    p.add_argument("--max-workers", type=int, help="overrides c.JobsApp.max_workers")
    p.add_argument("--progress-interval", type=float, help="overrides c.JobsApp.progress_interval")
    p.add_argument(
        "--executor", help='overrides c.JobsApp.executor_class ("local", "dask" or a class)'
    )
    p.set_defaults(func=cmd_consumer, creates=True)
    cli_schedules.add_parser(sub, common)
    cli_types.add_parser(sub, common)
    cli_workers.add_parser(sub, common)
    return parser


def _open(args: argparse.Namespace) -> Store:
    """The store; only a command that may create the database (`consumer`) creates it."""
    try:
        return Store(_db_path(args), create=getattr(args, "creates", False))
    except DatabaseNotFound as exc:
        raise DatabaseNotFound(
            f"{exc.message} (check --db and ${DB_ENV}; `jupyter jobs consumer` creates one)",
            exc.detail,
        ) from None


def _report_error(error: JobsError, as_json: bool) -> None:
    if as_json:
        print(json.dumps(error.to_json()), file=sys.stderr)
        return
    if isinstance(error.detail, dict) and "usage" in error.detail:
        print(error.detail["usage"], file=sys.stderr)
    print(f"jupyter jobs: error: {error.message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `jupyter-jobs` / `jupyter jobs`; returns the exit code.

    Exit codes: 0 done, 1 refused or failed, 2 no such job or bad usage.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv  # known even when the arguments cannot be parsed
    try:
        args = build_parser().parse_args(argv)
        store = _open(args)
    except JobsError as exc:
        _report_error(exc, as_json)
        return 2 if isinstance(exc, InvalidRequest) else 1
    try:
        return args.func(store, args)
    except JobsError as exc:
        _report_error(exc, as_json)
        return 2 if exc.http_status == 404 else 1
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if not as_json:
            raise
        # A bug or a failing disk: still JSON, in the REST API's shape for a 500.
        error = error_body(f"{type(exc).__name__}: {exc}", 500, "InternalError")
        print(json.dumps(error), file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
