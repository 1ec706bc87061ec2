"""Schedules of typed jobs, and schedules whose runs go to a result channel, on the engine: a
JobQueue on a real SQLite file, a real consumer with a clock the test moves, worker processes,
installed types from a package in a temporary folder and a type registered from this process."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jupyter_jobs import JobQueue
from jupyter_jobs.errors import InvalidRequest, JobTypeNotFound
from jupyter_jobs.job_types import decode_payload
from jupyter_jobs.models import Kind, Status
from jupyter_jobs.schedules import ScheduleSpec, schema_declares
from jupyter_jobs.store import Store

import jobfuncs
from waiting import wait_until


class Clock:
    """The time schedules fire by, moved by the test."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def stored_payload(db_path: Path, schedule_id: int) -> bytes:
    with Store(db_path) as store, store._db.read() as conn:
        (payload,) = conn.execute(
            "SELECT payload FROM schedules WHERE id = ?", (schedule_id,)
        ).fetchone()
    return bytes(payload)


def test_a_typed_schedule_runs_its_type_and_its_runs_arrive_in_its_channel(installed, db_path):
    clock = Clock(1000.0)
    with JobQueue(db_path) as queue:
        made = queue.schedule(
            job_type="train", parameters={"epochs": 2}, every=60, channel="nightly",
            overlap="queue", priority=3,
        )  # fmt: skip
        assert made.name == "train"
        assert made.target == {"kind": "typed", "type": "train", "parameters": {"epochs": 2}}
        assert made.job == {"channel": "nightly", "priority": 3}
        # the payload names the entry point; no run function's bytes, nothing pickled
        built = decode_payload(stored_payload(db_path, made.id))
        assert (built.entry_point, built.parameters, built.functions) == (
            "mltypes:train", {"epochs": 2}, b"",
        )  # fmt: skip
        clock.t = made.next_run - 1
        queue.start_consumer(max_workers=1, clock=clock)
        first = made.next_run
        clock.t = first + 61  # two times due: catch-up "latest" fires the latest only
        got = list(queue.results("nightly", timeout=120, count=1))
        (job,) = got
        record = job.record
        assert (record.kind, record.type, record.parameters) == (Kind.TYPED, "train", {"epochs": 2})
        assert (record.schedule_id, record.scheduled_time) == (made.id, first + 60)
        assert record.channel == "nightly" and record.priority == 3
        assert record.status is Status.SUCCEEDED and record.summary == {
            "accuracy": 0.6667,
            "epochs": 2,
        }
        assert job.result() == {"accuracy": 0.6667, "lr": 0.1, "model": "linear"}
        clock.t = first + 121
        (later,) = list(queue.results("nightly", timeout=120, count=1))
        assert later.record.scheduled_time == first + 120 and later.id != job.id
        # the type filter finds the runs, with counts of that type only
        queue.submit(jobfuncs.add, 1, 2).result(timeout=60)
        assert {j.id for j in queue.jobs(type="train")} == {job.id, later.id}


