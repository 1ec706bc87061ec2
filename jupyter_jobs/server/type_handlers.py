"""REST handlers for job types under /jobs/api/types (the contract's Job types section).

Thin, as `handlers.py`'s: `GET /types` lists every type with its JSON schema (installed ones
once the server has described them, `server/types_service.py`), `GET|PUT|DELETE /types/{name}`
reads, registers (a kernel's type: its schema, and its functions as base64 dill bytes that the
server stores and never loads) or forgets one. Submitting a typed job is `POST /jobs/api/jobs`
with `{"type", "parameters", "spec"}` (`handlers.py`).
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import JobTypeNotFound
from ..job_types import NAME
from . import parsing
from .handlers import JobsHandler

TYPE = r"(?P<name>[^/]+)"


def parse_name(text: str) -> str:
    """A type's name from the URL (`job_types.NAME`); a 404 for what cannot be one, since no
    type has it."""
    if not NAME.fullmatch(text):
        raise JobTypeNotFound.named(text[:100])
    return text


class TypesHandler(JobsHandler):
    """`GET /jobs/api/types`: every job type, by name, with its schema."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        types = self.app.types
        found = await types.call(types.registry.all)
        self.reply({"types": [t.to_json() for t in found]})


class TypeHandler(JobsHandler):
    """`GET|PUT|DELETE /jobs/api/types/{name}`."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        types = self.app.types
        self.reply((await types.call(types.registry.get, parse_name(name))).to_json())

    @web.authenticated
    @authorized
    async def put(self, name: str) -> None:
        types = self.app.types
        described, functions = await self.app.run(
            parsing.type_registration, name, self.request.body, self.app.max_payload_size
        )
        if not described.owner:
            described.owner = getattr(self.current_user, "username", None) or ""
        stored = await types.call(types.registry.register, described, functions)
        self.reply(stored.to_json())

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        types = self.app.types
        await types.call(types.registry.delete, parse_name(name))
        self.set_status(204)
        self.finish()


ROUTES: list[tuple[str, type[JobsHandler]]] = [
    (r"/jobs/api/types", TypesHandler),
    (rf"/jobs/api/types/{TYPE}", TypeHandler),
]
