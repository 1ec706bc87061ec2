"""Notebook jobs on the engine: a JobQueue, a real consumer and workers, real kernels (nbclient)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import psutil
import pytest

from jupyter_jobs import JobCancelled, JobFailed, cli
from jupyter_jobs.errors import InvalidRequest
from jupyter_jobs.models import Kind, Reason, Status
from jupyter_jobs.notebook_run import inject_parameters

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


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_cancel_and_timeout_kill_the_kernel_and_its_children(queue, tmp_path, how):
    pid_file = tmp_path / "pids"
    path = write_notebook(
        tmp_path / "slow.ipynb",
        "import os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')",
        "import time\ntime.sleep(600)",
    )
    timeout = {"timeout": 20.0} if how == "timeout" else {}
    job = queue.submit_notebook(path, **timeout)
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 120, what="the kernel ran")
    processes = [psutil.Process(int(pid)) for pid in pid_file.read_text().split()]
    if how == "cancel":
        wait_until(lambda: (p := job.refresh().progress) and p.done == 1, 30, what="cell 2")
        job.cancel()
        with pytest.raises(JobCancelled):
            job.result(timeout=60)
    else:
        with pytest.raises(JobFailed) as failed:
            job.result(timeout=120)
        assert failed.value.reason == Reason.TIMEOUT.value
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert alive == [], f"still alive after {how}: {alive}"


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
    code = cli.main([*argv, "--wait", "--json", "--db", str(db_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    record = json.loads(out)
    assert record["status"] == "succeeded" and record["kind"] == "notebook"
    assert record["options"]["notebook"]["parameters"] == {
        "n": 5,
        "s": "some text",
        "flags": [True],
    }
    nb = queue.get(record["id"]).result(timeout=10)
    assert nb.cells[1].outputs[0]["text"] == "5 'some text' [True]\n"
    code = cli.main(["run", str(path), "-p", "bad name", "1", "--db", str(db_path)])
    assert code == 1 and "'bad name'" in capsys.readouterr().err
