"""REST handlers for what runs jobs and what runs next: `/workers`, a worker's drain, and
`/queue/next`.

Thin like the others (`handlers.py`): the workers of this server's own consumer come from its
executor, now, on the loop; those of other consumers on the same database (a
`jupyter jobs consumer`, a script's `JobQueue.start_consumer()`) from the store, as they last
wrote them (`store/workers.py`), and a drain of one of theirs is asked through the store.
"""

from __future__ import annotations

from collections.abc import Callable

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..consumer import Consumer, consumer_is_alive
from ..models import now
from ..worker_info import WorkerInfo
from .handlers import JobsHandler

WORKER_ID = r"(?P<worker_id>[^/]+)"


class QueueNextHandler(JobsHandler):
    """`GET /jobs/api/queue/next`: the job the next claim would take (`Store.peek`)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        job = await self.app.run(self.app.store.peek)
        if job is not None:  # another user's next job is shown to those who may read it
            await self.check_job(job, "read", "read")
        self.reply({"job": job.to_json() if job is not None else None})


class WorkersHandler(JobsHandler):
    """`GET /jobs/api/workers`: this server's workers, then other consumers' (503 while the
    consumer starts)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        consumer = self.app.running_consumer()
        own = await _own_workers(consumer)
        others = await self.app.run(self.app.store.workers, _others_alive(consumer))
        workers = [*own, *others]
        self.reply({"workers": [w.to_json() for w in workers], "consumer": consumer.consumer_id})


class DrainHandler(JobsHandler):
    """`POST /jobs/api/workers/{worker_id}/drain`: a worker halts after its current job."""

    @web.authenticated
    @authorized
    async def post(self, worker_id: str) -> None:
        consumer = self.app.running_consumer()
        if any(w.id == worker_id for w in await consumer.executor.workers()):
            drained = await consumer.executor.drain(worker_id)
            info = drained.seen_by(consumer.consumer_id, now())
        else:
            request = self.app.store.request_drain
            info = await self.app.run(request, worker_id, _others_alive(consumer))
        self.reply(info.to_json())


async def _own_workers(consumer: Consumer) -> list[WorkerInfo]:
    at = now()
    return [w.seen_by(consumer.consumer_id, at) for w in await consumer.executor.workers()]


def _others_alive(consumer: Consumer) -> Callable[[str], bool]:
    """Which consumers' stored workers to list: other ones, not proven gone (this server's
    own come from its executor)."""
    return lambda other: other != consumer.consumer_id and consumer_is_alive(other)


#: Routes, appended to `handlers.ROUTES` (openapi.yaml describes each one).
ROUTES: list[tuple[str, type[JobsHandler]]] = [
    (r"/jobs/api/queue/next", QueueNextHandler),
    (r"/jobs/api/workers", WorkersHandler),
    (rf"/jobs/api/workers/{WORKER_ID}/drain", DrainHandler),
]
