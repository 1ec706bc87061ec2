"""Schedules as pure rules: when a schedule fires, what it fires, and how it reads in words.

A schedule turns a target (a notebook with parameters, a job type's name with its parameters, or
a pickled function call) into a job at given times: a cron expression read in an IANA timezone
(croniter over zoneinfo), or a fixed interval (`every` seconds). The store keeps schedules and
applies these rules in one transaction (`store/schedules.py`); nothing here touches SQLite or the
clock, so every rule is tested with times given by the test.

Why the rules are what they are:

- DST. Cron times are wall-clock times in the schedule's zone. A time skipped by a spring
  transition fires at the first instant after the gap (croniter's reading, as cron does); a
  time repeated in autumn fires once for a fixed hour ("30 2 * * *"), while a wildcard or
  stepped hour ("*/30 * * * *") keeps firing in real time through the repeated hour.
- Catch-up. After a stop, the times missed are: `latest`, one run for the latest of them;
  `none`, nothing (only a time less than `ON_TIME` seconds late fires); `all`, each, at most
  `MAX_CATCH_UP` (the latest ones), so a long stop cannot flood the queue.
- Overlap. `skip`: no new run while one of the schedule's runs is pending, queued or running
  (and one step fires at most one run); `queue`: every due time becomes a job.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidRequest

OVERLAPS = ("skip", "queue")
CATCH_UPS = ("latest", "none", "all")
#: The shortest interval: a schedule is for recurring work, not a busy loop.
MIN_EVERY = 60.0
#: The longest interval: ten years (`models.MAX_DURATION`, as openapi.yaml says).
MAX_EVERY = 10 * 365.25 * 86400
#: At most this many runs are created for the times missed during one stop (`catch_up="all"`).
MAX_CATCH_UP = 100
#: A time at most this late is "on time", not missed (the consumer looks every second or so).
ON_TIME = 60.0
#: Job options a schedule passes to each run (the run's name is the schedule's); `channel`
#: delivers its finished runs to that result channel's readers.
JOB_OPTIONS = ("priority", "timeout", "retries", "retry_delay", "interpreter", "cwd", "channel")
TARGET_KINDS = ("notebook", "function", "typed")
#: The parameter a target declares to receive its run's scheduled time (a notebook in its
#: `parameters` cell, a job type in its schema's properties: `run_parameters`).
SCHEDULED_TIME = "scheduled_time"


def local_zone() -> str:
    """The IANA name of this machine's zone (`TZ`, else /etc/localtime's link), else "UTC".

    A fixed UTC offset would be wrong half the year, so only a named zone will do.
    """
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        link = os.readlink("/etc/localtime")
        candidates.append(link.split("zoneinfo/", 1)[1] if "zoneinfo/" in link else "")
    except OSError:
        pass
    for name in candidates:
        if name and _zone_or_none(name) is not None:
            return name
    return "UTC"


def _zone_or_none(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def zone(name: str) -> ZoneInfo:
    """The zone named `name`; `InvalidRequest` naming the field for an unknown one."""
    found = _zone_or_none(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidRequest(f"timezone: {name!r} is not an IANA timezone (e.g. Europe/Paris)")
    return found


def check_cron(expression: Any) -> str:
    """A valid 5-field cron expression; `InvalidRequest` naming the field otherwise."""
    from croniter import croniter

    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise InvalidRequest(
            f"cron: {expression!r} is not a cron expression of 5 fields "
            "(minute hour day-of-month month day-of-week)"
        )
    if not croniter.is_valid(expression):
        raise InvalidRequest(f"cron: {expression!r} is not a valid cron expression")
    return expression


def check_every(every: Any) -> float:
    if isinstance(every, bool) or not isinstance(every, (int, float)) or every != every:
        raise InvalidRequest(f"every: must be a number of seconds, got {every!r}")
    if not MIN_EVERY <= every <= MAX_EVERY:
        raise InvalidRequest(
            f"every: must be between {MIN_EVERY:g} and {MAX_EVERY:g} seconds, got {every!r}"
        )
    return float(every)


@dataclass
class Timing:
    """When a schedule fires: `cron` in `timezone`, or every `every` seconds from `anchor`."""

    cron: str | None
    every: float | None
    timezone: str
    anchor: float = 0.0

    def next_after(self, t: float) -> float:
        """The first fire time strictly after `t`."""
        if self.every is not None:
            steps = int((t - self.anchor) // self.every) + 1
            return self.anchor + max(steps, 1) * self.every
        assert self.cron is not None
        return next(self._cron_times(t))

    def upcoming(self, after: float, count: int) -> list[float]:
        """The next `count` fire times after `after`."""
        times: list[float] = []
        t = after
        for _ in range(count):
            t = self.next_after(t)
            times.append(t)
        return times

    def due(self, first: float, now: float, catch_up: str) -> list[float]:
        """The times to fire now, given `first`, the earliest time not yet fired (≤ now)."""
        if first > now:
            return []
        wanted = MAX_CATCH_UP if catch_up == "all" else 1
        times = [t for t in itertools.islice(self._times_back(now), wanted) if t >= first]
        if not times:
            times = [first]
        if catch_up == "none" and now - times[0] > ON_TIME:
            return []
        return sorted(times)

    def _times_back(self, t: float) -> Iterator[float]:
        """Fire times at or before `t`, latest first."""
        if self.every is not None:
            latest = self.anchor + int((t - self.anchor) // self.every) * self.every
            while True:
                yield latest
                latest -= self.every
        yield from self._cron_times(t + 1e-3, backward=True)

    def _cron_times(self, start: float, backward: bool = False) -> Iterator[float]:
        """Cron fire times after `start` (before it, `backward`), in order of travel."""
        from croniter import CroniterError, croniter

        assert self.cron is not None
        tz = zone(self.timezone)
        fixed_hour = not any(c in self.cron.split()[1] for c in "*/")
        iterator = croniter(self.cron, datetime.fromtimestamp(start, tz))
        step = iterator.get_prev if backward else iterator.get_next
        while True:
            try:
                when = step(datetime)
            except CroniterError:  # "0 0 31 2 *" is well formed, and never comes
                raise InvalidRequest(f"cron: {self.cron!r} never fires") from None
            if fixed_hour and _repeated_wall_time(when, tz):
                continue  # 02:30 on the autumn night: its first occurrence is the one
            yield when.timestamp()


def _repeated_wall_time(when: datetime, tz: ZoneInfo) -> bool:
    """Whether `when` is the second occurrence of its wall-clock time (fall-back hour)."""
    naive = when.replace(tzinfo=None)
    first = naive.replace(tzinfo=tz, fold=0).timestamp()
    second = naive.replace(tzinfo=tz, fold=1).timestamp()
    return first != second and abs(when.timestamp() - max(first, second)) < 1e-6


def runs_to_fire(due: Sequence[float], overlap: str, active: bool) -> list[float]:
    """Which due times become jobs: `skip` fires one (the latest) and only with none active."""
    if overlap == "skip":
        return [] if active else list(due[-1:])
    return list(due)


def describe(cron: str | None, every: float | None) -> str:
    """A schedule's timing in plain words (cron-descriptor, else the raw expression)."""
    if every is not None:
        for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if every % seconds == 0:
                count = int(every // seconds)
                return f"Every {unit}" if count == 1 else f"Every {count} {unit}s"
        return f"Every {every:g} seconds"
    try:
        from cron_descriptor import Options, get_description

        options = Options()
        options.use_24hour_time_format = True
        options.verbose = False
        return get_description(cron, options)
    except Exception:  # the library missing or puzzled: the expression itself is honest
        return f"cron {cron}"


def preview(
    cron: str | None, every: Any, timezone_name: str | None, now: float, count: int = 3
) -> dict[str, Any]:
    """`{"description", "next": [epoch...]}` for the dialog; `InvalidRequest` on bad input."""
    timing = check_timing(cron, every, timezone_name, now)
    return {"description": describe(timing.cron, timing.every), "next": timing.upcoming(now, count)}


def check_timing(cron: Any, every: Any, timezone_name: Any, anchor: float) -> Timing:
    """A valid `Timing` from untrusted values: exactly one of cron/every, a known zone."""
    if (cron is None) == (every is None):
        raise InvalidRequest("cron, every: give exactly one of them")
    tz_name = local_zone() if timezone_name is None else timezone_name
    zone(tz_name)
    timing = Timing(
        check_cron(cron) if cron is not None else None,
        check_every(every) if every is not None else None,
        tz_name,
        anchor,
    )
    timing.next_after(anchor)  # a cron that never comes is refused here, not when it fires
    return timing


def iso_time(t: float, timezone_name: str) -> str:
    """`t` as ISO 8601 in the schedule's zone (what a run's `scheduled_time` receives)."""
    return datetime.fromtimestamp(t, zone(timezone_name)).isoformat()


# --- specs -------------------------------------------------------------------------------------


@dataclass
class ScheduleSpec:
    """What a client asks for (REST body, Python API); the contract's ScheduleSpec."""

    name: str = ""
    target: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    every: float | None = None
    timezone: str | None = None
    overlap: str = "skip"
    catch_up: str = "latest"
    paused: bool = False
    job: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> ScheduleSpec:
        """A checked spec from untrusted JSON; `InvalidRequest` names the bad field."""
        if not isinstance(data, dict):
            raise InvalidRequest("a schedule must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidRequest(f"unknown field(s) in schedule: {', '.join(unknown)}")
        spec = cls(**data)
        spec.validate()
        return spec

    def merged(self, changes: Any) -> ScheduleSpec:
        """This spec with `changes` (a PATCH body) applied, checked as a whole."""
        if not isinstance(changes, dict):
            raise InvalidRequest("a schedule change must be a JSON object")
        data = ScheduleSpec.to_json(self)  # a stored schedule's own fields are not the spec's
        if "cron" in changes and changes["cron"] is not None:
            data["every"] = None  # switching timing kind need not null the other one
        if "every" in changes and changes["every"] is not None:
            data["cron"] = None
        unknown = sorted(set(changes) - set(data))
        if unknown:
            raise InvalidRequest(f"unknown field(s) in schedule: {', '.join(unknown)}")
        data.update(changes)
        return ScheduleSpec.from_json(data)

    def validate(self) -> None:
        if not isinstance(self.name, str) or len(self.name) > 200:
            raise InvalidRequest("name: must be a string of at most 200 characters")
        check_timing(self.cron, self.every, self.timezone, 0.0)
        if self.timezone is None:
            self.timezone = local_zone()
        if self.every is not None:
            self.every = float(self.every)
        if self.overlap not in OVERLAPS:
            raise InvalidRequest(f"overlap: must be one of {list(OVERLAPS)}, got {self.overlap!r}")
        if self.catch_up not in CATCH_UPS:
            raise InvalidRequest(
                f"catch_up: must be one of {list(CATCH_UPS)}, got {self.catch_up!r}"
            )
        if not isinstance(self.paused, bool):
            raise InvalidRequest(f"paused: must be true or false, got {self.paused!r}")
        self._check_target()
        self._check_job()
        if not self.name:
            target = self.target
            named = Path(target.get("path") or "").stem or target.get("name") or target.get("type")
            self.name = named or "schedule"

    def _check_target(self) -> None:
        target = self.target
        if not isinstance(target, dict) or target.get("kind") not in TARGET_KINDS:
            raise InvalidRequest(f"target.kind: must be one of {list(TARGET_KINDS)}")
        if target["kind"] == "function":
            return
        typed = target["kind"] == "typed"
        allowed = (
            {"kind", "type", "parameters"}
            if typed
            else {"kind", "path", "parameters", "kernel_name"}
        )
        unknown = sorted(set(target) - allowed)
        if unknown:
            raise InvalidRequest(f"unknown field(s) in target: {', '.join(unknown)}")
        parameters = target.setdefault("parameters", {})
        if not isinstance(parameters, dict):
            raise InvalidRequest("target.parameters: must be an object of name: value")
        try:
            json.dumps(parameters, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"target.parameters: values must be JSON: {exc}") from None
        if typed:  # the type's schema checks the parameters (`TypeRegistry.schedule_payload`)
            from .job_types import check_name

            try:
                check_name(target.get("type"))
            except InvalidRequest as exc:
                raise InvalidRequest(f"target.type: {exc.message}", exc.detail) from None
            return
        if not isinstance(target.get("path"), str) or not target["path"]:
            raise InvalidRequest("target.path: must be the notebook's path")
        for name in parameters:
            if not name.isidentifier():
                raise InvalidRequest(f"target.parameters: {name!r} is not a Python identifier")
        kernel = target.setdefault("kernel_name", None)
        if kernel is not None and not isinstance(kernel, str):
            raise InvalidRequest("target.kernel_name: must be a kernelspec name or null")

    def _check_job(self) -> None:
        from .models import JobSpec, Kind

        if not isinstance(self.job, dict):
            raise InvalidRequest("job: must be an object of job options")
        unknown = sorted(set(self.job) - set(JOB_OPTIONS))
        if unknown:
            raise InvalidRequest(
                f"job: unknown option(s) {', '.join(unknown)} (allowed: {', '.join(JOB_OPTIONS)})"
            )
        try:
            JobSpec(kind=Kind.FUNCTION, name="x", **self.job).validate()
        except InvalidRequest as exc:
            raise InvalidRequest(f"job: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {f.name: _copy(getattr(self, f.name)) for f in fields(ScheduleSpec)}


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value


@dataclass
class Schedule(ScheduleSpec):
    """A stored schedule: the spec plus what the store knows (the contract's Schedule)."""

    id: int = 0
    owner: str = ""
    created_at: float = 0.0
    next_run: float | None = None
    #: who made it (`models.JobUser`); its runs are this user's jobs
    user: str = ""
    user_display_name: str = ""
    #: {"job_id", "status", "scheduled_time", "finished_at"} of the latest run, or None
    last_run: dict[str, Any] | None = None

    @property
    def timing(self) -> Timing:
        return Timing(self.cron, self.every, self.timezone or "UTC", self.created_at)

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data.update(
            id=self.id,
            owner=self.owner,
            created_at=self.created_at,
            next_run=self.next_run,
            last_run=dict(self.last_run) if self.last_run else None,
            user=self.user,
            user_display_name=self.user_display_name,
        )
        return data

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> Schedule:
        """From `to_json`'s shape (a REST answer, or the store's row)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# --- what a run receives ---------------------------------------------------------------------


def declares_parameter(notebook: dict[str, Any], name: str) -> bool:
    """Whether the notebook's `parameters`-tagged cell assigns `name` (papermill's convention)."""
    for cell in notebook.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.get("cell_type") != "code" or "parameters" not in tags:
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return False
        for node in ast.walk(tree):
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
                isinstance(t, ast.Name) and t.id == name for t in targets
            ):
                return True
    return False


def schema_declares(schema: dict[str, Any], name: str) -> bool:
    """Whether a job type's JSON schema names `name` among its parameters (`properties`): an
    open schema (`{"type": "object"}`) takes anything, but asks for nothing."""
    properties = schema.get("properties")
    return isinstance(properties, dict) and name in properties


def run_parameters(
    parameters: dict[str, Any], declared: bool, scheduled: float, timezone_name: str
) -> dict[str, Any]:
    """A run's parameters: the schedule's, plus `scheduled_time` (ISO 8601 in the schedule's
    zone, replacing any value given) when its target `declared` it, whatever its kind (a
    notebook's `declares_parameter`, a job type's `schema_declares`)."""
    parameters = dict(parameters)
    if declared:
        parameters[SCHEDULED_TIME] = iso_time(scheduled, timezone_name)
    return parameters


def utc_text(t: float | None) -> str:
    """An epoch as a short UTC time for listings (the CLI)."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
