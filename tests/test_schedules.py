"""Schedules: the rules (cron across DST, intervals, catch-up, overlap) on real SQLite files, and
runs fired by real consumers, with a clock the test moves."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jupyter_jobs import JobQueue
from jupyter_jobs.errors import InvalidRequest, ScheduleNotFound
from jupyter_jobs.models import JobUser, Kind, Status
from jupyter_jobs.schedules import (
    MAX_CATCH_UP,
    ScheduleSpec,
    Timing,
    declares_parameter,
    describe,
    preview,
    run_parameters,
    schema_declares,
)
from jupyter_jobs.store import Store

import jobfuncs
from waiting import wait_until

PARIS = ZoneInfo("Europe/Paris")


def paris(*args: int) -> float:
    return datetime(*args, tzinfo=PARIS).timestamp()


def wall(t: float) -> str:
    return datetime.fromtimestamp(t, PARIS).isoformat()


class Clock:
    """The time schedules fire by, moved by the test."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def function_schedule(store: Store, at: float, **fields) -> int:
    """A stored `jobfuncs.add` schedule; returns its id."""
    from jupyter_jobs.payload import function_payload

    spec = ScheduleSpec(target={"kind": "function", "name": "add"}, **fields)
    payload = function_payload(jobfuncs.add, (), {"a": 2, "b": 3})
    return store.add_schedule(spec, "test", payload, at=at).id


def runs(store: Store, schedule_id: int) -> list:
    return sorted(store.schedule_runs(schedule_id, limit=500).jobs, key=lambda j: j.scheduled_time)


# --- the rules ----------------------------------------------------------------------------------


def test_a_daily_cron_fires_once_a_day_across_both_paris_dst_changes():
    daily = Timing("30 2 * * *", None, "Europe/Paris")
    spring = [wall(t) for t in daily.upcoming(paris(2026, 3, 28, 12), 2)]
    # 02:30 does not exist on 29 March: it fires at the first instant after the gap
    assert spring == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    autumn = [wall(t) for t in daily.upcoming(paris(2026, 10, 24, 12), 3)]
    # 02:30 happens twice on 25 October: one run, at the first
    assert autumn == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_an_hourly_step_cron_keeps_real_time_through_the_repeated_hour():
    half_hourly = Timing("*/30 * * * *", None, "Europe/Paris")
    times = half_hourly.upcoming(paris(2026, 10, 25, 1, 50), 5)
    assert [b - a for a, b in itertools.pairwise(times)] == [1800.0] * 4
    assert wall(times[2]) == "2026-10-25T02:00:00+01:00"


def test_morning_cron_keeps_its_wall_time_after_the_spring_change():
    morning = Timing("0 8 * * 1-5", None, "Europe/Paris")
    times = morning.upcoming(paris(2026, 3, 26, 12), 3)  # Thu -> Fri, (weekend), Mon
    assert [wall(t) for t in times] == [
        "2026-03-27T08:00:00+01:00",
        "2026-03-30T08:00:00+02:00",
        "2026-03-31T08:00:00+02:00",
    ]


