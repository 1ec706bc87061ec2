"""What job code calls: `progress(done, total, message)`, `current_job()`, and a tqdm bridge.

The same code runs inside a job and in a plain notebook, so outside a job every call is a quiet
no-op. Inside a job the runner installs a sink that forwards (rate limited) to the executor; the
job never talks to the server itself. The tqdm bridge makes existing progress bars report
through `progress()` without code changes.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Sink = Callable[[float, "float | None", "str | None"], None]


@dataclass(frozen=True)
class JobContext:
    """Which job (and which attempt of it) the current code runs as."""

    id: int
    attempt: int


_context: JobContext | None = None
_sink: Sink | None = None


def current_job() -> JobContext | None:
    """The running job's id and attempt, or None when not inside a job."""
    return _context


def progress(done: float, total: float | None = None, message: str | None = None) -> None:
    """Report how far the job got; shown in the widget, the sidebar and `jupyter jobs show`.

    Cheap enough to call in a tight loop: the worker sends at most one update per interval and
    always the last one before the job ends.
    """
    if not isinstance(done, numbers.Real) or isinstance(done, bool):
        raise TypeError(f"progress: done must be a number, got {done!r}")
    if total is not None and (not isinstance(total, numbers.Real) or isinstance(total, bool)):
        raise TypeError(f"progress: total must be a number or None, got {total!r}")
    if message is not None and not isinstance(message, str):
        raise TypeError(f"progress: message must be a string or None, got {message!r}")
    sink = _sink
    if sink is not None:
        sink(float(done), None if total is None else float(total), message)


@contextmanager
def job_context(context: JobContext, sink: Sink) -> Iterator[None]:
    """Used by the runner around one job: makes `current_job()` and `progress()` live."""
    global _context, _sink
    _context, _sink = context, sink
    try:
        yield
    finally:
        _context, _sink = None, None


def _forget_sink_in_a_forked_child() -> None:
    """A process a job forks (a fork-based multiprocessing pool) is not the job: its
    progress() would write frames into the worker's channel in the middle of the worker's own,
    which the executor reads as a broken worker."""
    global _sink
    _sink = None


os.register_at_fork(after_in_child=_forget_sink_in_a_forked_child)


def _report_bar(bar: Any) -> None:
    # Only the outermost open bar speaks for the job: nested bars would make it jump around.
    if _sink is None or getattr(bar, "disable", True) or getattr(bar, "pos", 0) != 0:
        return
    total = bar.total if isinstance(bar.total, numbers.Real) else None
    progress(bar.n, total, bar.desc or None)


def install_tqdm_bridge() -> bool:
    """Make every tqdm bar (std, auto, notebook, contrib) report through `progress()`.

    Patches the base class, so bars created through any import path are covered, including
    `from tqdm import tqdm` done before the job started. Returns False when tqdm is not installed.
    """
    try:
        from tqdm import std
    except ImportError:
        return False
    base = std.tqdm
    if getattr(base, "_jupyter_jobs_bridge", False):
        return True
    original_update, original_close = base.update, base.close

    def update(self: Any, n: float | None = 1) -> Any:
        shown = original_update(self, n)
        _report_bar(self)
        return shown

    def close(self: Any) -> None:
        # Report before closing: close() marks the bar disabled.
        _report_bar(self)
        original_close(self)

    base.update, base.close = update, close
    base._jupyter_jobs_bridge = True
    return True
