"""Typed jobs on the engine: a JobQueue, a real consumer and worker processes, installed types
from a package in a temporary folder (its entry points), and types registered from this
process, kept in the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_jobs import JobFailed, JobQueue
from jupyter_jobs.errors import InvalidRequest, JobTypeConflict, JobTypeNotFound
from jupyter_jobs.job_types import REGISTERED
from jupyter_jobs.models import Kind, Reason, Status


def test_an_installed_type_runs_in_a_worker_with_a_json_result_and_a_summary(
    installed, queue
) -> None:
    job = queue.submit_typed("train", {"epochs": 4, "model": "tree"}, priority=2)
    assert job.result(timeout=120) == {"accuracy": 0.8, "lr": 0.1, "model": "tree"}
    record = job.refresh()
    assert (record.kind, record.type, record.name) == (Kind.TYPED, "train", "train")
    assert record.parameters == {"epochs": 4, "model": "tree"}
    assert record.priority == 2
    assert record.summary == {"accuracy": 0.8, "epochs": 4}
    assert record.to_json()["summary"] == {"accuracy": 0.8, "epochs": 4}
    assert record.progress is not None and record.progress.done == record.progress.total == 4
    assert "trained a tree model for 4 epochs" in job.logs()
    # Apps read the result without pickles: it is stored as JSON.
    assert json.loads(queue.store.result(job.id)) == job.result()


def test_bad_parameters_are_refused_by_name_and_nothing_is_stored(installed, queue) -> None:
    with pytest.raises(InvalidRequest) as caught:
        queue.submit_typed("train", {"epochs": 0, "lr": -1, "layers": 3})
    assert set(caught.value.detail["parameters"]) == {
        "parameters.epochs",
        "parameters.lr",
        "parameters.layers",
    }
    with pytest.raises(InvalidRequest, match=r"parameters\.epochs: is required"):
        queue.submit_typed("train")
    assert queue.store.stats()["total"] == 0


def test_an_unknown_type_is_refused_naming_the_known_ones(installed, queue) -> None:
    with pytest.raises(JobTypeNotFound, match=r"no job type named 'trian' \(job types: .*train"):
        queue.submit_typed("trian", {"epochs": 1})


def test_a_value_json_would_change_comes_back_as_itself_through_a_pickle(installed, queue) -> None:
    job = queue.submit_typed("explain", {"rows": 3}, name="why")
    assert job.result(timeout=120) == (3, {"a", "b"})
    assert queue.store.result(job.id)[0] == 0x80  # a pickle's first byte
    assert job.record.name == "why" and job.record.summary is None


def test_a_failing_run_fails_the_job_with_its_error_and_traceback(installed, queue) -> None:
    job = queue.submit_typed("crash", {"message": "no data"})
    with pytest.raises(JobFailed) as caught:
        job.result(timeout=120)
    assert (caught.value.type, caught.value.remote_message) == ("ValueError", "no data")
    assert "raise ValueError(message)" in caught.value.remote_traceback
    assert job.record.reason is Reason.ERROR


def test_a_summarize_that_fails_leaves_the_job_succeeded_and_says_why(installed, queue) -> None:
    job = queue.submit_typed("noisy")
    assert job.result(timeout=120) == "done"
    assert job.refresh().status is Status.SUCCEEDED and job.record.summary is None
    assert "job type 'noisy': no summary: summarize returned a set" in job.logs()


def test_an_installed_type_that_cannot_be_imported_is_listed_and_refused(installed, queue):
    broken = queue.get_job_type("broken")
    assert "cannot be imported" in broken.error
    with pytest.raises(InvalidRequest, match="job type 'broken' cannot be loaded"):
        queue.submit_typed("broken")


def scaled(x: int, factor: int = 2) -> dict:
    return {"value": x * factor}


def test_a_registered_type_outlives_its_process_and_its_jobs_keep_their_copy(
    db_path: Path, tmp_path: Path
) -> None:
    offset = 1000  # a global the run function uses: saved with it, by value

    def shifted(x: int) -> int:
        return x + offset

    with JobQueue(db_path) as q:
        stored = q.register_type(shifted, "shift", summarize=lambda job: {"was": job.result})
        assert (stored.source, stored.has_summarize) == (REGISTERED, True)
        assert stored.cwd == str(Path.cwd())
        assert stored.schema["required"] == ["x"]
        held = q.submit_typed("shift", {"x": 1}, hold=True)
        q.register_type(scaled, "shift")  # the name again: replaced
        assert q.get_job_type("shift").schema["properties"]["factor"] == {
            "type": "integer",
            "default": 2,
        }
    with JobQueue(db_path) as q:  # another process, as far as the store can tell
        q.start_consumer(max_workers=1)
        assert [t.name for t in q.job_types() if t.source == REGISTERED] == ["shift"]
        assert q.submit_typed("shift", {"x": 5}).result(timeout=120) == {"value": 10}
        q.delete_job_type("shift")
        with pytest.raises(JobTypeNotFound):
            q.get_job_type("shift")
        released = q.release(held.id)  # submitted before: it runs the type it was given
        assert released.result(timeout=120) == 1001
        assert released.refresh().summary == {"was": 1001}


def test_an_installed_name_is_not_a_registered_types_to_take_or_delete(installed, queue):
    with pytest.raises(JobTypeConflict, match="'train' is installed"):
        queue.register_type(scaled, "train")
    with pytest.raises(JobTypeConflict, match="uninstall its package"):
        queue.delete_job_type("train")
    with pytest.raises(JobTypeNotFound):
        queue.delete_job_type("nothing")


def test_a_typed_spec_names_its_type_and_other_specs_do_not(queue) -> None:
    from jupyter_jobs.models import JobSpec

    with pytest.raises(InvalidRequest, match="needs the name of its job type"):
        JobSpec(kind=Kind.TYPED).validate()
    with pytest.raises(InvalidRequest, match='are for jobs of kind "typed"'):
        JobSpec(kind=Kind.FUNCTION, type="train").validate()
    with pytest.raises(InvalidRequest, match="parameters must be an object"):
        JobSpec(kind=Kind.TYPED, type="t", parameters=[1]).validate()  # type: ignore[arg-type]
