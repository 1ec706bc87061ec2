"""Notebook jobs on the engine: a JobQueue, a real consumer and workers, real kernels (nbclient)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from jupyter_jobs import JobCancelled, JobFailed, cli
from jupyter_jobs.errors import InvalidRequest, ResultNotReady
from jupyter_jobs.models import Kind, Reason, Status
from jupyter_jobs.notebook_run import Snapshots, clear_outputs, inject_parameters, stopped_at

from waiting import wait_until


def write_notebook(path: Path, *cells: str, parameters_cell: str | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if parameters_cell is not None:
        nb.cells.append(
            nbformat.v4.new_code_cell(parameters_cell, metadata={"tags": ["parameters"]})
        )
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


def test_parameters_are_injected_after_the_parameters_cell_and_the_result_has_outputs(
    queue, tmp_path
):
    path = write_notebook(
        tmp_path / "report.ipynb",
        "print('x is', x, 'and name is', name)",
        "x * 2",
        parameters_cell="x = 1\nname = 'default'",
    )
    job = queue.submit_notebook(path, {"x": 21, "name": "forty-two"})
    nb = job.result(timeout=120)
    assert isinstance(nb, nbformat.NotebookNode)
    assert job.record.kind is Kind.NOTEBOOK
    assert job.record.name == "report"
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert tags[0] == ["parameters"] and tags[1] == ["injected-parameters"]
    assert nb.cells[1].source == "# Parameters\nx = 21\nname = 'forty-two'"
    assert nb.cells[2].outputs[0]["text"] == "x is 21 and name is forty-two\n"
    assert nb.cells[3].outputs[0]["data"]["text/plain"] == "42"
    assert "x is 21 and name is forty-two" in job.logs()  # the cell's stdout reached the log
    progress = job.record.progress
    assert progress is not None and progress.done == progress.total == 4


def test_the_kernel_is_shut_down_gracefully_after_the_job_is_reported(queue, tmp_path):
    pid_file, goodbye = tmp_path / "kernel.pid", tmp_path / "goodbye"
    path = write_notebook(
        tmp_path / "exits.ipynb",
        "import atexit, os\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        f"atexit.register(lambda: open({str(goodbye)!r}, 'w').write('bye'))",
    )
    queue.submit_notebook(path).result(timeout=120)
    kernel = psutil.Process(int(pid_file.read_text()))
    _, alive = psutil.wait_procs([kernel], timeout=30)
    assert alive == []
    assert goodbye.read_text() == "bye"  # its exit hooks ran: a shutdown, not a kill


def test_injection_goes_to_the_top_without_a_parameters_cell_and_replaces_an_earlier_one():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("y = flag")])
    inject_parameters(nb, {"flag": True, "none": None, "items": [1, {"a": False}]})
    inject_parameters(nb, {"flag": False})
    assert [c.source for c in nb.cells] == ["# Parameters\nflag = False", "y = flag"]


def test_a_failing_cell_fails_the_job_naming_the_cell_and_keeps_the_partial_notebook(
    queue, tmp_path
):
    path = write_notebook(
        tmp_path / "broken.ipynb", "a = 1\nprint('before')", "1 / 0", "print('never')"
    )
    job = queue.submit_notebook(path)
    with pytest.raises(JobFailed) as failed:
        job.result(timeout=120)
    assert failed.value.reason == Reason.ERROR.value
    assert "cell 1" in str(failed.value) and "1 / 0" in str(failed.value)
    assert "ZeroDivisionError" in str(failed.value)
    nb = job.notebook()
    assert nb.cells[0].outputs[0]["text"] == "before\n"
    assert nb.cells[1].outputs[0]["ename"] == "ZeroDivisionError"
    assert nb.cells[2].outputs == []


def test_bad_parameter_names_and_values_are_refused_before_anything_is_stored(queue, tmp_path):
    path = write_notebook(tmp_path / "n.ipynb", "pass")
    with pytest.raises(InvalidRequest, match="'not a name'"):
        queue.submit_notebook(path, {"not a name": 1})
    with pytest.raises(InvalidRequest, match="'class'"):
        queue.submit_notebook(path, {"class": 1})
    with pytest.raises(InvalidRequest, match="set is not a JSON value"):
        queue.submit_notebook(path, {"s": {1, 2}})
    (tmp_path / "bad.ipynb").write_text(json.dumps({"cells": 3}))
    with pytest.raises(InvalidRequest, match="not a valid notebook"):
        queue.submit_notebook(tmp_path / "bad.ipynb")
    assert queue.jobs() == []


@pytest.fixture
def eager_queue(db_path):
    """A JobQueue whose jobs report every change at once (progress interval 0): a notebook's
    checkpoint then leaves the worker before the log has the output it holds."""
    from jupyter_jobs import JobQueue

    q = JobQueue(db_path)
    q.start_consumer(max_workers=2, progress_interval=0, kill_grace=2.0)
    yield q
    q.close()


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_cancel_and_timeout_kill_the_kernel_and_its_children_and_keep_the_partial_notebook(
    eager_queue, tmp_path, how
):
    pid_file = tmp_path / "pids"
    path = write_notebook(
        tmp_path / "slow.ipynb",
        "import os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "print('before')",
        "import time\nprint('started', flush=True)\ntime.sleep(600)",
        "print('never')",
    )
    timeout = {"timeout": 20.0} if how == "timeout" else {}
    job = eager_queue.submit_notebook(path, **timeout)
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 120, what="the kernel ran")
    processes = [psutil.Process(int(pid)) for pid in pid_file.read_text().split()]
    wait_until(lambda: "started" in job.logs(), 60, what="the second cell's output")
    if how == "cancel":
        job.cancel()
        with pytest.raises(JobCancelled):
            job.result(timeout=60)
    else:
        with pytest.raises(JobFailed) as failed:
            job.result(timeout=120)
        assert failed.value.reason == Reason.TIMEOUT.value
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert alive == [], f"still alive after {how}: {alive}"

    nb = job.notebook()  # what ran until the stop, the running cell marked
    assert [o.get("text") for o in nb.cells[0].outputs] == ["before\n"]
    assert nb.cells[0].execution_count == 1
    running = nb.cells[1].outputs
    assert running[0]["text"] == "started\n"
    assert running[-1]["output_type"] == "error" and running[-1]["ename"] == "JobStopped"
    assert "cells below did not run" in running[-1]["evalue"]
    assert nb.cells[2].outputs == [] and nb.cells[2].execution_count is None


def test_a_notebook_stopped_before_its_first_cell_has_no_notebook(queue, tmp_path):
    path = write_notebook(tmp_path / "held.ipynb", "print('never')")
    job = queue.submit_notebook(path, hold=True)
    job.cancel()
    with pytest.raises(ResultNotReady):
        job.notebook()


def test_snapshots_go_before_the_progress_they_hold_and_outputs_wait_for_the_interval():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    events: list[tuple[str, Any]] = []

    def send(data: bytes) -> None:
        events.append(("snapshot", json.loads(data)["cells"][0]["outputs"]))

    async def scenario() -> None:
        snapshots = Snapshots(nb, send, interval=0.05)
        snapshots.cell_started(0, lambda: events.append(("progress", 0)))
        assert [kind for kind, _ in events] == ["snapshot", "progress"]
        nb.cells[0].outputs.append(nbformat.v4.new_output("stream", text="1\n"))
        snapshots.changed()  # within the interval: later, with what there is by then
        nb.cells[0].outputs.append(nbformat.v4.new_output("stream", text="2\n"))
        snapshots.changed()
        assert len(events) == 2
        deadline = asyncio.get_running_loop().time() + 10
        while len(events) == 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert [o["text"] for o in events[2][1][:2]] == ["1\n", "2\n"]
        snapshots.changed()
        snapshots.close()  # the run ended: what was pending is not sent

    asyncio.run(scenario())
    assert len(events) == 3


def test_snapshots_mark_the_running_cell_and_keep_the_notebook_itself_unmarked():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("a = 1"), nbformat.v4.new_code_cell("b = 2")]
    )
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="old\n")]
    clear_outputs(nb)
    nb.cells[0].outputs.append(nbformat.v4.new_output("stream", text="new\n"))
    marked = nbformat.reads(stopped_at(nb, 0).decode(), as_version=4)
    nbformat.validate(marked)
    assert [o.output_type for o in marked.cells[0].outputs] == ["stream", "error"]
    assert marked.cells[0].outputs[1].ename == "JobStopped"
    assert len(nb.cells[0].outputs) == 1  # the running notebook is untouched
    assert nbformat.reads(stopped_at(nb, None).decode(), as_version=4) == nb


def test_a_failed_notebook_job_can_be_retried(queue, tmp_path):
    flag = tmp_path / "ok"
    path = write_notebook(
        tmp_path / "flaky.ipynb", f"import os\nassert os.path.exists({str(flag)!r}), 'not yet'"
    )
    job = queue.submit_notebook(path)
    with pytest.raises(JobFailed):
        job.result(timeout=120)
    flag.write_text("")
    again = job.retry()
    assert again.result(timeout=120).cells[0].outputs == []
    assert again.record.status is Status.SUCCEEDED


def test_notebook_jobs_chain_with_after(queue, tmp_path):
    out = tmp_path / "data.txt"
    first = write_notebook(tmp_path / "first.ipynb", f"open({str(out)!r}, 'w').write('42')")
    second = write_notebook(tmp_path / "second.ipynb", f"print(open({str(out)!r}).read())")
    a = queue.submit_notebook(first, hold=True)
    b = queue.submit_notebook(second, after=[a])
    assert b.record.status is Status.PENDING
    queue.release(a.id)
    assert b.result(timeout=180).cells[0].outputs[0]["text"] == "42\n"
    assert a.record.finished_at <= b.record.started_at


def test_jupyter_jobs_run_submits_a_notebook_with_parameters_and_waits(
    queue, db_path, tmp_path, capsys
):
    path = write_notebook(tmp_path / "cli.ipynb", "print(repr(n), repr(s), repr(flags))")
    argv = ["run", str(path), "-p", "n", "5", "-p", "s", "some text", "-p", "flags", "[true]"]
    argv += ["--priority", "3", "--timeout", "120", "--name", "cli run"]  # the submit options
    code = cli.main([*argv, "--wait", "--json", "--db", str(db_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    record = json.loads(out)
    assert record["status"] == "succeeded" and record["kind"] == "notebook"
    assert (record["priority"], record["timeout"], record["name"]) == (3, 120.0, "cli run")
    assert record["options"]["notebook"]["parameters"] == {
        "n": 5,
        "s": "some text",
        "flags": [True],
    }
    nb = queue.get(record["id"]).result(timeout=10)
    assert nb.cells[1].outputs[0]["text"] == "5 'some text' [True]\n"
    code = cli.main(["run", str(path), "-p", "bad name", "1", "--db", str(db_path)])
    assert code == 1 and "'bad name'" in capsys.readouterr().err
