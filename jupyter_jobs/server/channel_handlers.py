"""REST handlers for result channels under /jobs/api/channels (`channels.py` says what they are).

Thin, as `handlers.py`'s: names and bodies are parsed by `parsing.py` (a 400 naming the
problem), the store does the rest in the app's thread pool. `next` is a long poll on the
existing waiter machinery (`waiters.channel_key`): a request waits for a job of its channel to
end, in this process (the store's subscription) or another (the doorbell), never by polling.
"""

from __future__ import annotations

import functools

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..channels import DEFAULT_READER, MAX_BATCH, Batch
from ..models import MAX_INT
from . import parsing
from .handlers import JobsHandler, LongPollHandler
from .waiters import channel_key

NAME = r"(?P<channel>[^/]+)"


class NextHandler(LongPollHandler):
    """`GET /jobs/api/channels/{name}/next?reader=R&after=N&limit=L&wait=S`: the jobs of the
    channel that finished past the reader's cursor (or past `after`), in the order they
    finished, after a long poll of up to S s for the first one."""

    @web.authenticated
    @authorized
    async def get(self, channel: str) -> None:
        name = parsing.channel_name("channel", channel)
        reader, after, limit = self.query("reader"), self.query("after"), self.query("limit")
        reader = parsing.channel_name("reader", DEFAULT_READER if reader is None else reader)
        read = functools.partial(
            self.app.store.channel_next,
            name,
            reader,
            parsing.integer("after", after, 0, MAX_INT) if after is not None else None,
            parsing.integer("limit", limit, 1, MAX_BATCH) if limit is not None else 1,
        )
        answer = await self.long_poll([channel_key(name)], read, _has_jobs)
        if answer is not None:
            # A channel is any user's to name: its jobs are read only as far as they may be.
            for delivery in answer.deliveries:
                await self.check_job(delivery.job, "read", "read")
            self.reply(answer.to_json(name, reader))


def _has_jobs(batch: Batch) -> bool:
    return bool(batch.deliveries)


class AckHandler(JobsHandler):
    """`POST /jobs/api/channels/{name}/ack` with `{"reader", "seq"}`: the reader has handled
    the channel's jobs up to `seq`; restarted, it resumes after them."""

    @web.authenticated
    @authorized
    async def post(self, channel: str) -> None:
        name = parsing.channel_name("channel", channel)
        reader, seq = parsing.channel_ack(self.request.body)
        acked = await self.app.run(self.app.store.channel_ack, name, reader, seq)
        self.reply({"channel": name, "reader": reader, "acked": acked})


ROUTES: list[tuple[str, type[JobsHandler]]] = [
    (rf"/jobs/api/channels/{NAME}/next", NextHandler),
    (rf"/jobs/api/channels/{NAME}/ack", AckHandler),
]
