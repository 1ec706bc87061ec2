"""Store changes -> jupyter_events: what the sidebar listens to on `/api/events/subscribe`.

One event per change cost the server more than the jobs did: `EventLogger.emit` deep-copies
its data and validates it with jsonschema on every call, on the server's event loop, so a tab
listening to a queue draining thousands of jobs a second slowed that queue several times over.
So changes are coalesced: within a short window each job keeps only its latest state (with what
the sidebar needs to count it: whether it was created, the status it had before the window),
and the window goes out as one `jupyter_jobs/job` event (schema version 4) carrying a list.
An entry is built from the record the store publishes with its commit and nothing else: a typed
job's `type` and `summary` are columns of that record (the summary computed in the worker and
stored with the outcome, once), so no entry costs a read.

The store calls its subscribers in whichever thread committed (a request's worker thread, the
consumer's writer thread): the entries are built and merged there, and the loop only wakes once
per window to emit what piled up. A job's final state is never lost: the last change of a job
always lands in the window that is still open, which is emitted when it closes (or at stop).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from jupyter_events import EventLogger
from jupyter_events import yaml as events_yaml

from ..models import Change
from ..store import Store
from .subscriber import LoopSubscriber

SCHEMA_ID = "https://events.jupyter.org/jupyter_jobs/job"
SCHEMA_PATH = Path(__file__).parent / "events" / "job.yaml"
#: How long changes are gathered before they go out, in seconds: short enough for the sidebar
#: to look live, long enough that a job's queued -> running -> succeeded is usually one entry.
WINDOW = 0.05

#: Which action an entry keeps when a job changed several ways in one window: the one that
#: tells the sidebar most (a transition moves the numbers; a cancel request shows at once).
_RANK = {"progress": 0, "released": 1, "cancel_requested": 2, "transition": 3}


def register_schema(event_logger: EventLogger) -> None:
    """Register `events/job.yaml` with the entries checked by their keys only.

    The file describes every field of an entry (the contract, which the tests check entries
    against); jupyter_events validates each event against what is registered, on the loop, and
    its per-field checks cost ~40 us an entry, more than the job they report on.
    """
    schema = events_yaml.load(SCHEMA_PATH)
    del schema["properties"]["jobs"]["items"]["properties"]
    event_logger.register_event_schema(schema)


def event_data(change: Change) -> dict[str, Any]:
    """The entry for one change (fields described in events/job.yaml)."""
    job = change.job
    progress = None
    if job.progress is not None:
        progress = {
            "done": job.progress.done,
            "total": job.progress.total,
            "message": job.progress.message,
        }
    return {
        "action": change.what,
        "id": job.id,
        "name": job.name,
        "owner": job.owner,
        "user": job.user,
        "status": job.status.value,
        "previous": change.previous.value if change.previous is not None else None,
        "reason": job.reason.value if job.reason is not None else None,
        "attempt": job.attempt,
        "progress": progress,
        "actions": [] if change.what == "deleted" else job.actions,
        "schedule_id": job.schedule_id,
        "type": job.type,
        "summary": job.summary,
    }


def merge(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any] | None:
    """One entry for two changes of a job in the same window, or None when nothing remains.

    The later state wins; the action says what happened over the window: `created` (with the
    latest status) for a job created in it, `deleted` for one deleted in it (a job created and
    deleted within one window leaves nothing), `transition` with the status from before the
    window when the status moved, else the weightiest of the other actions.
    """
    first, last = earlier["action"], later["action"]
    if first == "created":
        return None if last == "deleted" else {**later, "action": "created", "previous": None}
    if last == "deleted":
        return later
    before = earlier["previous"] if first == "transition" else earlier["status"]
    if first == "transition" or last == "transition":
        return {**later, "action": "transition", "previous": before}
    action = first if _RANK[first] > _RANK[last] else last
    return {**later, "action": action}


class EventBridge(LoopSubscriber):
    """Subscribes to a store and emits its changes, coalesced per window, as `job` events."""

    def __init__(self, store: Store, event_logger: EventLogger, window: float = WINDOW) -> None:
        super().__init__(store)
        self._logger = event_logger
        self._window = window
        self._lock = threading.Lock()
        #: The open window: job id -> its entry, in the order the jobs first changed.
        self._pending: dict[int, dict[str, Any]] = {}
        self._armed = False

    def stop(self) -> None:
        """Stop listening, and emit what the open window holds (called on the loop)."""
        super().stop()
        self._emit()

    def _on_changes(self, changes: list[Change]) -> None:
        with self._lock:
            for change in changes:
                entry = event_data(change)
                earlier = self._pending.pop(entry["id"], None)
                if earlier is not None:
                    entry = merge(earlier, entry)
                if entry is not None:
                    self._pending[entry["id"]] = entry
            arm = bool(self._pending) and not self._armed
            self._armed = self._armed or arm
        if arm:
            self._on_loop(self._arm)

    def _arm(self) -> None:
        asyncio.get_running_loop().call_later(self._window, self._emit)

    def _emit(self) -> None:
        with self._lock:
            entries = list(self._pending.values())
            self._pending = {}
            self._armed = False
        if entries:
            self._logger.emit(schema_id=SCHEMA_ID, data={"jobs": entries})
