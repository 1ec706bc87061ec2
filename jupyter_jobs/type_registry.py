"""The job types a store's jobs can name, and how a typed submit becomes a job.

Installed types come from a describer (the server's runs `typed_run describe` in a worker's
interpreter, `server/installed_types.py`; `JobQueue` and the CLI import them in-process) and
kernel types from the store (`store/types.py`). An installed name wins: a kernel cannot
register it, nor delete it. `prepare` checks a typed job's parameters against its type's schema
and builds its payload (`job_types.encode_payload`): the entry point to import, or the kernel
type's functions, stored once, which the job names (`shared.py`; never loaded here).
`schedule_payload` does the same once for a schedule of a typed job, whose runs all take that
payload: a copy of a kernel type's function bytes, so that the schedule keeps working whatever
becomes of the type. Every method is blocking (SQLite): the server calls them in its thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from . import job_types
from .errors import InvalidRequest, JobTypeConflict, JobTypeNotFound
from .job_types import JobType, TypedPayload
from .models import JobSpec, Kind, now
from .schedules import SCHEDULED_TIME, ScheduleSpec, iso_time, local_zone, schema_declares
from .shared import Payload, SharedPayload
from .store import Store


class TypeRegistry:
    """Installed and kernel job types over one store; `describe` lists the installed ones
    (called once, on first need; None: none until `set_installed`)."""

    def __init__(
        self, store: Store, describe: Callable[[], Iterable[JobType]] | None = None
    ) -> None:
        self.store = store
        self._describe = describe
        self._installed: dict[str, JobType] | None = None
        self._lock = threading.Lock()

    def installed(self) -> dict[str, JobType]:
        """The installed types by name."""
        with self._lock:
            if self._installed is None:
                found = self._describe() if self._describe is not None else ()
                self._installed = {t.name: t for t in found}
            return self._installed

    def set_installed(self, found: Iterable[JobType]) -> None:
        """Replace the installed types (a describer ran again)."""
        with self._lock:
            self._installed = {t.name: t for t in found}

    def all(self) -> list[JobType]:
        """Every type, by name: installed ones, then kernel ones whose name is free."""
        installed = self.installed()
        kernel = [t for t in self.store.types() if t.name not in installed]
        return sorted([*installed.values(), *kernel], key=lambda t: t.name)

    def get(self, name: str) -> JobType:
        """One type (`JobTypeNotFound` if there is none of that name)."""
        found = self.installed().get(name)
        return found if found is not None else self.store.get_type(name)

    def register(self, job_type: JobType, functions: bytes) -> JobType:
        """Keep a kernel's type (replacing its earlier version); refuses an installed name."""
        job_types.check_name(job_type.name)
        job_type.schema = job_types.check_schema(job_type.schema)
        job_type.description = job_types.check_description(job_type.description)
        installed = self.installed().get(job_type.name)
        if installed is not None:
            raise JobTypeConflict(
                f"job type {job_type.name!r} is installed ({installed.entry_point}): a kernel "
                "cannot register that name; choose another",
                {"type": job_type.name},
            )
        if not functions:
            raise InvalidRequest("a kernel's job type needs its functions (dill bytes)")
        job_type.source = job_types.REGISTERED
        return self.store.put_type(job_type, functions)

    def delete(self, name: str) -> None:
        """Forget a kernel's type (its jobs keep their copy); refuses an installed one."""
        installed = self.installed().get(name)
        if installed is not None:
            raise JobTypeConflict(
                f"job type {name!r} is installed ({installed.entry_point}): uninstall its "
                "package to remove it",
                {"type": name},
            )
        self.store.delete_type(name)

    def prepare(self, spec: JobSpec) -> tuple[JobSpec, Payload]:
        """A typed job's spec (parameters checked; a kernel type's interpreter and cwd where
        the spec names none) and payload. `JobTypeNotFound` for an unknown type (it names
        the known ones), `InvalidRequest` naming every bad parameter."""
        if spec.kind is not Kind.TYPED or spec.type is None:
            raise InvalidRequest('prepare takes a spec of kind "typed" that names its type')
        name = spec.type
        installed = self.installed().get(name)
        if installed is not None:
            if installed.error:
                raise InvalidRequest(
                    f"job type {name!r} cannot be loaded: {installed.error}", {"type": name}
                )
            parameters = job_types.check_parameters(installed, spec.parameters)
            payload = TypedPayload(name, parameters, entry_point=installed.entry_point)
            function = None
        else:
            try:
                kernel, function = self.store.type_functions(name)
            except JobTypeNotFound:
                raise JobTypeNotFound.named(name, [t.name for t in self.all()]) from None
            parameters = job_types.check_parameters(kernel, spec.parameters)
            if isinstance(function, bytes):  # a type registered before functions were shared
                payload, function = TypedPayload(name, parameters, functions=function), None
            else:
                payload = TypedPayload(name, parameters)
            spec.interpreter = spec.interpreter or kernel.interpreter
            spec.cwd = spec.cwd or kernel.cwd
        spec.parameters = parameters
        spec.validate()
        data = job_types.encode_payload(payload)
        return spec, data if function is None else SharedPayload(function, data)

    def schedule_payload(self, spec: ScheduleSpec) -> bytes:
        """The payload every run of a typed schedule takes, its parameters checked against the
        type's schema now (`prepare`'s errors, naming each bad parameter); `spec` gets the
        checked parameters, and a kernel type's interpreter and cwd where its job options
        name none. A type changed later changes no run: change the schedule's target.

        A type whose schema declares `scheduled_time` gets it from each run
        (`schedules.run_parameters`): it is checked here with a time as a run will receive it
        (ISO 8601 in the schedule's zone), kept out of the stored parameters, and the payload
        says the type takes it."""
        target = spec.target
        if target.get("kind") != Kind.TYPED.value:
            raise InvalidRequest('schedule_payload takes a schedule of a target of kind "typed"')
        takes_time = self._takes_scheduled_time(target.get("type"))
        parameters = target.get("parameters")
        if takes_time and isinstance(parameters, dict):
            sample = iso_time(now(), spec.timezone or local_zone())
            parameters = {**parameters, SCHEDULED_TIME: sample}
        job = JobSpec(
            kind=Kind.TYPED, name=spec.name, type=target.get("type"),
            parameters=parameters, **spec.job,
        )  # fmt: skip
        job, payload = self.prepare(job)
        checked = {k: v for k, v in job.parameters.items() if not takes_time or k != SCHEDULED_TIME}
        target["parameters"] = checked
        for option in ("interpreter", "cwd"):
            if getattr(job, option) and spec.job.get(option) is None:
                spec.job[option] = getattr(job, option)
        if isinstance(payload, SharedPayload):  # the functions' bytes go into the payload
            built = job_types.decode_payload(bytes(payload.arguments), functions_apart=True)
            built.functions = payload.function.data or b""
        else:
            built = job_types.decode_payload(bytes(payload))
        built.parameters, built.takes_scheduled_time = checked, takes_time
        return job_types.encode_payload(built)

    def _takes_scheduled_time(self, name: object) -> bool:
        """Whether the type `name` declares `scheduled_time` (False for an unknown type, which
        `prepare` then refuses naming the known ones)."""
        try:
            found = self.get(name) if isinstance(name, str) else None
        except JobTypeNotFound:
            return False
        return found is not None and schema_declares(found.schema, SCHEDULED_TIME)
