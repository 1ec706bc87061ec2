"""`jupyter jobs types [NAME] [--delete]` and `jupyter jobs run-type NAME -p NAME VALUE`: job
types from a terminal.

Like the rest of the CLI, it opens the store file: types registered from kernels are read from
it, and installed types (the `jupyter_jobs.types` entry points) are imported in this process,
as `JobQueue` does (it is the user's own). `run-type` takes the same `-p`, `--name`, `--wait`
and `--json` as `run NOTEBOOK`; a consumer serving the database runs the job.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from . import notebooks
from .errors import InvalidRequest
from .front import Jobs
from .job_types import JobType
from .models import Status
from .queue import StoreBackend
from .store import Store


def _front(store: Store) -> Jobs:
    return Jobs(StoreBackend(store), lambda: f"cli:{os.getpid()}")


def _table(found: list[JobType]) -> str:
    rows = [["NAME", "SOURCE", "SUMMARY", "DESCRIPTION"]]
    for t in found:
        text = f"cannot be loaded: {t.error}" if t.error else t.description.split("\n")[0]
        rows.append([t.name, t.source, "yes" if t.has_summarize else "-", text[:60]])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)), r[3]]).rstrip()
        for r in rows
    )


def _describe(t: JobType) -> str:
    lines = [f"job type {t.name} ({t.source})"]
    if t.entry_point:
        lines.append(f"  entry point: {t.entry_point}")
    if t.error:
        lines.append(f"  error:       {t.error}")
    if t.description:
        lines.append(f"  description: {t.description}")
    lines.append(f"  summarize:   {'yes' if t.has_summarize else 'no'}")
    if t.source != "installed":
        lines.append(f"  owner:       {t.owner or '-'}")
        lines.append(f"  runs with:   {t.interpreter or 'the worker'}'s Python in {t.cwd or '-'}")
    schema = json.dumps(t.schema, indent=2).replace("\n", "\n  ")
    return "\n".join([*lines, f"  parameters:  {schema}"])


def cmd_types(store: Store, args: argparse.Namespace) -> int:
    front = _front(store)
    try:
        if args.delete:
            if not args.name:
                raise InvalidRequest("--delete needs the NAME of a type")
            front.delete_job_type(args.name)
            print(json.dumps({"deleted": args.name}) if args.json else f"deleted {args.name}")
            return 0
        if args.name:
            found = front.get_job_type(args.name)
            print(json.dumps(found.to_json(), indent=2) if args.json else _describe(found))
            return 0
        types = front.job_types()
    finally:
        front.backend.close()
    if args.json:
        print(json.dumps({"types": [t.to_json() for t in types]}, indent=2))
    else:
        print(_table(types) if types else "no job types")
    return 0


def cmd_run_type(store: Store, args: argparse.Namespace) -> int:
    """Submit a typed job; with --wait, wait for it and exit 0 only if it succeeded."""
    parameters = notebooks.cli_parameters(args.parameters)
    front = _front(store)
    try:
        options = {"name": args.name} if args.name else {}
        job = front.submit_typed(args.type, parameters, **options)
        record = job.wait().refresh() if args.wait else job.record
    finally:
        front.backend.close()
    if args.json:
        print(json.dumps(record.to_json(), indent=2, sort_keys=True))
    else:
        print(f"job {record.id} {record.name!r}: {record.status}")
        if record.summary is not None:
            print(f"summary: {json.dumps(record.summary)}")
        if record.error:
            print(record.error.message)
    return 0 if not args.wait or record.status is Status.SUCCEEDED else 1


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The `types` and `run-type` commands, on the CLI's subparsers."""
    p = sub.add_parser(
        "types", parents=[common], help="list job types, show one (NAME), or --delete one"
    )
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--delete", action="store_true", help="forget a type registered from a kernel")
    p.set_defaults(func=cmd_types)
    p = sub.add_parser("run-type", parents=[common], help="run a job of a job type")
    p.add_argument("type", metavar="TYPE", help="the job type (see `jupyter jobs types`)")
    notebooks.add_parameter_argument(p)
    p.add_argument("--name", help="the job's name (default: the type's)")
    p.add_argument(
        "--wait", action="store_true", help="wait until it ends; exit 1 unless it succeeded"
    )
    p.set_defaults(func=cmd_run_type)
