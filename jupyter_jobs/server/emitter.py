"""Store changes -> jupyter_events: what the sidebar listens to on `/api/events/subscribe`.

The store calls its subscribers in whichever thread committed (a request's worker thread, the
consumer's writer thread), while the event logger and its websocket listeners live on the
server's event loop: so each batch of changes hops to the loop before it is emitted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_events import EventLogger

from ..models import Change
from ..store import Store
from .subscriber import LoopSubscriber

SCHEMA_ID = "https://events.jupyter.org/jupyter_jobs/job"
SCHEMA_PATH = Path(__file__).parent / "events" / "job.yaml"


def event_data(change: Change) -> dict[str, Any]:
    """The event payload for one change (fields described in events/job.yaml)."""
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
        "status": job.status.value,
        "previous": change.previous.value if change.previous is not None else None,
        "reason": job.reason.value if job.reason is not None else None,
        "attempt": job.attempt,
        "progress": progress,
        "actions": [] if change.what == "deleted" else job.actions,
    }


class EventBridge(LoopSubscriber):
    """Subscribes to a store and emits every change as a `jupyter_jobs/job` event."""

    def __init__(self, store: Store, event_logger: EventLogger) -> None:
        super().__init__(store)
        self._logger = event_logger

    def _on_changes(self, changes: list[Change]) -> None:
        self._on_loop(self._emit, [event_data(c) for c in changes])

    def _emit(self, events: list[dict[str, Any]]) -> None:
        for data in events:
            self._logger.emit(schema_id=SCHEMA_ID, data=data)
