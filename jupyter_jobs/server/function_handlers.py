"""REST handlers for functions stored once, under /jobs/api/functions (`shared.py`).

A batch submit names the function its items call by sha256 and carries its bytes once, or not
at all when the server has them. Before a large function a kernel asks (`GET`: the function's
size and how many of the user's jobs name it, or 404), and uploads it on its own as raw bytes
(`PUT`: no base64 of megabytes inside JSON), then sends batches that name it. The server checks
that the bytes have the sha256 they are sent as (400 otherwise), stores them opaque and never
loads them. An upload no job names within `store/shared.ORPHAN_GRACE` is freed by gc.

A function is its senders' code (its closure may hold their data): a `GET`, like a submit that
names a function by its sha256 alone, is for those who sent its bytes and those the authorizer
lets read their jobs (`access.JobAccess.named_functions`); anyone else gets the 404 of a
function not stored. A `PUT` proves the sender has the bytes: it is a 201 when the function is
new to them, whoever else sent it. No route serves a function's bytes.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from . import parsing
from .handlers import JobsHandler

SHA256 = r"(?P<sha256>[^/]+)"


class FunctionHandler(JobsHandler):
    """`GET|PUT /jobs/api/functions/{sha256}`."""

    @web.authenticated
    @authorized
    async def get(self, sha256: str) -> None:
        name = parsing.function_name(sha256)
        store, me = self.app.store, self.job_user.username
        senders = await self.app.run(store.function_users, [name])
        await self.named_functions({name: senders.get(name, set())})
        self.reply((await self.app.run(store.describe_function, name, me)).to_json())

    @web.authenticated
    @authorized
    async def put(self, sha256: str) -> None:
        name = parsing.function_name(sha256)
        body, limit = self.request.body, self.app.max_payload_size
        function = await self.app.run(parsing.function_bytes, name, body, limit)
        me = self.job_user.username
        stored, created = await self.app.run(self.app.store.put_function, function, me)
        self.reply(stored.to_json(), 201 if created else 200)


ROUTES: list[tuple[str, type[JobsHandler]]] = [
    (rf"/jobs/api/functions/{SHA256}", FunctionHandler),
]
