"""Long polls on `/result?wait=`, `/results?wait=` and `/channels/{name}/next?wait=`: wake a
request when a job it waits for ends, or a job of the channel it reads.

The store calls its subscribers in whichever thread committed; this hops the ids that someone
waits for, and only those, to the server's loop and resolves their futures. A request registers
before it reads the store, so a job that finishes between the read and the wait still wakes it.

Another process that ends or deletes a job (`jupyter jobs cancel`/`rm`, a second consumer on
the same database) is not seen by the subscription: it rings the store's doorbell, and a ring
wakes every waiting request, which reads again and waits again if its jobs are still running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterable, Iterator

from ..doorbell import Listener
from ..models import Change
from ..store import Store
from .subscriber import LoopSubscriber


def channel_key(channel: str) -> tuple[str, str]:
    """What a long poll on a result channel watches: woken when a job of the channel ends."""
    return ("channel", channel)


class Waiters(LoopSubscriber):
    """Futures per job id, resolved on the loop once that job has finished or was deleted, and
    per result channel (`channel_key`), resolved once a job of that channel has finished."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        # Changed on the loop only; the committing threads just test membership.
        self._futures: dict[Hashable, set[asyncio.Future[None]]] = {}
        self._listener: Listener | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        super().start(loop)
        self._listener = self._store.listen()
        self._listener.on_loop(loop, self.wake_all)

    def stop(self) -> None:
        super().stop()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def wake_all(self) -> None:
        """Every waiting request reads again (on the loop): another process committed (a
        doorbell ring), or the server is stopping and each must answer now."""
        self._wake(list(self._futures))

    @contextlib.contextmanager
    def watch(self, job_ids: Iterable[Hashable]) -> Iterator[asyncio.Future[None]]:
        """A future that resolves once any of `job_ids` ends (on the loop, inside the block);
        a `channel_key` among them: once a job of that channel ends."""
        ids = list(job_ids)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for job_id in ids:
            self._futures.setdefault(job_id, set()).add(future)
        try:
            yield future
        finally:
            for job_id in ids:
                futures = self._futures.get(job_id)
                if futures is not None:
                    futures.discard(future)
                    if not futures:
                        del self._futures[job_id]

    def _on_changes(self, changes: list[Change]) -> None:
        ended: list[Hashable] = [
            c.job.id
            for c in changes
            if (c.what == "deleted" or c.job.finished) and c.job.id in self._futures
        ]
        ended += [
            key
            for c in changes
            if c.job.channel is not None
            and c.job.finished
            and (key := channel_key(c.job.channel)) in self._futures
        ]
        if ended:
            self._on_loop(self._wake, ended)

    def _wake(self, job_ids: list[Hashable]) -> None:
        for job_id in job_ids:
            for future in list(self._futures.get(job_id, ())):
                if not future.done():
                    future.set_result(None)
