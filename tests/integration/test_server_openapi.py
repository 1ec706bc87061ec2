"""openapi.yaml is the truth about the REST API: every route is in it and only those, and
Schemathesis fuzzing a live server finds no 5xx and no response the spec does not allow."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from jupyter_jobs import payload
from jupyter_jobs.server import handlers
from jupyter_jobs.server.channel_handlers import NAME
from jupyter_jobs.server.function_handlers import SHA256
from jupyter_jobs.server.schedule_handlers import SID
from jupyter_jobs.server.type_handlers import TYPE
from jupyter_jobs.server.worker_handlers import WORKER_ID

from servers import RunningServer

SPEC = Path(handlers.__file__).with_name("openapi.yaml")
EXAMPLES = 25


def spec_routes() -> dict[str, set[str]]:
    """Spec path -> its methods, the path as a regex like the handlers' (`{id}` -> ID)."""
    paths = yaml.safe_load(SPEC.read_text())["paths"]
    methods = {"get", "post", "put", "patch", "delete"}
    return {
        path.replace("{id}", SID if "/schedules/" in path else handlers.ID)
        .replace("{name}", NAME if "/channels/" in path else TYPE)
        .replace("{worker_id}", WORKER_ID)
        .replace("{sha256}", SHA256): {m for m in operations if m in methods}
        for path, operations in paths.items()
    }


def app_routes() -> dict[str, set[str]]:
    """Registered pattern -> the HTTP methods its handler implements."""
    methods = {"get", "post", "put", "patch", "delete"}
    return {
        pattern: {m for m in methods if m in vars(handler)} for pattern, handler in handlers.ROUTES
    }


def test_every_route_is_in_the_spec_and_every_spec_path_is_a_route() -> None:
    assert app_routes() == spec_routes()


def test_every_registered_handler_pattern_is_one_of_the_routes(
    jupyter_server: RunningServer,
) -> None:
    # The live server registers exactly ROUTES: each answers (401, not 404) without a token,
    # with the challenge.
    for pattern in handlers.ROUTES:
        path = pattern[0].replace(handlers.ID, "1").replace(SID, "1").replace(TYPE, "t")
        path = path.replace(NAME, "c").replace(WORKER_ID, "w").replace(SHA256, "0" * 64)
        path = path.lstrip("/")
        method = next(iter(app_routes()[pattern[0]])).upper()
        response = requests.request(method, jupyter_server.url + path, timeout=30)
        assert response.status_code == 401, (pattern, response.status_code)
        assert response.headers["WWW-Authenticate"].startswith("token")
    assert re.fullmatch(handlers.ID, "123")


@pytest.mark.slow
def test_schemathesis_with_all_its_checks_finds_nothing(
    jupyter_server: RunningServer, tmp_path: Path
) -> None:
    """Schemathesis's own command, every check (auth, 405s, schema-valid data accepted, invalid
    data refused, responses as documented) and every phase (coverage, fuzzing, stateful)."""
    # Some jobs to act on (fuzzed ids are small integers), held so that none runs away.
    for _ in range(3):
        jupyter_server.submit(len, (), hold=True)
    # The notebook every generated schedule runs (schemathesis_hooks.py points them at it).
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (jupyter_server.home.root_dir / "scheduled.ipynb").write_text(json.dumps(notebook))
    # And the job type of every generated typed schedule: any parameters pass its schema.
    functions = base64.b64encode(payload.dumps({"run": len, "summarize": None})).decode()
    registered = jupyter_server.api(
        "PUT", "jobs/api/types/scheduled_type",
        json={"schema": {"type": "object"}, "functions": functions},
    )  # fmt: skip
    assert registered.status_code == 200, registered.text
    command = [
        *(sys.executable, "-m", "schemathesis.cli"),
        *("--config-file", str(Path(__file__).with_name("schemathesis.toml"))),
        *("run", str(SPEC)),
        *("--url", jupyter_server.url.rstrip("/")),
        *("--header", f"Authorization: token {jupyter_server.token}"),
        *("--checks", "all", "--max-examples", str(EXAMPLES), "--workers", "1"),
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    # In tmp_path: Schemathesis keeps a cache of what it found in `.schemathesis/`.
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    operations = sum(len(methods) for methods in spec_routes().values())
    assert re.search(rf"Tested: +{operations}\b", run.stdout), run.stdout[-3000:]