def test_preview_describes_in_words_and_lists_three_times():
    answer = preview("0 8 * * 1-5", None, "Europe/Paris", paris(2026, 3, 26, 12))
    assert "08:00" in answer["description"] and "Monday" in answer["description"]
    assert len(answer["next"]) == 3
    assert describe(None, 3600) == "Every hour"
    assert describe(None, 7200) == "Every 2 hours"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"every": 10}, "every"),
        ({"cron": "* * * * *", "every": 60}, "cron, every"),
        ({}, "cron, every"),
        ({"every": 60, "timezone": "Mars/Olympus"}, "timezone"),
        ({"every": 60, "overlap": "sometimes"}, "overlap"),
        ({"every": 60, "catch_up": "maybe"}, "catch_up"),
        ({"every": 60, "job": {"after": [1]}}, "job"),
        ({"every": 60, "job": {"retries": -1}}, "job"),
        ({"every": 60, "surprise": 1}, "surprise"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(fields, named):
    data = {"target": {"kind": "notebook", "path": "a.ipynb"}, **fields}
    with pytest.raises(InvalidRequest, match=named):
        ScheduleSpec.from_json(data)


def test_a_bad_parameter_name_is_refused():
    with pytest.raises(InvalidRequest, match=r"target\.parameters"):
        ScheduleSpec.from_json(
            {
                "target": {"kind": "notebook", "path": "a.ipynb", "parameters": {"1x": 1}},
                "every": 60,
            }
        )


# --- firing in the store -----------------------------------------------------------------------


def test_a_cron_schedule_fires_at_paris_wall_times_across_the_spring_change(db_path):
    with Store(db_path) as store:
        start = paris(2026, 3, 27, 12)
        sid = function_schedule(
            store, start, cron="30 2 * * *", timezone="Europe/Paris", overlap="queue"
        )
        for day in (28, 29, 30):
            store.fire_schedules(paris(2026, 3, day, 4))
        fired = runs(store, sid)
    assert [wall(j.scheduled_time) for j in fired] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    assert all(j.kind is Kind.FUNCTION and j.name == "add" and j.owner == "test" for j in fired)


def test_an_interval_schedule_fires_every_period_and_not_before(db_path):
    with Store(db_path) as store:
        sid = function_schedule(store, 1000.0, every=60, overlap="queue")
        assert store.get_schedule(sid).next_run == 1060.0
        assert store.fire_schedules(1059.0) == []
        assert [j.scheduled_time for j in store.fire_schedules(1060.5)] == [1060.0]
        assert store.fire_schedules(1061.0) == []
        assert [j.scheduled_time for j in store.fire_schedules(1125.0)] == [1120.0]
        assert store.get_schedule(sid).next_run == 1180.0
        last = store.get_schedule(sid).last_run
    assert last is not None and last["scheduled_time"] == 1120.0 and last["status"] == "queued"


def test_overlap_skip_creates_no_run_while_the_previous_one_waits(db_path):
    with Store(db_path) as store:
        skip = function_schedule(store, 1000.0, every=60, overlap="skip")
        queue = function_schedule(store, 1000.0, every=60, overlap="queue")
        for t in (1060.0, 1120.0, 1180.0):
            store.fire_schedules(t)
        assert len(runs(store, skip)) == 1
        assert len(runs(store, queue)) == 3
        first = runs(store, skip)[0]
        store.request_cancel(first.id)  # the previous run is over: the next time fires
        store.fire_schedules(1240.0)
        assert [j.scheduled_time for j in runs(store, skip)] == [1060.0, 1240.0]


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [("latest", [7000.0]), ("none", []), ("all", [1000.0 + 600 * k for k in range(1, 11)])],
)
def test_catch_up_after_a_stop(db_path, catch_up, expected):
    with Store(db_path) as store:
        sid = function_schedule(store, 1000.0, every=600, overlap="queue", catch_up=catch_up)
    # nothing fired for ten periods: the store is reopened 100 s after the tenth
    with Store(db_path) as store:
        store.fire_schedules(7100.0)
        assert [j.scheduled_time for j in runs(store, sid)] == expected
        assert store.get_schedule(sid).next_run == 7600.0


def test_catch_up_all_is_bounded(db_path):
    with Store(db_path) as store:
        sid = function_schedule(store, 0.0, every=60, overlap="queue", catch_up="all")
        store.fire_schedules(60.0 * 1000 + 1)
        fired = runs(store, sid)
    assert len(fired) == MAX_CATCH_UP
    assert fired[-1].scheduled_time == 60.0 * 1000  # the latest ones


def test_catch_up_none_still_fires_a_time_that_is_just_due(db_path):
    with Store(db_path) as store:
        sid = function_schedule(store, 1000.0, every=60, catch_up="none")
        store.fire_schedules(1061.0)
        assert [j.scheduled_time for j in runs(store, sid)] == [1060.0]


def test_pause_stops_runs_and_resume_skips_what_was_missed(db_path):
    with Store(db_path) as store:
        sid = function_schedule(store, 1000.0, every=60, overlap="queue", catch_up="all")
        paused = store.pause_schedule(sid)
        assert paused.paused and paused.next_run is None
        store.fire_schedules(1500.0)
        assert runs(store, sid) == []
        resumed = store.resume_schedule(sid, at=1500.0)
        assert not resumed.paused and resumed.next_run == 1540.0
        store.fire_schedules(1541.0)
        assert [j.scheduled_time for j in runs(store, sid)] == [1540.0]


def test_a_schedule_survives_a_restart_of_its_store(db_path):
    with Store(db_path) as store:
        sid = function_schedule(store, 1000.0, every=3600, name="hourly", overlap="queue")
    with Store(db_path) as store:
        again = store.get_schedule(sid)
        assert (again.name, again.every, again.next_run) == ("hourly", 3600.0, 4600.0)
        assert [j.scheduled_time for j in store.fire_schedules(4601.0)] == [4600.0]


