"""Result channels, the reading side: `results(channel)` yields the jobs of a channel as they end.

A job submitted with `channel="sweep-1"` is entered in that channel when it reaches its final
status (`store/channels.py`: a trigger numbers it in commit order). Any number of readers take
the channel's jobs, each through its own durable cursor (a reader name): every reader gets every
job, in the order the jobs finished, and a reader that restarts resumes after the last job it
acknowledged. Delivery is at least once per reader: a job is acknowledged when the reader asks
for the next one (or calls `job.ack()`), so a reader that dies while it handles a job gets that
job again. Two processes reading with one reader name share its cursor: they may both get a job
that neither has acknowledged yet; give each reader its own name.

Light on purpose, as `options.py`: kernels import it without the store.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest
from .models import Job as JobRecord
from .options import BY_NAME, CHANNEL_PATTERN

if TYPE_CHECKING:
    from .job import Backend, Job

#: The reader name of a reader that does not give one: one shared cursor per channel.
DEFAULT_READER = "default"
#: Jobs fetched per request while a reader iterates (each is still acknowledged one by one).
PREFETCH = 100
#: Most jobs one `next` request may ask for.
MAX_BATCH = 1000
#: The longest name of a channel or reader (the `channel` option's bound).
MAX_NAME = BY_NAME["channel"].max_length or 200


def check_name(what: str, name: Any) -> str:
    """A channel's or reader's name, or `InvalidRequest` naming what is wrong with it."""
    if not isinstance(name, str):
        raise InvalidRequest(f"{what} must be a string, got {type(name).__name__}")
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"{what} is longer than {MAX_NAME} characters")
    if not re.fullmatch(CHANNEL_PATTERN, name):
        raise InvalidRequest(
            f"{what} {name[:50]!r} is not a name: letters, digits and _ . : @ + - "
            "(not first), as matched by " + CHANNEL_PATTERN
        )
    return name


@dataclass
class Delivery:
    """One finished job of a channel: its number there (`seq`, the order of finishing) and its
    record as it ended."""

    seq: int
    job: JobRecord

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "job": self.job.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Delivery:
        return cls(int(data["seq"]), JobRecord.from_json(data["job"]))


@dataclass
class Batch:
    """What one read of a channel gives: the jobs past the position asked for (at most the
    number asked for), and the position the reader has acknowledged."""

    deliveries: list[Delivery]
    acked: int

    def to_json(self, channel: str, reader: str) -> dict[str, Any]:
        return {
            "channel": channel,
            "reader": reader,
            "acked": self.acked,
            "items": [d.to_json() for d in self.deliveries],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        return cls([Delivery.from_json(d) for d in data["items"]], int(data["acked"]))


class Results(Iterator["Job"]):
    """The finished jobs of a channel for one reader, in the order they finished.

    Each job comes as a finished `Job` handle (`result()`, `exception()`, `logs()` ...); asking
    for the next one acknowledges the one before (`job.ack()` does it at once). `timeout`:
    seconds to wait for each next job (None: as long as it takes; 0: only those finished
    already); when it passes, the iteration ends, or, when `count` jobs were asked for and
    fewer came, `TimeoutError` names how many did. `count`: stop after that many jobs.
    """

    def __init__(
        self,
        backend: Backend,
        channel: str,
        reader: str = DEFAULT_READER,
        timeout: float | None = None,
        count: int | None = None,
    ) -> None:
        self.channel = check_name("channel", channel)
        self.reader = check_name("reader", reader)
        if timeout is not None and not timeout >= 0:
            raise InvalidRequest(f"timeout must be zero or more seconds (or None), got {timeout!r}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise InvalidRequest(f"count must be an int (or None), got {count!r}")
        self.timeout = timeout
        self.count = count
        self.delivered = 0
        self._backend = backend
        self._buffer: collections.deque[Delivery] = collections.deque()
        self._position: int | None = None  # the last seq fetched; None: the reader's cursor
        self._previous: Job | None = None

    def __iter__(self) -> Results:
        return self

    def __next__(self) -> Job:
        self._ack_previous()
        if self.count is not None and self.delivered >= self.count:
            raise StopIteration
        if not self._buffer:
            self._fill()
        if not self._buffer:
            if self.count is not None:
                raise TimeoutError(
                    f"channel {self.channel!r}: no job finished within {self.timeout:g} s "
                    f"(reader {self.reader!r} got {self.delivered} of {self.count})"
                )
            raise StopIteration
        delivery = self._buffer.popleft()
        self._position = delivery.seq
        job = self._backend.handle(delivery.job)
        job.channel_seq = delivery.seq
        job._ack = lambda seq=delivery.seq: self.ack(seq)
        self.delivered += 1
        self._previous = job
        return job

    def ack(self, seq: int) -> int:
        """Acknowledge every job of the channel up to `seq` for this reader; the new cursor."""
        return self._backend.channel_ack(self.channel, self.reader, seq)

    def _ack_previous(self) -> None:
        previous, self._previous = self._previous, None
        if previous is not None:
            previous.ack()

    def _fill(self) -> None:
        """Fetch the next jobs, waiting up to the timeout for one to finish."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        want = PREFETCH if self.count is None else min(PREFETCH, self.count - self.delivered)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            batch = self._backend.channel_next(
                self.channel, self.reader, self._position, want, left
            )
            if batch.deliveries or left == 0:
                self._buffer.extend(batch.deliveries)
                return
