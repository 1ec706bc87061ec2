"""How a job reads as text: status words, durations, timings, progress.

The one home of these words in Python: the CLI, `%jobs`, `%job`, the widget and a saved
notebook's static view all say "running (cancelling)" or "3 min 05 s" through here (the
labextension's one home is `format.ts`). Plain text; HTML escaping is the caller's
(`kernel/render.py`). No imports beyond `models`, so the CLI stays quick to start.
"""

from __future__ import annotations

import time

from .models import Job as JobRecord
from .models import Status


def duration(seconds: float) -> str:
    """`0.4 s`, `12 s`, `3 min 05 s`, `2 h 03 min`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def status_word(record: JobRecord) -> str:
    """The status, with what qualifies it: `failed (timeout)`, `running (cancelling)`."""
    word = record.status.value
    if record.reason is not None:
        word += f" ({record.reason.value})"
    elif record.cancel_requested and not record.finished:
        word += " (cancelling)"
    if record.attempt > 1:
        word += f", attempt {record.attempt}"
    return word


def elapsed(record: JobRecord, now: float | None = None) -> float | None:
    """Seconds the current attempt has run (to its end once finished), None before it starts."""
    if record.started_at is None:
        return None
    end = record.finished_at if record.finished_at is not None else (now or time.time())
    return max(0.0, end - record.started_at)


def eta(record: JobRecord, now: float | None = None) -> float | None:
    """Seconds left, extrapolated from progress so far; None when it cannot be told."""
    p = record.progress
    spent = elapsed(record, now)
    if record.status is not Status.RUNNING or not p or not p.total or not p.done or not spent:
        return None
    return spent * (p.total - p.done) / p.done


def timing_parts(record: JobRecord, now: float | None = None) -> list[str]:
    """`["3.2 s elapsed", "ETA 10 s"]`, `["took 4.1 s"]`, `["submitted 2 s ago"]`."""
    spent = elapsed(record, now)
    if record.finished and spent is not None:
        return [f"took {duration(spent)}"]
    if spent is not None:
        left = eta(record, now)
        return [f"{duration(spent)} elapsed"] + ([f"ETA {duration(left)}"] if left else [])
    if record.created_at:
        return [f"submitted {duration(max(0.0, (now or time.time()) - record.created_at))} ago"]
    return []


def timing(record: JobRecord, now: float | None = None) -> str:
    """`#12 · 3.2 s elapsed · ETA 10 s`."""
    return " · ".join([f"#{record.id}", *timing_parts(record, now)])


def progress_count(record: JobRecord) -> str:
    """`40/100`, or `40` without a total; '' before any progress."""
    p = record.progress
    if p is None:
        return ""
    return f"{p.done:g}/{p.total:g}" if p.total else f"{p.done:g}"


def progress_text(record: JobRecord) -> str:
    """`40/100 · loading data` (or just the count, or '')."""
    count = progress_count(record)
    message = record.progress.message if record.progress else None
    return f"{count} · {message}" if message else count
