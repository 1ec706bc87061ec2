"""The server's job types: installed ones described in a subprocess, kernel ones in the store.

The server imports no job code: it learns the installed types (the `jupyter_jobs.types` entry
points, with their schemas) by running `python -m jupyter_jobs.typed_run describe` with the
interpreter its workers use, once at start, and again when a submit names a type it does not
know (a package installed since), at most every `REFRESH_INTERVAL` seconds. A type whose package
is upgraded keeps its old schema here until then or until the server restarts; its jobs always
run the installed code, imported in the worker. Store calls go through the app's thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..errors import JobTypeNotFound
from ..job_types import JobType
from ..models import Job, JobSpec, JobUser
from ..schedules import ScheduleSpec
from ..store import Store
from ..type_registry import TypeRegistry
from . import service

T = TypeVar("T")

#: Seconds a description may take (an entry point importing a large library is slow).
DESCRIBE_TIMEOUT = 120.0
#: Fewest seconds between two descriptions asked for by submits of unknown types.
REFRESH_INTERVAL = 10.0

Run = Callable[..., Awaitable[Any]]


class TypesService:
    """Job types for the handlers: the registry, kept up to date with what is installed."""

    def __init__(self, store: Store, interpreter: str, run: Run, log: logging.Logger) -> None:
        self.store = store
        self.registry = TypeRegistry(store)
        self.interpreter = interpreter
        self._run = run
        self._log = log
        self._described: asyncio.Task[None] | None = None
        self._described_at = float("-inf")

    def start(self) -> None:
        """Describe the installed types in the background (on the running loop)."""
        if self._described is None:
            self._described = asyncio.ensure_future(self._describe())

    async def stop(self) -> None:
        if self._described is not None and not self._described.done():
            self._described.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._described

    async def ready(self) -> None:
        """Until the installed types have been described once (or failed to be)."""
        self.start()
        assert self._described is not None
        await asyncio.shield(self._described)

    async def refresh(self) -> bool:
        """Describe the installed types again, unless that was done less than
        `REFRESH_INTERVAL` seconds ago; whether it was."""
        await self.ready()
        if time.monotonic() - self._described_at < REFRESH_INTERVAL:
            return False
        assert self._described is not None
        if self._described.done():
            self._described = asyncio.ensure_future(self._describe())
        await asyncio.shield(self._described)
        return True

    async def call(self, method: Callable[..., T], *args: Any) -> T:
        """A registry method in the thread pool, once the installed types are known."""
        await self.ready()
        return await self._run(method, *args)

    async def submit(self, spec: JobSpec, user: JobUser) -> tuple[Job, bool]:
        """Store a typed job of `user` (`service.submit` with the registry's payload)."""
        prepare = functools.partial(self.registry.prepare, spec)
        return await self._named(service.submit, self.store, prepare, user)

    async def schedule_payload(self, spec: ScheduleSpec) -> bytes:
        """A typed schedule's payload, its parameters checked (`TypeRegistry.schedule_payload`)."""
        return await self._named(self.registry.schedule_payload, spec)

    async def _named(self, method: Callable[..., T], *args: Any) -> T:
        """`call`, for a method that looks a type up by name: a type unknown to the last
        description makes it describe again once before it is refused."""
        try:
            return await self.call(method, *args)
        except JobTypeNotFound:
            if not await self.refresh():
                raise
        return await self.call(method, *args)

    async def _describe(self) -> None:
        """Run the describer; keep what it found, or log why it found nothing."""
        self._described_at = time.monotonic()
        command = [self.interpreter, "-m", "jupyter_jobs.typed_run", "describe"]
        try:
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            self._log.warning("jupyter_jobs: cannot describe the installed job types: %s", exc)
            return
        try:
            out, err = await asyncio.wait_for(process.communicate(), DESCRIBE_TIMEOUT)
        except asyncio.TimeoutError:
            await _kill(process)
            self._log.warning(
                "jupyter_jobs: describing the installed job types took over %g s; the last "
                "description stays until a submit names an unknown type",
                DESCRIBE_TIMEOUT,
            )
            return
        except asyncio.CancelledError:  # the server stops
            await _kill(process)
            raise
        if process.returncode != 0:
            self._log.warning(
                "jupyter_jobs: describing the installed job types failed (exit %s): %s",
                process.returncode,
                err.decode(errors="replace")[-2000:],
            )
            return
        try:
            found = [JobType.from_json(t) for t in json.loads(out)["types"]]
        except (ValueError, KeyError, TypeError) as exc:
            self._log.warning("jupyter_jobs: the job type description is not readable: %s", exc)
            return
        self.registry.set_installed(found)
        for job_type in found:
            if job_type.error:
                self._log.warning("jupyter_jobs: job type %s: %s", job_type.name, job_type.error)
        self._log.info(
            "jupyter_jobs: installed job types: %s", ", ".join(t.name for t in found) or "none"
        )


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()
