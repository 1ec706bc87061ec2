"""Notebook jobs over REST against a real `jupyter server`: submit by path and by content,
400 for bad parameters, the executed notebook as JSON and as sandboxed HTML."""

from __future__ import annotations

from typing import Any

import nbformat
import psutil
import pytest

from servers import RunningServer, poll


@pytest.fixture
def server(shared_jupyter_server: RunningServer) -> RunningServer:
    return shared_jupyter_server


def notebook(*cells: str, parameters: str | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


def submit(server: RunningServer, request: dict[str, Any], **spec: Any) -> Any:
    body = {"spec": {"kind": "notebook", **spec}, "notebook": request}
    return server.api("POST", "jobs/api/jobs", json=body)


def finished(server: RunningServer, job_id: int) -> dict[str, Any]:
    return poll(lambda: (job := server.job(job_id))["finished_at"] and job, 120, "the job ended")


def test_a_notebook_submitted_by_path_runs_with_its_parameters_and_is_served(server):
    folder = server.home.root_dir / "reports"
    folder.mkdir(exist_ok=True)
    nbformat.write(
        notebook("import os\nprint(greeting, os.getcwd())", parameters="greeting = 'hi'"),
        folder / "daily.ipynb",
    )
    response = submit(server, {"path": "reports/daily.ipynb", "parameters": {"greeting": "hello"}})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["kind"] == "notebook" and job["name"] == "daily"
    assert job["options"]["notebook"] == {
        "path": "reports/daily.ipynb",
        "parameters": {"greeting": "hello"},
        "kernel_name": None,
    }
    (folder / "daily.ipynb").unlink()  # a snapshot: the file is not needed any more
    done = finished(server, job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"]["done"] == done["progress"]["total"] == 3  # injected cell too

    answer = server.api("GET", f"jobs/api/jobs/{job['id']}/notebook")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/x-ipynb+json")
    executed = nbformat.reads(answer.text, as_version=4)
    assert executed.cells[2].outputs[0]["text"] == f"hello {folder}\n"

    html = server.api("GET", f"jobs/api/jobs/{job['id']}/notebook", params={"format": "html"})
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert html.headers["Content-Security-Policy"].startswith("sandbox")
    assert "hello" in html.text and "<html" in html.text


def test_bad_parameter_names_missing_notebooks_and_bad_content_are_refused(server):
    nb = notebook("pass")
    bad_name = submit(server, {"content": nb, "parameters": {"not-a-name": 1}})
    assert bad_name.status_code == 400
    assert "'not-a-name'" in bad_name.json()["message"]
    missing = submit(server, {"path": "nowhere/none.ipynb"})
    assert missing.status_code == 404 and "nowhere/none.ipynb" in missing.json()["message"]
    broken = submit(server, {"content": {"cells": "no"}})
    assert broken.status_code == 400 and "not a valid notebook" in broken.json()["message"]
    both = submit(server, {"content": nb, "path": "x.ipynb"})
    assert both.status_code == 400
    # A payload sent for kind "notebook" stays opaque to the server; the worker reads it as
    # JSON, never unpickles it, and fails the job.
    pickle = server.api(
        "POST", "jobs/api/jobs", json={"spec": {"kind": "notebook"}, "payload": "gARLAS4="}
    )
    assert pickle.status_code == 201
    done = finished(server, pickle.json()["id"])
    assert done["status"] == "failed" and done["reason"] == "payload", done


def test_a_failed_notebook_job_serves_its_partial_notebook_and_none_exists_before(server):
    response = submit(server, {"content": notebook("print('ran')", "raise ValueError('bad')")})
    job = response.json()
    early = server.api("GET", f"jobs/api/jobs/{job['id']}/notebook")
    if early.status_code != 200:  # it may already have run
        assert early.status_code == 404
    done = finished(server, job["id"])
    assert done["status"] == "failed"
    assert "cell 1" in done["error"]["message"] and "raise ValueError" in done["error"]["message"]
    assert "ValueError: bad" in done["error"]["message"]
    executed = nbformat.reads(
        server.api("GET", f"jobs/api/jobs/{job['id']}/notebook").text, as_version=4
    )
    assert executed.cells[0].outputs[0]["text"] == "ran\n"
    assert executed.cells[1].outputs[0]["ename"] == "ValueError"


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_cancelled_or_timed_out_notebook_job_serves_what_ran_and_its_kernel_is_gone(
    server, tmp_path, how
):
    pid_file = tmp_path / "pids"
    content = notebook(
        "import os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "print('first cell done')",
        "import time\ntime.sleep(600)",
        "print('never')",
    )
    timeout = {"timeout": 20} if how == "timeout" else {}
    job = submit(server, {"content": content}, **timeout).json()
    # The second cell started: the worker sent its checkpoint before that progress.
    poll(lambda: (server.job(job["id"])["progress"] or {}).get("done") == 1, 120, "cell 1")
    processes = [psutil.Process(int(pid)) for pid in pid_file.read_text().split()]
    if how == "cancel":
        assert server.api("POST", f"jobs/api/jobs/{job['id']}/cancel").status_code == 200
    done = finished(server, job["id"])
    if how == "cancel":
        assert done["status"] == "cancelled", done
    else:
        assert (done["status"], done["reason"]) == ("failed", "timeout"), done
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert alive == [], f"still alive after {how}: {alive}"

    answer = server.api("GET", f"jobs/api/jobs/{job['id']}/notebook")
    assert answer.status_code == 200, answer.text
    executed = nbformat.reads(answer.text, as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "first cell done\n"
    assert [o.get("ename") for o in executed.cells[1].outputs] == ["JobStopped"]
    assert executed.cells[2].outputs == []
    html = server.api("GET", f"jobs/api/jobs/{job['id']}/notebook", params={"format": "html"})
    assert html.status_code == 200
    assert "first cell done" in html.text and "JobStopped" in html.text


def test_submit_notebook_from_a_kernel_returns_the_executed_notebook(server, monkeypatch, tmp_path):
    from jupyter_jobs.kernel import api

    monkeypatch.setenv("JUPYTER_JOBS_URL", server.url)
    monkeypatch.setenv("JUPYTER_JOBS_TOKEN", server.token)
    api.reset_connection()
    try:
        path = tmp_path / "from_kernel.ipynb"
        nbformat.write(notebook("print(n * 2)", parameters="n = 0"), path)
        job = api.submit_notebook(str(path), {"n": 21}, name="doubled")
        nb = job.result(timeout=120)
        assert isinstance(nb, nbformat.NotebookNode)
        assert nb.cells[2].outputs[0]["text"] == "42\n"
        assert job.record.name == "doubled" and job.record.cwd == str(tmp_path)
    finally:
        api.reset_connection()
