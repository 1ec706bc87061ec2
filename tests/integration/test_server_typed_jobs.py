"""Typed jobs over REST against a real `jupyter server`: installed types (a package in a
temporary folder on the server's PYTHONPATH, found through its entry points), a type registered
from a real kernel (nbclient), parameters refused by name, summaries and JSON results served
with the job, and registered types that survive a restart. The server never imports job code."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import dill
import nbformat
import pytest

from jupyter_jobs import payload

import jobfuncs
import typed_package
from servers import (
    REPO,
    TEST_CONFIG,
    TESTS_DIR,
    JupyterHome,
    RunningServer,
    ServerFactory,
    execute_notebook,
)

#: The schema of `jobfuncs.add(a, b=0)` registered as a type.
SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer", "minimum": 0}, "b": {"type": "integer"}},
    "required": ["a"],
    "additionalProperties": False,
}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return typed_package.install(tmp_path)


def start(factory: ServerFactory, site: Path, home: JupyterHome | None = None) -> RunningServer:
    """A server whose workers (and describer) find the test package; every import of it is
    logged in `site/imports.log`."""
    path = os.pathsep.join([str(site), str(REPO), str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])
    env = {"PYTHONPATH": path, "MLTYPES_IMPORTS": str(site / "imports.log")}
    return factory(home, config=TEST_CONFIG, env=env)


@pytest.fixture
def server(jupyter_server_factory: ServerFactory, site: Path) -> RunningServer:
    return start(jupyter_server_factory, site)


def submit(server: RunningServer, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = server.api("POST", "jobs/api/jobs", json=body)
    assert response.status_code == status, response.text
    return response.json()


def types_of(server: RunningServer) -> dict[str, dict[str, Any]]:
    response = server.api("GET", "jobs/api/types")
    assert response.status_code == 200, response.text
    return {t["name"]: t for t in response.json()["types"]}


def test_installed_types_are_listed_with_their_schemas_and_run_in_workers(
    server: RunningServer, site: Path
) -> None:
    found = types_of(server)
    train = found["train"]
    assert train["source"] == "installed" and train["entry_point"] == "mltypes:train"
    assert train["schema"]["properties"]["epochs"]["maximum"] == 50
    assert train["summarize"] is True and train["description"] == "Train a model."
    assert "cannot be imported" in found["broken"]["error"]
    assert server.api("GET", "jobs/api/types/train").json() == train

    job = submit(server, {"type": "train", "parameters": {"epochs": 3}, "spec": {"priority": 1}})
    assert (job["kind"], job["type"], job["name"]) == ("typed", "train", "train")
    assert job["parameters"] == {"epochs": 3} and job["priority"] == 1
    done = server.wait_status(job["id"], "succeeded", timeout=120)
    assert done["summary"] == {"accuracy": 0.75, "epochs": 3}
    status = server.api("GET", "jobs/api/status", params={"ids": job["id"]}).json()
    assert status["jobs"][0]["summary"] == done["summary"]
    result = server.api("GET", f"jobs/api/jobs/{job['id']}/result")
    assert result.headers["Content-Type"].startswith("application/json")
    assert result.json() == {"accuracy": 0.75, "lr": 0.1, "model": "linear"}

    # A value JSON cannot carry is a pickle, for Python clients.
    other = submit(server, {"type": "explain", "parameters": {}})
    server.wait_status(other["id"], "succeeded", timeout=120)
    pickled = server.api("GET", f"jobs/api/jobs/{other['id']}/result")
    assert pickled.headers["Content-Type"] == "application/octet-stream"
    assert dill.loads(pickled.content) == (2, {"a", "b"})

    # The describer and the workers imported the package; the server never did.
    importers = {int(p) for p in (site / "imports.log").read_text().split()}
    assert importers and server.process.pid not in importers


def test_bad_typed_submits_are_refused_naming_the_problem(server: RunningServer) -> None:
    types_of(server)  # described
    bad = submit(server, {"type": "train", "parameters": {"epochs": 99, "depth": 2}}, 400)
    assert bad["type"] == "InvalidRequest"
    assert "parameters.epochs: 99 is greater than the maximum of 50" in bad["message"]
    assert bad["detail"]["parameters"] == {
        "parameters.epochs": "99 is greater than the maximum of 50",
        "parameters.depth": "is not a parameter of this type",
    }
    missing = submit(server, {"type": "trian", "parameters": {}}, 404)
    assert missing["type"] == "JobTypeNotFound" and "train" in missing["message"]
    assert (
        "no kind" in submit(server, {"type": "train", "spec": {"kind": "function"}}, 400)["message"]
    )
    payload = base64.b64encode(b"x").decode()
    kinded = {"spec": {"kind": "typed", "type": "train"}, "payload": payload}
    assert "without a payload" in submit(server, kinded, 400)["message"]
    assert "is not valid" in submit(server, {"type": "no way"}, 400)["message"]
    assert "cannot be loaded" in submit(server, {"type": "broken"}, 400)["message"]
    listed = server.api("GET", "jobs/api/jobs").json()
    assert listed["jobs"] == []


def register(server: RunningServer, name: str, status: int = 200, **fields: Any) -> Any:
    """Register `jobfuncs.add` as `name` the way a kernel does (`Jobs.register_type`), with
    `vars` as its summarize (the finished run's fields)."""
    functions = payload.dumps({"run": jobfuncs.add, "summarize": vars})
    body = {"schema": SCHEMA, "functions": base64.b64encode(functions).decode(), **fields}
    response = server.api("PUT", f"jobs/api/types/{name}", json=body)
    assert response.status_code == status, response.text
    return response.json()


def test_a_registered_type_survives_a_restart_and_can_be_deleted(
    jupyter_server_factory: ServerFactory, site: Path
) -> None:
    first = start(jupyter_server_factory, site)
    stored = register(first, "adder", summarize=True)
    assert (stored["source"], stored["schema"], stored["summarize"]) == ("registered", SCHEMA, True)
    assert register(first, "train", 409)["type"] == "JobTypeConflict"
    bad_schema = {"schema": {"type": "object", "properties": {"x": {"type": 3}}}}
    refused = first.api("PUT", "jobs/api/types/cube", json={**bad_schema, "functions": "AAAA"})
    assert refused.status_code == 400 and "properties/x/type" in refused.json()["message"]
    first.stop()

    second = start(jupyter_server_factory, site, home=first.home)
    assert types_of(second)["adder"]["source"] == "registered"
    job = submit(second, {"type": "adder", "parameters": {"a": 7, "b": 35}})
    done = second.wait_status(job["id"], "succeeded", timeout=120)
    assert second.api("GET", f"jobs/api/jobs/{job['id']}/result").json() == 42
    assert done["summary"] == {
        "id": job["id"],
        "attempt": 1,
        "type": "adder",
        "parameters": {"a": 7, "b": 35},
        "result": 42,
    }
    assert submit(second, {"type": "adder", "parameters": {"a": -1}}, 400)["detail"][
        "parameters"
    ] == {"parameters.a": "-1 is less than the minimum of 0"}
    assert second.api("DELETE", "jobs/api/types/adder").status_code == 204
    assert second.api("GET", "jobs/api/types/adder").status_code == 404
    assert second.api("DELETE", "jobs/api/types/train").status_code == 409


KERNEL_CELLS = [
    """\
import jupyter_jobs as jj

def shout(job):
    return {"length": len(job.result)}

@jj.job_type("greet", {"type": "object", "properties": {"who": {"type": "string"}},
                       "required": ["who"]}, summarize=shout)
def greet(who):
    return f"hello {who}"
""",
    """\
job = jj.submit_typed("greet", {"who": "lab"})
print("result:", job.result(timeout=120), job.refresh().summary)
""",
    """\
from jupyter_jobs.errors import InvalidRequest

try:
    jj.submit_typed("greet", {"who": 3})
except InvalidRequest as e:
    print("refused:", e.detail["parameters"])
try:
    jj.submit_typed("nope")
except jj.JobTypeNotFound as e:
    print("unknown:", type(e).__name__)
print("types:", sorted(t.name for t in jj.list_job_types() if t.source == "registered"))
trained = jj.submit_typed("train", {"epochs": 2})
print("installed:", trained.result(timeout=120)["accuracy"])
""",
]


def test_a_kernel_registers_a_notebook_function_as_a_type_and_runs_it(
    server: RunningServer, tmp_path: Path
) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in KERNEL_CELLS])
    execute_notebook(server, nb, tmp_path)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.outputs)
    assert "result: hello lab {'length': 9}" in text
    assert "refused: {'parameters.who': \"3 is not of type 'string'\"}" in text
    assert "unknown: JobTypeNotFound" in text
    assert "types: ['greet']" in text
    assert "installed: 0.6667" in text
    greet = types_of(server)["greet"]
    assert greet["source"] == "registered" and greet["summarize"] is True
    assert greet["cwd"] == str(tmp_path)
