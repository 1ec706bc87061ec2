"""The event bridge: store changes coalesced per job and window into `jupyter_jobs/job` events.

A real store and a real `jupyter_events.EventLogger` (which validates every event against the
registered schema) on a real asyncio loop; the store is written from another thread, as the
consumer's writer thread and the request threads do.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jupyter_events import EventLogger

from jupyter_jobs.models import JobSpec, Kind, Outcome, Progress, Status
from jupyter_jobs.server.emitter import (
    SCHEMA_ID,
    SCHEMA_PATH,
    EventBridge,
    merge,
    register_schema,
)
from jupyter_jobs.store import Store

from store_driver import claim, finish, set_progress, started
from waiting import wait_until

FINAL = ("succeeded", "failed", "cancelled")


def entry(action: str, status: str, previous: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "action": action,
        "id": 7,
        "name": "job",
        "owner": "",
        "status": status,
        "previous": previous,
        "reason": None,
        "attempt": 1,
        "progress": None,
        "actions": [],
        **fields,
    }


def test_a_job_created_in_the_window_is_one_created_entry_with_its_latest_state() -> None:
    created = entry("created", "queued", attempt=0)
    running = entry("transition", "running", "queued")
    done = entry("transition", "succeeded", "running", actions=["retry", "delete"])
    merged = merge(merge(created, running), done)
    assert merged == {**done, "action": "created", "previous": None}


def test_a_job_created_and_deleted_in_one_window_leaves_nothing() -> None:
    assert merge(entry("created", "queued"), entry("deleted", "queued")) is None


def test_transitions_in_one_window_go_from_the_status_before_it() -> None:
    merged = merge(entry("transition", "running", "queued"), entry("progress", "running"))
    merged = merge(merged, entry("transition", "failed", "running", reason="error"))
    assert (merged["action"], merged["previous"], merged["status"]) == (
        "transition",
        "queued",
        "failed",
    )
    assert merged["reason"] == "error"
    # A progress report then a transition: the status before the window is the report's.
    merged = merge(entry("progress", "running"), entry("transition", "succeeded", "running"))
    assert (merged["action"], merged["previous"]) == ("transition", "running")


def test_a_deletion_wins_over_what_came_before_it() -> None:
    merged = merge(entry("transition", "cancelled", "running"), entry("deleted", "cancelled"))
    assert merged["action"] == "deleted"


def test_a_cancel_request_is_not_hidden_by_a_later_progress_report() -> None:
    merged = merge(entry("cancel_requested", "running"), entry("progress", "running", attempt=2))
    assert (merged["action"], merged["attempt"]) == ("cancel_requested", 2)
    assert merge(entry("progress", "running"), entry("released", "pending"))["action"] == "released"


class Bridge:
    """An EventBridge on a loop in a background thread, collecting what a listener receives."""

    def __init__(self, store: Store, window: float) -> None:
        self.events: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.logger = EventLogger()
        register_schema(self.logger)
        self.bridge = EventBridge(store, self.logger, window=window)
        self._call(self._setup)

    async def _listen(self, logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        self.events.append(data)

    def _setup(self) -> None:
        self.logger.add_listener(schema_id=SCHEMA_ID, listener=self._listen)
        self.bridge.start(self._loop)

    def _call(self, fn: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(30)

    def entries(self) -> list[dict[str, Any]]:
        return [job for event in list(self.events) for job in event["jobs"]]

    def last_of(self, job_id: int) -> dict[str, Any] | None:
        mine = [e for e in self.entries() if e["id"] == job_id]
        return mine[-1] if mine else None

    def close(self) -> None:
        self._call(self.bridge.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


@pytest.fixture
def store(db_path: Path):
    store = Store(db_path)
    yield store
    store.close()


@pytest.fixture
def bridge(store: Store):
    bridge = Bridge(store, window=0.05)
    yield bridge
    bridge.close()


def run_one(store: Store, job_id: int, outcome: Status = Status.SUCCEEDED) -> None:
    (claimed,) = claim(store, "c1", 1, 60.0)
    attempt = claimed.job.attempt
    assert started(store, job_id, attempt)
    set_progress(store, job_id, attempt, Progress(1, 2, "half"))
    finish(store, job_id, attempt, Outcome(outcome))


def wait_for(predicate: Callable[[], Any], what: str) -> Any:
    return wait_until(predicate, 30, 0.01, what=what)


def test_a_job_that_runs_within_one_window_arrives_once_with_its_final_state(
    store: Store,
) -> None:
    # A long window, so that create, claim, start, progress and finish all fall inside it.
    bridge = Bridge(store, window=2.0)
    try:
        job = store.enqueue(JobSpec(name="quick"), b"")
        run_one(store, job.id)
        wait_for(lambda: bridge.events, "the window's event")
        assert len(bridge.events) == 1
        (only,) = bridge.entries()
        assert (only["action"], only["previous"], only["status"]) == ("created", None, "succeeded")
        assert only["progress"] == {"done": 1, "total": 2, "message": "half"}
        assert (only["attempt"], only["actions"]) == (1, ["delete"])
    finally:
        bridge.close()


def test_changes_of_an_existing_job_arrive_as_one_transition_from_its_old_status(
    store: Store, bridge: Bridge
) -> None:
    job = store.enqueue(JobSpec(name="slow"), b"")
    wait_for(lambda: bridge.last_of(job.id), "the created event")
    bridge.events.clear()
    run_one(store, job.id, Status.FAILED)
    last = wait_for(
        lambda: (e := bridge.last_of(job.id)) and e["status"] in FINAL and e, "the final state"
    )
    assert last["status"] == "failed"
    # Whatever the windows cut, the statuses follow each other and start from queued.
    moves = [(e["previous"], e["status"]) for e in bridge.entries() if e["action"] == "transition"]
    assert moves[0][0] == "queued"
    assert all(a[1] == b[0] for a, b in itertools.pairwise(moves)), moves


def test_many_jobs_changed_from_many_threads_all_end_in_their_final_state(
    store: Store, bridge: Bridge
) -> None:
    ids = [j.id for j in store.enqueue_many([(JobSpec(name=f"j{i}"), b"") for i in range(300)])]

    def work(mine: list[int]) -> None:
        for job_id in mine:
            store.request_cancel(job_id)

    threads = [threading.Thread(target=work, args=(ids[k::3],)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    wait_for(
        lambda: all((e := bridge.last_of(i)) and e["status"] == "cancelled" for i in ids),
        "every job's final state",
    )
    # Coalesced: far fewer events than the 600 changes.
    assert len(bridge.events) < 100
    for job_id in ids:
        store.delete(job_id)
    wait_for(lambda: all(bridge.last_of(i)["action"] == "deleted" for i in ids), "every deletion")


def test_what_the_open_window_holds_goes_out_at_stop(store: Store) -> None:
    bridge = Bridge(store, window=60.0)
    # The store hands its changes to subscribers before `enqueue` returns.
    job = store.enqueue(JobSpec(name="late"), b"")
    bridge.close()
    assert [(e["id"], e["action"]) for e in bridge.entries()] == [(job.id, "created")]


def test_every_entry_sent_meets_the_full_schema_of_the_file(store: Store, bridge: Bridge) -> None:
    # The server checks entries by their keys only; the file's per-field rules are the contract.
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    full = EventLogger()
    full.register_event_schema(SCHEMA_PATH)  # the whole file is a valid jupyter_events schema
    job = store.enqueue(JobSpec(name="checked", hold=True), b"")
    store.release(job.id)
    run_one(store, job.id, Status.FAILED)
    held = store.enqueue(JobSpec(name="cancelled"), b"")
    wait_for(lambda: bridge.last_of(held.id), "the creation")  # not created and deleted at once
    store.request_cancel(held.id)
    store.delete(held.id)
    wait_for(lambda: (e := bridge.last_of(job.id)) and e["status"] == "failed", "the failure")
    wait_for(lambda: (e := bridge.last_of(held.id)) and e["action"] == "deleted", "the deletion")
    for event in bridge.events:
        jsonschema.validate(event, schema)
        full.schemas.validate_event(SCHEMA_ID, event)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"jobs": [entry("exploded", "running")]}, schema)


def test_a_typed_jobs_entries_carry_its_type_and_the_summary_stored_with_its_outcome(
    store: Store, bridge: Bridge
) -> None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    typed = JobSpec(kind=Kind.TYPED, name="train", type="train", parameters={"epochs": 2})
    job = store.enqueue(typed, b'{"type": "train", "parameters": {}, "entry_point": "m:f"}\n')
    plain = store.enqueue(JobSpec(name="plain"), b"")
    created = wait_for(lambda: bridge.last_of(job.id), "the creation")
    assert (created["type"], created["summary"]) == ("train", None)
    (claimed,) = [c for c in claim(store, "c1", 2, 60.0) if c.job.id == job.id]
    assert started(store, job.id, claimed.job.attempt)
    summary = {"accuracy": 0.75, "epochs": 2}
    finish(store, job.id, claimed.job.attempt, Outcome(Status.SUCCEEDED, summary=summary))
    done = wait_for(
        lambda: (e := bridge.last_of(job.id)) and e["status"] == "succeeded" and e, "the end"
    )
    assert (done["type"], done["summary"]) == ("train", summary)
    assert done["summary"] == store.get(job.id).summary
    other = bridge.last_of(plain.id)
    assert (other["type"], other["summary"]) == (None, None)
    for event in bridge.events:
        jsonschema.validate(event, schema)
