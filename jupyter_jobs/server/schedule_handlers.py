"""REST handlers for schedules under /jobs/api/schedules (the contract's Schedules section).

Thin, as `handlers.py`'s: the body is parsed and checked by `schedules.ScheduleSpec` (a 400
naming the field), the notebook is read through the server's contents manager (so `path` is
relative to the server's root, as the file browser shows it) and snapshotted into the store,
and every store call runs in the app's thread pool. A typed target (a job type's name and
parameters) has its parameters checked against the type's schema when the schedule is made or
its target changed, and its payload built then (`TypeRegistry.schedule_payload`). REST creates
notebook and typed schedules only: a function target is a pickle, which only the Python API
makes and only a worker loads.

A schedule belongs to the user who made it, and so do its runs; reading or changing another
user's schedule is `access.py`'s question, as for a job.
"""

from __future__ import annotations

import json
import math
import time

from jupyter_server.auth.decorator import authorized
from tornado import web

from .. import notebooks
from .. import schedules as rules
from ..errors import InvalidRequest, NotebookNotFound
from ..models import ID_TEXT
from . import parsing
from .handlers import JobsHandler

SID = r"(?P<schedule_id>[^/]+)"


def parse_id(text: str) -> int:
    if not ID_TEXT.fullmatch(text):
        raise InvalidRequest(
            f"invalid schedule id {text[:50]!r}: expected a positive integer of at most 18 digits"
        )
    return int(text)


class ScheduleBase(JobsHandler):
    async def payload(self, spec: rules.ScheduleSpec) -> bytes:
        """What every run of `spec` takes: its notebook's snapshot, or its typed job's payload
        (the parameters checked against the type's schema now: a 400 names each bad one)."""
        kind = spec.target.get("kind")
        if kind == "typed":
            return await self.app.types.schedule_payload(spec)
        if kind != "notebook":
            raise InvalidRequest("target.kind: REST creates notebook and typed schedules only")
        return await self.snapshot(spec.target)

    async def snapshot(self, target: dict) -> bytes:
        """The notebook at `target.path`, as JSON bytes; 400 naming the path when unreadable."""
        path = target["path"]
        try:
            content = await self.read_notebook(path)
        except NotebookNotFound as e:
            raise NotebookNotFound(f"target.path: {e.message}", e.detail) from None
        # Checked as a notebook job's would be, once: every run reuses this snapshot.
        checked = await self.app.run(lambda: notebooks.check_notebook(content))
        return await self.app.run(lambda: json.dumps(checked).encode())

    def owner(self) -> str:
        return self.job_user.username

    async def check_write(self, schedule_id: int, verb: str) -> None:
        """`NotAllowed` unless the schedule is this user's or the authorizer allows the change."""
        if not await self.may_everyone("write"):
            found = await self.app.run(self.app.store.get_schedule, schedule_id)
            await self.check_schedule(found, "write", verb)


class SchedulesHandler(ScheduleBase):
    """`GET /jobs/api/schedules` lists; `POST` creates one from a ScheduleSpec."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        user = await self.listed_user()
        found = await self.app.run(self.app.store.schedules, None, user)
        self.reply({"schedules": [s.to_json() for s in found]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = parsing.schedule_json(self.request.body)
        spec = rules.ScheduleSpec.from_json(body)
        payload = await self.payload(spec)
        made = await self.app.run(
            self.app.store.add_schedule, spec, self.owner(), payload, None, self.job_user
        )
        self.reply(made.to_json(), 201)


class ScheduleHandler(ScheduleBase):
    """`GET|PATCH|DELETE /jobs/api/schedules/{id}`."""

    @web.authenticated
    @authorized
    async def get(self, schedule_id: str) -> None:
        found = await self.app.run(self.app.store.get_schedule, parse_id(schedule_id))
        await self.check_schedule(found, "read", "read")
        self.reply(found.to_json())

    @web.authenticated
    @authorized
    async def patch(self, schedule_id: str) -> None:
        ident = parse_id(schedule_id)
        await self.check_write(ident, "change")
        changes = parsing.schedule_json(self.request.body, "schedule change")
        payload = None
        if "target" in changes:  # a new target: snapshot it, or check its parameters, again
            old = await self.app.run(self.app.store.get_schedule, ident)
            spec = old.merged(changes)
            payload = await self.payload(spec)
            changes = {**changes, "target": spec.target, "job": spec.job}
        changed = await self.app.run(self.app.store.update_schedule, ident, changes, payload)
        self.reply(changed.to_json())

    @web.authenticated
    @authorized
    async def delete(self, schedule_id: str) -> None:
        ident = parse_id(schedule_id)
        await self.check_write(ident, "delete")
        await self.app.run(self.app.store.delete_schedule, ident)
        self.set_status(204)
        self.finish()


class PauseHandler(ScheduleBase):
    """`POST /jobs/api/schedules/{id}/pause`."""

    @web.authenticated
    @authorized
    async def post(self, schedule_id: str) -> None:
        ident = parse_id(schedule_id)
        await self.check_write(ident, "pause")
        paused = await self.app.run(self.app.store.pause_schedule, ident)
        self.reply(paused.to_json())


class ResumeHandler(ScheduleBase):
    """`POST /jobs/api/schedules/{id}/resume`: from the next time on (missed ones are not run)."""

    @web.authenticated
    @authorized
    async def post(self, schedule_id: str) -> None:
        ident = parse_id(schedule_id)
        await self.check_write(ident, "resume")
        resumed = await self.app.run(self.app.store.resume_schedule, ident)
        self.reply(resumed.to_json())


class PreviewHandler(ScheduleBase):
    """`GET /jobs/api/schedules/preview?cron=...&timezone=...` (or `?every=`): the words and the
    next three times, for the dialog."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        every_text = self.query("every")
        every = None
        if every_text is not None:
            every = parsing.seconds("every", every_text, math.inf)  # bounds: check_every
        answer = await self.app.run(
            rules.preview, self.query("cron"), every, self.query("timezone"), time.time()
        )
        self.reply(answer)


#: Before `{id}`: "preview" is no id.
ROUTES: list[tuple[str, type[JobsHandler]]] = [
    (r"/jobs/api/schedules", SchedulesHandler),
    (r"/jobs/api/schedules/preview", PreviewHandler),
    (rf"/jobs/api/schedules/{SID}", ScheduleHandler),
    (rf"/jobs/api/schedules/{SID}/pause", PauseHandler),
    (rf"/jobs/api/schedules/{SID}/resume", ResumeHandler),
]
