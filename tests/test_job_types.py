"""Job types' vocabulary (job_types.py) and the describer of installed types (typed_run.py):
schemas checked with jsonschema, parameters refused by name, payloads and results, and the
entry points of a package installed into a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dill
import pytest

from jupyter_jobs import buffers, job_types, payload, typed_run
from jupyter_jobs.errors import InvalidRequest
from jupyter_jobs.job_types import JobType, TypedPayload
from jupyter_jobs.server import service

import typed_package

SCHEMA = {
    "type": "object",
    "properties": {
        "epochs": {"type": "integer", "minimum": 1},
        "data": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
        "when": {"type": "string", "format": "date"},
    },
    "required": ["epochs", "rate"],
    "additionalProperties": False,
}


def described(schema: dict = SCHEMA) -> JobType:
    return JobType(name="train", schema=job_types.check_schema(schema))


def test_bad_parameters_are_refused_naming_every_one_by_its_path() -> None:
    bad = {"epochs": 0, "data": {}, "when": "yesterday", "extra": 1}
    with pytest.raises(InvalidRequest) as caught:
        job_types.check_parameters(described(), bad)
    assert caught.value.detail == {
        "type": "train",
        "parameters": {
            "parameters.epochs": "0 is less than the minimum of 1",
            "parameters.data.path": "is required",
            "parameters.rate": "is required",
            "parameters.when": "'yesterday' is not a 'date'",
            "parameters.extra": "is not a parameter of this type",
        },
    }
    message = caught.value.message
    assert message.startswith("job type 'train': ")
    for path in ("parameters.epochs", "parameters.data.path", "parameters.rate", "parameters.when"):
        assert path in message


def test_good_parameters_come_back_as_json() -> None:
    schema = {"type": "object", "properties": {"sizes": {"type": "array"}}}
    assert job_types.check_parameters(described(schema), {"sizes": (1, 2)}) == {"sizes": [1, 2]}
    assert job_types.check_parameters(described(schema), None) == {}
    with pytest.raises(InvalidRequest, match="parameters must be JSON"):
        job_types.check_parameters(described(schema), {"x": float("nan")})
    with pytest.raises(InvalidRequest, match="must be an object"):
        job_types.check_parameters(described(schema), [1])


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ([], "must be a JSON object"),
        ({"type": "array"}, "must describe an object"),
        ({"type": "object", "properties": {"a": {"type": "nope"}}}, "at properties/a/type"),
        ({"type": "object", "required": "a"}, "not a valid JSON schema"),
        ({"type": "object", "default": float("inf")}, "must be JSON"),
    ],
)
def test_a_schema_that_is_not_a_json_schema_of_an_object_is_refused(schema, why) -> None:
    with pytest.raises(InvalidRequest, match=why):
        job_types.check_schema(schema)


def test_names_are_identifier_like() -> None:
    assert job_types.check_name("train.v2-fast") == "train.v2-fast"
    for bad in ("", "2train", "a/b", "a b", "x" * 101, None):
        with pytest.raises(InvalidRequest, match="is not valid"):
            job_types.check_name(bad)


def test_a_schema_is_made_from_the_signature_when_none_is_given() -> None:
    def fit(epochs: int, rate: float = 0.5, *, name: str = "m", flags: list = [], other=None):  # noqa: B006
        """Fit it."""

    fit.__annotations__["name"] = "'str'"  # a postponed annotation, quoted

    described = job_types.describe_function(fit)
    assert described.name == "fit"
    assert described.description == "Fit it."
    assert described.schema == {
        "type": "object",
        "properties": {
            "epochs": {"type": "integer"},
            "rate": {"type": "number", "default": 0.5},
            "name": {"type": "string", "default": "m"},
            "flags": {"type": "array", "default": []},
            "other": {"default": None},
        },
        "required": ["epochs"],
        "additionalProperties": False,
    }

    def anything(**kwargs):
        pass

    assert job_types.describe_function(anything).schema == {"type": "object", "properties": {}}


def test_the_decorator_declares_and_describing_checks() -> None:
    def summarize(job):
        return job.result

    @job_types.job_type("double", {"type": "object"}, summarize=summarize, description="x2")
    def double(x):
        return 2 * x

    assert double(4) == 8  # the function itself, unchanged
    assert job_types.summarize_of(double) is summarize
    found = job_types.describe_function(double)
    assert (found.name, found.description, found.summarize, found.run) == (
        "double", "x2", summarize, double
    )  # fmt: skip
    assert found.has_summarize and found.schema == {"type": "object"}

    # Declaring checks nothing costly (a worker imports packages of types); describing does.
    @job_types.job_type("bad name", {"type": "array"})
    def later():
        pass

    with pytest.raises(InvalidRequest, match="is not valid"):
        job_types.describe_function(later)
    with pytest.raises(InvalidRequest, match="must describe an object"):
        job_types.describe_function(later, "fine")
    assert job_types.summarize_of(len) is None
    with pytest.raises(TypeError, match="decorates a function"):
        job_types.job_type("x")(42)
    with pytest.raises(TypeError, match="summarize must be a function"):
        job_types.job_type("x", summarize=3)


def test_a_payload_splits_at_its_first_newline_whatever_the_function_bytes() -> None:
    functions = b"\x80\x04\n\n" + bytes(range(256))
    payload = TypedPayload("t", {"text": "a\nb"}, functions=functions)
    data = job_types.encode_payload(payload)
    assert data.count(b"\n") > 1
    assert job_types.decode_payload(data) == payload
    installed = TypedPayload("t", {}, entry_point="pkg.mod:fn")
    assert job_types.decode_payload(job_types.encode_payload(installed)) == installed
    for bad in (b"", b"not json\n", b'{"type": "t"}\n', b'{"type": "t", "parameters": {}}\n'):
        with pytest.raises(InvalidRequest):
            job_types.decode_payload(bad)


@pytest.mark.parametrize(
    "value", [{"a": [1, 2.5, None, True, "é"]}, [], "text", 3, None, {"nested": {"x": {}}}]
)
def test_a_plain_json_value_is_sent_as_json(value) -> None:
    data = job_types.encode_result(value, dill.dumps)
    assert json.loads(data) == value
    assert not job_types.is_pickle(data)
    assert job_types.decode_result(data) == value


@pytest.mark.parametrize(
    "value", [(1, 2), {1: "int key"}, {"s": {1, 2}}, float("nan"), b"bytes", Path("/tmp")]
)
def test_what_json_would_change_is_sent_as_a_pickle(value) -> None:
    data = job_types.encode_result(value, dill.dumps)
    assert job_types.is_pickle(data)
    decoded = job_types.decode_result(data)
    assert decoded == value or (decoded != decoded and value != value)  # nan


def test_a_framed_pickle_is_a_pickle_and_decodes_with_its_arrays() -> None:
    """A result whose big array travels beside its pickle (buffers.py) is still a pickle to
    the server and decodes whole on the client."""
    import numpy as np

    arr = np.arange(2 * buffers.THRESHOLD, dtype=np.uint8)
    data = bytes(payload.dumps_framed({"weights": arr}))
    assert buffers.is_framed(data) and job_types.is_pickle(data)
    assert service.result_media_type(data[:64]) == "application/octet-stream"
    assert np.array_equal(job_types.decode_result(data)["weights"], arr)


def test_a_summary_must_be_short_plain_json() -> None:
    assert job_types.summary_json({"accuracy": 0.9}) == {"accuracy": 0.9}
    with pytest.raises(InvalidRequest, match="not plain JSON"):
        job_types.summary_json({"s": {1}})
    with pytest.raises(InvalidRequest, match="over"):
        job_types.summary_json("x" * (job_types.MAX_SUMMARY + 1))


def test_installed_types_are_found_through_their_entry_points(installed: Path) -> None:
    found = {t.name: t for t in typed_run.describe_installed()}
    assert {"train", "explain", "crash", "noisy", "broken"} <= set(found)
    train = found["train"]
    assert train.entry_point == "mltypes:train"
    assert train.source == job_types.INSTALLED
    assert train.description == "Train a model."
    assert train.has_summarize and train.error is None
    assert train.schema["required"] == ["epochs"]
    assert found["explain"].schema["properties"] == {"rows": {"type": "integer", "default": 2}}
    assert "mltypes_missing:run cannot be imported" in found["broken"].error
    assert "ModuleNotFoundError" in found["broken"].error


def test_the_describer_prints_the_installed_types_as_json(installed: Path) -> None:
    env = {"PYTHONPATH": typed_package.pythonpath(installed)}
    run = subprocess.run(
        [sys.executable, "-m", "jupyter_jobs.typed_run", "describe"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert run.returncode == 0, run.stderr
    types = {t["name"]: t for t in json.loads(run.stdout)["types"]}
    assert types["train"]["schema"]["properties"]["epochs"]["maximum"] == 50
    assert types["train"]["summarize"] is True
    assert types["broken"]["error"]
    usage = subprocess.run(
        [sys.executable, "-m", "jupyter_jobs.typed_run"], capture_output=True, timeout=60
    )
    assert usage.returncode == 2