def test_a_typed_run_receives_its_scheduled_time_when_its_type_declares_it(db_path):
    paris = ZoneInfo("Europe/Paris")
    with JobQueue(db_path) as queue:
        queue.register_type(jobfuncs.stamped)  # its schema, from the signature, declares it
        assert schema_declares(queue.get_job_type("stamped").schema, "scheduled_time")
        made = queue.schedule(
            job_type="stamped", parameters={"region": "EU", "scheduled_time": "given"},
            cron="0 8 * * *", timezone="Europe/Paris", channel="daily",
        )  # fmt: skip
        # required by the schema, yet each run's own: not a parameter the schedule keeps
        assert made.target["parameters"] == {"region": "EU"}
        built = decode_payload(stored_payload(db_path, made.id))
        assert (built.parameters, built.takes_scheduled_time) == ({"region": "EU"}, True)
        clock = Clock(made.next_run - 1)
        queue.start_consumer(max_workers=1, clock=clock)
        clock.t = made.next_run + 1
        (job,) = list(queue.results("daily", timeout=120, count=1))
        when = job.record.parameters["scheduled_time"]
        assert job.record.parameters == {"region": "EU", "scheduled_time": when}
        assert job.result() == {"region": "EU", "days": 1, "scheduled_time": when}  # received
        parsed = datetime.fromisoformat(when)  # ISO 8601, the run's time in Paris
        assert parsed.timestamp() == job.record.scheduled_time == made.next_run
        assert parsed.strftime("%H:%M") == "08:00"
        assert parsed.utcoffset() == datetime.fromtimestamp(made.next_run, paris).utcoffset()
        for day, stamp in [
            (datetime(2027, 7, 5, tzinfo=paris), "2027-07-05T08:00:00+02:00"),  # summer time
            (datetime(2027, 12, 6, tzinfo=paris), "2027-12-06T08:00:00+01:00"),
        ]:
            clock.t = day.replace(hour=8, second=1).timestamp()
            (later,) = list(queue.results("daily", timeout=120, count=1))
            assert later.result() == {"region": "EU", "days": 1, "scheduled_time": stamp}
            assert later.record.parameters["scheduled_time"] == stamp


def test_a_type_that_does_not_declare_it_gets_no_scheduled_time(db_path):
    clock = Clock(1000.0)
    with JobQueue(db_path) as queue:
        queue.register_type(jobfuncs.add, "adder")
        made = queue.schedule(job_type="adder", parameters={"a": 1, "b": 2}, every=60)
        assert decode_payload(stored_payload(db_path, made.id)).takes_scheduled_time is False
        queue.start_consumer(max_workers=1, clock=clock)
        clock.t = made.next_run + 1
        job = wait_until(lambda: queue.jobs(), timeout=30, what="the scheduled run exists")[0]
        assert job.result(timeout=120) == 3
        assert job.refresh().parameters == {"a": 1, "b": 2}


def test_a_scheduled_time_the_type_cannot_take_is_refused_when_the_schedule_is_made(db_path):
    schema = {
        "type": "object",
        "properties": {"region": {"type": "string"}, "scheduled_time": {"type": "integer"}},
    }
    with JobQueue(db_path) as queue:
        queue.register_type(jobfuncs.stamped, "epoch_stamped", schema=schema)
        with pytest.raises(InvalidRequest) as caught:
            queue.schedule(job_type="epoch_stamped", parameters={"region": "EU"}, every=60)
        (problem,) = caught.value.detail["parameters"].items()
        assert problem[0] == "parameters.scheduled_time"
        assert "is not of type 'integer'" in problem[1]
        assert queue.schedules() == []


def test_bad_parameters_are_refused_by_name_when_the_schedule_is_made(installed, db_path):
    with JobQueue(db_path) as queue:
        with pytest.raises(InvalidRequest) as caught:
            queue.schedule(job_type="train", parameters={"epochs": 99, "depth": 2}, every=60)
        assert caught.value.detail["parameters"] == {
            "parameters.epochs": "99 is greater than the maximum of 50",
            "parameters.depth": "is not a parameter of this type",
        }
        assert "parameters.epochs: 99 is greater than the maximum of 50" in str(caught.value)
        with pytest.raises(JobTypeNotFound, match=r"'trian' \(job types: .*train"):
            queue.schedule(job_type="trian", every=60)
        with pytest.raises(InvalidRequest, match=r"target\.type: job type name '1x'"):
            queue.schedule(job_type="1x", every=60)
        with pytest.raises(InvalidRequest, match="channel"):
            queue.schedule(job_type="train", parameters={"epochs": 1}, every=60, channel="a/b")
        with pytest.raises(TypeError, match=r"a target .* or a job_type"):
            queue.schedule(jobfuncs.add, job_type="train", every=60)
        assert queue.schedules() == []


