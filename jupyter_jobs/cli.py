"""`jupyter jobs ...`: list, inspect and steer jobs from a terminal, or run a headless consumer.

The CLI opens the store file directly: a consumer serving the same database (the Jupyter server's
or a `jupyter jobs consumer`) hears about cancels and retries at once through the doorbell, so
there is no need to find a server first.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from .errors import JobsError
from .models import Job, Status
from .store import Store, default_db_path

DB_ENV = "JUPYTER_JOBS_DB"


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


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _elapsed(job: Job) -> str:
    if job.started_at is None:
        return "-"
    seconds = (job.finished_at or time.time()) - job.started_at
    return f"{seconds:.1f}s"


def _progress(job: Job) -> str:
    p = job.progress
    if p is None:
        return "-"
    if p.total:
        return f"{p.done:g}/{p.total:g}"
    return f"{p.done:g}"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _describe(job: Job) -> str:
    status = job.status.value + (f" ({job.reason.value})" if job.reason else "")
    if job.cancel_requested and not job.finished:
        status += " (cancel requested)"
    fields = [
        ("id", str(job.id)),
        ("name", job.name),
        ("kind", job.kind.value),
        ("owner", job.owner or "-"),
        ("status", status),
        ("attempt", f"{job.attempt} (retries allowed: {job.retries})"),
        ("priority", str(job.priority)),
        ("after", ", ".join(map(str, job.after)) or "-"),
        (
            "progress",
            _progress(job)
            + (f"  {job.progress.message}" if job.progress and job.progress.message else ""),
        ),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("elapsed", _elapsed(job)),
        ("timeout", f"{job.timeout:g}s" if job.timeout else "-"),
        ("log", f"{job.log_size} bytes"),
    ]
    text = "\n".join(f"{k:<10}{v}" for k, v in fields)
    if job.error:
        text += f"\nerror     {job.error.type}: {job.error.message}"
        if job.error.traceback:
            text += "\n\n" + job.error.traceback.rstrip()
    return text


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
    page = store.query(status=status, owner=args.owner, q=args.q, limit=args.limit)
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
            _progress(j),
            _elapsed(j),
            _when(j.created_at),
            (j.owner or "")[:40],
        ]
        for j in page.jobs
    ]
    print(
        _table(rows, ["ID", "NAME", "STATUS", "REASON", "PROGRESS", "ELAPSED", "CREATED", "OWNER"])
    )
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


def cmd_logs(store: Store, args: argparse.Namespace) -> int:
    offset = 0
    out = sys.stdout.buffer
    while True:
        data, offset = store.read_log(args.id, offset)
        if data:
            out.write(data)
            out.flush()
            continue
        if not args.follow or store.get(args.id).finished:
            # The rest: the job may have written its final lines as it finished.
            while data := store.read_log(args.id, offset)[0]:
                offset += len(data)
                out.write(data)
            out.flush()
            return 0
        time.sleep(0.2)


def cmd_cancel(store: Store, args: argparse.Namespace) -> int:
    job = store.request_cancel(args.id)
    return _report(job, args, "cancel requested" if not job.finished else "cancelled")


def cmd_retry(store: Store, args: argparse.Namespace) -> int:
    return _report(store.retry(args.id), args, "queued again")


def cmd_rm(store: Store, args: argparse.Namespace) -> int:
    store.delete(args.id)
    if args.json:
        _print_json({"deleted": args.id})
    else:
        print(f"job {args.id} deleted")
    return 0


def cmd_gc(store: Store, args: argparse.Namespace) -> int:
    older = args.older_than_days * 86400 if args.older_than_days is not None else None
    max_bytes = int(args.max_mb * 2**20) if args.max_mb is not None else None
    if older is None and max_bytes is None:
        raise JobsError("say what to collect: --older-than-days N and/or --max-mb N")
    deleted = store.gc(older, max_bytes)
    if args.json:
        _print_json({"deleted": deleted})
    else:
        print(f"deleted {len(deleted)} finished job(s)")
    return 0


def _report(job: Job, args: argparse.Namespace, what: str) -> int:
    if args.json:
        _print_json(job.to_json())
    else:
        print(f"job {job.id}: {what} (status {job.status.value})")
    return 0


def cmd_consumer(store: Store, args: argparse.Namespace) -> int:
    from .consumer import Consumer
    from .executors.local import LocalExecutor

    max_workers = args.max_workers or os.cpu_count() or 1

    async def serve() -> None:
        consumer = Consumer(
            store,
            lambda events: LocalExecutor(events, max_workers),
            progress_interval=args.progress_interval,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await consumer.start()
        print(
            f"jupyter-jobs consumer {consumer.consumer_id} serving {store.path} "
            f"with {max_workers} worker(s)",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        await consumer.stop()

    asyncio.run(serve())
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        help=f"database path (default: ${DB_ENV}, else {{jupyter_data_dir}}/jupyter_jobs/jobs.db)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = argparse.ArgumentParser(prog="jupyter jobs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", parents=[common], help="list jobs, newest first")
    p.add_argument("--status", help="comma-separated statuses to show")
    p.add_argument("--owner", help="only jobs of this notebook/owner")
    p.add_argument("-q", help="only jobs whose name contains this")
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
    p = sub.add_parser("logs", parents=[common], help="print a job's log")
    p.add_argument("id", type=_job_id)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("gc", parents=[common], help="delete old finished jobs")
    p.add_argument("--older-than-days", type=float)
    p.add_argument("--max-mb", type=float, help="keep the total size under this")
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser("consumer", parents=[common], help="run jobs from the database (headless)")
    p.add_argument("--max-workers", type=int, default=None)
    p.add_argument("--progress-interval", type=float, default=1.0)
    p.set_defaults(func=cmd_consumer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `jupyter-jobs` / `jupyter jobs`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        store = Store(_db_path(args))
    except JobsError as exc:
        print(f"jupyter jobs: error: {exc.message}", file=sys.stderr)
        return 1
    try:
        return args.func(store, args)
    except JobsError as exc:
        print(f"jupyter jobs: error: {exc.message}", file=sys.stderr)
        return 2 if exc.http_status == 404 else 1
    except BrokenPipeError:
        return 0
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
