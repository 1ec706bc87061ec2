"""A store subscription whose work happens on the server's event loop.

The store calls its subscribers in whichever thread committed (a request's worker thread, the
consumer's writer thread), while what reacts to changes (the event logger, long polls) lives on
the loop: a subclass picks what it needs in `_on_changes`, in that thread, and hands it over
with `_on_loop`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..models import Change
from ..store import Store


class LoopSubscriber:
    """Subscribes to a store between `start(loop)` and `stop()`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin listening; `loop` is the server's running loop."""
        self._loop = loop
        self._unsubscribe = self._store.subscribe(self._on_changes)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_changes(self, changes: list[Change]) -> None:
        raise NotImplementedError

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call `fn(*args)` on the loop, unless it is gone (the server is stopping)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)
