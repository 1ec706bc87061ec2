"""`jupyter jobs schedule add|list|show|pause|resume|rm`: schedules from a terminal.

Like the rest of the CLI, it opens the store file: a consumer serving the database (the
Jupyter server's or `jupyter jobs consumer`) fires what is added here. A notebook is read from
the filesystem and snapshotted into the store now, as the REST API does through the server; a
job type's (`--type`) parameters are checked against its schema now, the installed types
imported in this process as `JobQueue` does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import notebooks, options, typed_run
from . import schedules as rules
from .errors import InvalidRequest
from .models import JobUser
from .store import Store
from .type_registry import TypeRegistry


def _schedule_id(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"schedule id must be a positive integer, got {text!r}")
    return int(text)


def _print(schedule: rules.Schedule, as_json: bool) -> None:
    if as_json:
        print(json.dumps(schedule.to_json()))
        return
    timing = rules.describe(schedule.cron, schedule.every)
    raw = f"cron {schedule.cron}" if schedule.cron else f"every {schedule.every:g} s"
    last = schedule.last_run
    last_text = "-" if last is None else f"job {last['job_id']} {last['status']}"
    lines = [
        f"schedule {schedule.id}: {schedule.name}",
        f"  target:   {_target_text(schedule.target)}",
        f"  user:     {schedule.user_display_name or schedule.user or '-'}",
        f"  when:     {timing} ({raw}, {schedule.timezone})",
        f"  next run: {'paused' if schedule.paused else rules.utc_text(schedule.next_run)}",
        f"  last run: {last_text}",
        f"  overlap:  {schedule.overlap}, catch-up: {schedule.catch_up}",
    ]
    if schedule.target.get("parameters"):
        lines.append(f"  parameters: {json.dumps(schedule.target['parameters'])}")
    if schedule.job.get("channel"):
        lines.append(f"  channel:  {schedule.job['channel']}")
    print("\n".join(lines))


def _target_text(target: dict[str, Any]) -> str:
    if target["kind"] == "typed":
        return f"job type {target['type']}"
    return str(target.get("path") or target.get("name"))


def _target(args: argparse.Namespace) -> dict[str, Any]:
    """The schedule's target: the NOTEBOOK given, or the job type of `--type`."""
    if (args.notebook is None) == (args.type is None):
        raise InvalidRequest("schedule add takes a NOTEBOOK or --type TYPE (one of them)")
    parameters = notebooks.cli_parameters(args.parameters)
    if args.type is not None:
        if args.kernel is not None:
            raise InvalidRequest("--kernel is for a notebook; a job type runs in Python")
        return {"kind": "typed", "type": args.type, "parameters": parameters}
    path = Path(args.notebook).expanduser()
    return {
        "kind": "notebook",
        "path": str(path),
        "parameters": parameters,
        "kernel_name": args.kernel,
    }


def _payload(store: Store, spec: rules.ScheduleSpec) -> bytes:
    """The notebook's snapshot, or the typed job's payload (its parameters checked against
    its type, imported here as `JobQueue` does)."""
    if spec.target["kind"] == "typed":
        return TypeRegistry(store, typed_run.describe_installed).schedule_payload(spec)
    path = Path(spec.target["path"])
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"target.path: cannot read {path}: {exc}") from None


def cmd_add(store: Store, args: argparse.Namespace) -> int:
    spec = rules.ScheduleSpec(
        name=args.name or "",
        target=_target(args),
        cron=args.cron,
        every=args.every,
        timezone=args.timezone,
        overlap=args.overlap,
        catch_up=args.catch_up,
        paused=args.paused,
        job=options.given(vars(args), rules.JOB_OPTIONS),
    )
    spec.validate()
    payload = _payload(store, spec)
    _print(store.add_schedule(spec, "", payload, user=JobUser.of_process()), args.json)
    return 0


def cmd_list(store: Store, args: argparse.Namespace) -> int:
    found = store.schedules()
    if args.json:
        print(json.dumps({"schedules": [s.to_json() for s in found]}))
        return 0
    if not found:
        print("no schedules")
    for schedule in found:
        state = "paused" if schedule.paused else f"next {rules.utc_text(schedule.next_run)}"
        when = rules.describe(schedule.cron, schedule.every)
        print(f"{schedule.id:>4}  {schedule.name}  {when}  ({state})")
    return 0


def cmd_show(store: Store, args: argparse.Namespace) -> int:
    _print(store.get_schedule(args.id), args.json)
    return 0


def cmd_pause(store: Store, args: argparse.Namespace) -> int:
    _print(store.pause_schedule(args.id), args.json)
    return 0


def cmd_resume(store: Store, args: argparse.Namespace) -> int:
    _print(store.resume_schedule(args.id), args.json)
    return 0


def cmd_rm(store: Store, args: argparse.Namespace) -> int:
    store.delete_schedule(args.id)
    if args.json:
        print(json.dumps({"deleted": args.id}))
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The `schedule` command and its subcommands, on the CLI's subparsers."""
    parser = sub.add_parser("schedule", help="run notebooks or typed jobs on a schedule")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("add", parents=[common], help="schedule a notebook or a job type")
    p.add_argument("notebook", nargs="?", help="the notebook (snapshotted now)")
    p.add_argument(
        "--type", metavar="TYPE", help="instead of a notebook: a job type (`jupyter jobs types`)"
    )
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='a 5-field cron expression, e.g. "0 8 * * 1-5"')
    when.add_argument("--every", type=float, metavar="SECONDS", help="an interval (>= 60)")
    p.add_argument("--timezone", help="IANA zone of the cron times (default: this machine's)")
    notebooks.add_parameter_argument(p)
    p.add_argument("--name")
    p.add_argument("--kernel", help="kernelspec (default: the notebook's)")
    p.add_argument("--overlap", choices=rules.OVERLAPS, default="skip")
    p.add_argument("--catch-up", choices=rules.CATCH_UPS, default="latest")
    p.add_argument("--paused", action="store_true", help="create it paused")
    options.add_arguments(p, rules.JOB_OPTIONS)  # each run's job options
    p.set_defaults(func=cmd_add)
    p = verbs.add_parser("list", parents=[common], help="every schedule")
    p.set_defaults(func=cmd_list)
    for name, func, help_ in [
        ("show", cmd_show, "one schedule in full"),
        ("pause", cmd_pause, "stop creating runs"),
        ("resume", cmd_resume, "create runs again from the next time"),
        ("rm", cmd_rm, "delete a schedule (its runs stay)"),
    ]:
        p = verbs.add_parser(name, parents=[common], help=help_)
        p.add_argument("id", type=_schedule_id)
        p.set_defaults(func=func)