def test_a_registered_types_schedule_runs_where_the_type_was_registered(db_path, tmp_path):
    clock = Clock(1000.0)
    with JobQueue(db_path) as queue:
        queue.register_type(jobfuncs.add, "adder")
        made = queue.schedule(job_type="adder", parameters={"a": 2, "b": 40}, every=60)
        assert made.job["cwd"] == str(Path.cwd())  # the registering process's, as a submit's
        assert decode_payload(stored_payload(db_path, made.id)).functions  # a copy of the bytes
        queue.delete_job_type("adder")  # a schedule keeps its copy, as a submitted job does
        clock.t = made.next_run - 1
        queue.start_consumer(max_workers=1, clock=clock)
        clock.t = made.next_run + 1
        job = wait_until(lambda: queue.jobs(), timeout=30, what="the scheduled run exists")[0]
        assert job.result(timeout=120) == 42
        assert job.refresh().type == "adder"


def test_a_changed_typed_target_is_checked_again_and_rebuilt(installed, db_path):
    with JobQueue(db_path) as queue:
        made = queue.schedule(job_type="train", parameters={"epochs": 2}, every=60)
        spec = made.merged({"target": {"kind": "typed", "type": "train", "parameters": {}}})
        with pytest.raises(InvalidRequest, match=r"parameters\.epochs: is required"):
            queue.backend.types.schedule_payload(spec)
        spec = made.merged({"target": {"kind": "typed", "type": "train",
                                       "parameters": {"epochs": 5}}})  # fmt: skip
        payload = queue.backend.types.schedule_payload(spec)
        # the store takes a new typed target only with the payload built for it
        with pytest.raises(InvalidRequest, match="needs its payload"):
            queue.store.update_schedule(made.id, {"target": spec.target})
        other = made.merged({"target": {"kind": "typed", "type": "train",
                                        "parameters": {"epochs": 7}}}).target  # fmt: skip
        with pytest.raises(InvalidRequest, match="not that of this job type and parameters"):
            queue.store.update_schedule(made.id, {"target": other}, payload)
        with pytest.raises(InvalidRequest, match="kind of target cannot change"):
            queue.store.update_schedule(
                made.id, {"target": {"kind": "notebook", "path": "x.ipynb"}}, b"{}"
            )
        changed = queue.store.update_schedule(made.id, {"target": spec.target}, payload)
        assert changed.target["parameters"] == {"epochs": 5}
        assert decode_payload(stored_payload(db_path, made.id)).parameters == {"epochs": 5}


def test_a_function_schedules_runs_arrive_in_its_channel_once_per_reader(db_path):
    clock = Clock(1000.0)
    with JobQueue(db_path) as queue:
        made = queue.schedule(jobfuncs.add, every=60, parameters={"a": 1, "b": 1}, channel="fan")
        assert made.job["channel"] == "fan"
        clock.t = made.next_run - 1
        queue.start_consumer(max_workers=1, clock=clock)
        clock.t = made.next_run + 1
        (first,) = list(queue.results("fan", reader="a", timeout=60, count=1))
        assert first.result() == 2 and first.record.schedule_id == made.id
        first.ack()
        (same,) = list(queue.results("fan", reader="b", timeout=60, count=1))
        assert same.id == first.id
        assert list(queue.results("fan", reader="a", timeout=0)) == []


def test_a_typed_target_spec_is_checked_before_any_type_is_asked(db_path):
    for target, named in [
        ({"kind": "typed"}, "target.type"),
        ({"kind": "typed", "type": "t", "parameters": []}, "target.parameters"),
        ({"kind": "typed", "type": "t", "path": "x.ipynb"}, "unknown field(s) in target: path"),
        ({"kind": "typed", "type": "t", "parameters": {"x": float("nan")}}, "must be JSON"),
    ]:
        with pytest.raises(InvalidRequest, match=re.escape(named)):
            ScheduleSpec(target=target, every=60).validate()
    # parameter names are the schema's to judge, not Python's (unlike a notebook's)
    spec = ScheduleSpec(target={"kind": "typed", "type": "t", "parameters": {"a-b": 1}}, every=60)
    spec.validate()
    assert spec.name == "t"
