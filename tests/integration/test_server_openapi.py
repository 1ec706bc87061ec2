"""openapi.yaml is the truth about the REST API: every route is in it and only those, and
Schemathesis fuzzing a live server finds no 5xx and no response the spec does not allow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jupyter_jobs.server import handlers

from servers import RunningServer

SPEC = Path(handlers.__file__).with_name("openapi.yaml")
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 25
#: Unknown query parameters are tolerated on purpose: jupyter_server itself reads `token`,
#: `_xsrf` and `no_track_activity` from any API URL, and browsers add cache busters. The token
#: header is set by the test, not generated.
FUZZ_CONFIG = {"generation": {"allow-extra-parameters": False, "with-security-parameters": False}}


def spec_routes() -> dict[str, set[str]]:
    """Spec path -> its methods, the path as a regex like the handlers' (`{id}` -> ID)."""
    paths = yaml.safe_load(SPEC.read_text())["paths"]
    methods = {"get", "post", "put", "patch", "delete"}
    return {
        path.replace("{id}", handlers.ID): {m for m in operations if m in methods}
        for path, operations in paths.items()
    }


def app_routes() -> dict[str, set[str]]:
    """Registered pattern -> the HTTP methods its handler implements."""
    methods = {"get", "post", "put", "patch", "delete"}
    return {
        pattern: {m for m in methods if m in vars(handler)} for pattern, handler in handlers.ROUTES
    }


def has_inputs(path: str, method: str) -> bool:
    """Whether the spec gives the operation parameters or a body."""
    item = yaml.safe_load(SPEC.read_text())["paths"][path]
    operation = item[method.lower()]
    return bool(item.get("parameters") or operation.get("parameters") or "requestBody" in operation)


def test_every_route_is_in_the_spec_and_every_spec_path_is_a_route() -> None:
    assert app_routes() == spec_routes()


def test_every_registered_handler_pattern_is_one_of_the_routes(
    jupyter_server: RunningServer,
) -> None:
    # The live server registers exactly ROUTES: each answers (403, not 404) without a token.
    for pattern in handlers.ROUTES:
        path = pattern[0].replace(handlers.ID, "1").lstrip("/")
        method = next(iter(app_routes()[pattern[0]])).upper()
        response = requests.request(method, jupyter_server.url + path, timeout=30)
        assert response.status_code == 403, (pattern, response.status_code)
    assert re.fullmatch(handlers.ID, "123")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_no_server_error_and_no_spec_violation(
    jupyter_server: RunningServer, mode: str
) -> None:
    schema = schemathesis.openapi.from_path(SPEC, config=schemathesis.Config.from_dict(FUZZ_CONFIG))
    generation = schemathesis.GenerationMode(mode)
    checks = CONFORMANCE + ([negative_data_rejection] if mode == "negative" else [])
    headers = {"Authorization": f"token {jupyter_server.token}"}
    # Some jobs to act on (fuzzed ids are small integers), held so that none runs away.
    for _ in range(3):
        jupyter_server.submit(len, (), hold=True)
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        if mode == "negative" and not has_inputs(operation.path, operation.method):
            continue  # nothing to make invalid

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=generation))
        def run(case: schemathesis.Case) -> None:
            if case.query and "wait" in case.query:
                case.query["wait"] = 0.2  # a long poll on a held job would just wait
            case.call_and_validate(
                base_url=jupyter_server.url.rstrip("/"), headers=headers, checks=checks
            )

        run()
    assert len(labels) == 16