def test_two_stores_firing_at_once_create_each_time_once(db_path):
    with Store(db_path) as store:
        sid = function_schedule(store, 1000.0, every=60, overlap="queue", catch_up="all")
    stores = [Store(db_path) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    fired: list[list] = []

    def fire(store: Store) -> None:
        barrier.wait(10)
        fired.append(store.fire_schedules(1000.0 + 60 * 20 + 1))

    threads = [threading.Thread(target=fire, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        times = [j.scheduled_time for j in runs(stores[0], sid)]
        assert times == [1000.0 + 60 * k for k in range(1, 21)]
        assert sorted(len(f) for f in fired) == [0, 0, 0, 20]
    finally:
        for store in stores:
            store.close()


def test_the_database_refuses_a_scheduled_time_twice(db_path):
    with Store(db_path) as store:
        sid = function_schedule(store, 1000.0, every=60)
        (job,) = store.fire_schedules(1061.0)
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO jobs (name, kind, status, created_at, schedule_id, scheduled_time) "
                "VALUES ('x', 'function', 'queued', 0, ?, ?)",
                (sid, job.scheduled_time),
            )
    finally:
        conn.close()


def test_unknown_schedules_are_not_found(db_path):
    with Store(db_path) as store:
        for verb in (store.get_schedule, store.pause_schedule, store.delete_schedule):
            with pytest.raises(ScheduleNotFound, match="no schedule with id 7"):
                verb(7)


def test_deleting_a_schedule_keeps_its_runs(db_path):
    with Store(db_path) as store:
        sid = function_schedule(store, 1000.0, every=60)
        (job,) = store.fire_schedules(1061.0)
        store.delete_schedule(sid)
        assert store.schedules() == []
        assert store.get(job.id).schedule_id == sid
        assert store.fire_schedules(5000.0) == []


def test_a_schedules_runs_belong_to_the_user_who_made_it(db_path):
    from jupyter_jobs.payload import function_payload

    with Store(db_path) as store:
        spec = ScheduleSpec(target={"kind": "function", "name": "add"}, every=60)
        payload = function_payload(jobfuncs.add, (), {"a": 2, "b": 3})
        alice = JobUser("alice", "Alice Liddell")
        made = store.add_schedule(spec, "nb.ipynb", payload, at=1000.0, user=alice)
        function_schedule(store, 1000.0, every=60)  # nobody's
        assert (made.user, made.to_json()["user_display_name"]) == ("alice", "Alice Liddell")
        assert [s.id for s in store.schedules(user="alice")] == [made.id]
        fired = store.fire_schedules(1061.0)
        assert sorted((j.schedule_id, j.user, j.user_display_name) for j in fired) == [
            (made.id, "alice", "Alice Liddell"),
            (made.id + 1, "", ""),
        ]
        assert store.query(user="alice").jobs[0].schedule_id == made.id


# --- notebooks ----------------------------------------------------------------------------------


def notebook(parameters_source: str | None) -> dict:
    cells = [{"cell_type": "code", "metadata": {}, "source": "print(1)", "outputs": []}]
    if parameters_source is not None:
        cells.insert(
            0,
            {
                "cell_type": "code",
                "metadata": {"tags": ["parameters"]},
                "source": parameters_source,
                "outputs": [],
            },
        )
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_declared_parameters_are_found_in_the_tagged_cell():
    assert declares_parameter(notebook("x = 1\nscheduled_time = None"), "scheduled_time")
    assert declares_parameter(notebook("scheduled_time: str = ''"), "scheduled_time")
    assert not declares_parameter(notebook("x = 1"), "scheduled_time")
    assert not declares_parameter(notebook(None), "scheduled_time")


def test_a_job_type_declares_a_parameter_by_naming_it_in_its_schemas_properties():
    named = {"type": "object", "properties": {"scheduled_time": {"type": "string"}}}
    assert schema_declares(named, "scheduled_time")
    assert not schema_declares({"type": "object"}, "scheduled_time")  # open: takes, not asks
    assert not schema_declares({"type": "object", "properties": {"day": {}}}, "scheduled_time")
    given = {"scheduled_time": "mine", "day": 1}
    assert run_parameters(given, False, 0.0, "UTC") == given
    assert run_parameters(given, True, 0.0, "Asia/Tokyo") == {
        "scheduled_time": "1970-01-01T09:00:00+09:00",
        "day": 1,
    }


@pytest.mark.parametrize("declared", [True, False])
def test_a_notebook_run_gets_its_scheduled_time_when_it_declares_it(tmp_path, declared):
    path = tmp_path / "report.ipynb"
    source = "day = 'x'\nscheduled_time = None" if declared else "day = 'x'"
    path.write_text(json.dumps(notebook(source)))
    with JobQueue(tmp_path / "jobs.db") as queue:
        schedule = queue.schedule(
            path,
            cron="0 8 * * *",
            timezone="Europe/Paris",
            parameters={"day": "monday"},
            priority=3,
        )
        assert schedule.name == "report" and schedule.job == {"priority": 3}
        (job,) = queue.store.fire_schedules(paris(2027, 1, 5, 9))
        with queue.store._db.read() as conn:
            (payload,) = conn.execute(
                "SELECT data FROM blobs WHERE job_id = ? AND kind = 'payload'", (job.id,)
            ).fetchone()
    assert job.kind is Kind.NOTEBOOK and job.priority == 3
    assert job.options["notebook"]["path"] == str(path)
    body = json.loads(payload)
    assert body["notebook"]["cells"][1]["source"] == "print(1)"
    expected = {"day": "monday"}
    if declared:
        expected["scheduled_time"] = "2027-01-05T08:00:00+01:00"
    assert body["parameters"] == expected


def test_a_missing_notebook_is_refused_at_once(tmp_path):
    with JobQueue(tmp_path / "jobs.db") as queue, pytest.raises(InvalidRequest, match=r"path"):
        queue.schedule(tmp_path / "nope.ipynb", every=60)


# --- real consumers -----------------------------------------------------------------------------


def test_a_consumer_runs_a_function_schedule_when_its_clock_reaches_it(db_path):
    clock = Clock(1000.0)
    with JobQueue(db_path) as queue:
        schedule = queue.schedule(jobfuncs.add, every=60, parameters={"a": 2, "b": 5})
        clock.t = schedule.next_run - 1
        queue.start_consumer(max_workers=1, clock=clock)
        clock.t = schedule.next_run + 1
        job = wait_until(lambda: queue.jobs(), timeout=30, what="the scheduled run exists")[0]
        assert job.result(timeout=60) == 7
        record = queue.store.get(job.id)
        assert record.schedule_id == schedule.id
        assert record.scheduled_time == schedule.next_run
        assert queue.get_schedule(schedule.id).last_run["status"] == Status.SUCCEEDED.value


def test_two_consumers_on_one_database_fire_each_time_once(db_path):
    clock = Clock(0.0)
    with JobQueue(db_path) as first, JobQueue(db_path) as second:
        schedule = first.schedule(jobfuncs.add, every=60, parameters={"a": 1}, overlap="queue")
        first.start_consumer(max_workers=1, clock=clock)
        second.start_consumer(max_workers=1, clock=clock)
        first_time = schedule.next_run
        for k in range(1, 4):
            clock.t = first_time + 60 * (k - 1) + 1
            wait_until(
                lambda k=k: len(first.store.schedule_runs(schedule.id).jobs) >= k,
                timeout=30,
                what=f"run {k}",
            )
        ran = wait_until(
            lambda: (
                [
                    j
                    for j in first.store.schedule_runs(schedule.id).jobs
                    if j.status is Status.SUCCEEDED
                ]
                if all(j.finished for j in first.store.schedule_runs(schedule.id).jobs)
                else None
            ),
            timeout=60,
            what="the runs finished",
        )
    assert sorted(j.scheduled_time for j in ran) == [first_time + 60 * k for k in range(3)]


def test_schedule_handles_from_the_queue(db_path):
    with JobQueue(db_path) as queue:
        made = queue.schedule(jobfuncs.add, cron="*/5 * * * *", timezone="UTC", name="five")
        assert [s.id for s in queue.schedules()] == [made.id]
        assert queue.pause_schedule(made.id).paused
        assert not queue.resume_schedule(made.id).paused
        queue.delete_schedule(made.id)
        assert queue.schedules() == []


def test_a_function_schedule_keeps_its_target_in_the_store(db_path: Path):
    with JobQueue(db_path) as queue:
        made = queue.schedule(jobfuncs.add, every=120, parameters={"a": 1})
    assert made.target == {"kind": "function", "name": "add"}
    assert made.to_json()["every"] == 120.0
