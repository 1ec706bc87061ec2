"""The untrusted input of job types (server/parsing.py): typed submits and type registrations
are refused with a 400 that names the problem, and the server never loads the functions."""

from __future__ import annotations

import base64
import json

import pytest

from jupyter_jobs.errors import InvalidRequest, PayloadTooLarge
from jupyter_jobs.models import Kind
from jupyter_jobs.server import parsing


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_a_typed_submit_is_a_spec_of_kind_typed_named_after_its_type() -> None:
    typed = parsing.submit_json(body({"type": "train", "parameters": {"epochs": 2}}), 100)
    assert isinstance(typed, parsing.TypedSubmit)
    spec = typed.spec
    assert (spec.kind, spec.type, spec.parameters, spec.name) == (
        Kind.TYPED, "train", {"epochs": 2}, "train"
    )  # fmt: skip
    named = parsing.submit_json(body({"type": "t", "spec": {"name": "n", "priority": 2}}), 100)
    assert (named.spec.name, named.spec.priority, named.spec.parameters) == ("n", 2, {})


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"type": "t", "payload": "AAAA"}, "unknown field"),
        ({"type": "t", "parameters": [1]}, "parameters must be an object"),
        ({"type": "t", "spec": {"kind": "function"}}, "spec has no kind"),
        ({"type": "t", "spec": {"type": "u"}}, "without a payload"),
        ({"type": "t", "spec": {"priority": "high"}}, "priority must be int"),
        ({"type": 3}, "is not valid"),
        ({"spec": {"kind": "typed"}, "payload": "AAAA"}, "without a payload"),
        ({"spec": {"parameters": {}}, "payload": "AAAA"}, "without a payload"),
    ],
)
def test_a_bad_typed_submit_is_refused_by_name(data: dict, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        parsing.submit_json(body(data), 100)


def registration(**fields: object) -> bytes:
    return body({"functions": base64.b64encode(b"\x80 not loaded").decode(), **fields})


def test_a_registration_keeps_the_functions_as_bytes() -> None:
    described, functions = parsing.type_registration(
        "adder", registration(schema={"type": "object"}, summarize=True, owner="nb"), 1000
    )
    assert functions == b"\x80 not loaded"
    assert (described.name, described.source, described.has_summarize) == (
        "adder", "registered", True
    )  # fmt: skip
    assert described.owner == "nb" and described.schema == {"type": "object"}


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("a b", registration(), "is not valid"),
        ("t", body({"schema": {}}), "needs its functions"),
        ("t", body({"functions": "***"}), "functions is not valid base64"),
        ("t", body({"functions": ""}), "functions must not be empty"),
        ("t", registration(run="x"), "unknown field"),
        ("t", registration(owner=3), "owner must be text"),
        ("t", registration(summarize="yes"), "summarize must be true or false"),
        ("t", registration(schema={"type": "string"}), "must describe an object"),
        ("t", b"[]", "must be a JSON object"),
    ],
)
def test_a_bad_registration_is_refused_by_name(name: str, data: bytes, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        parsing.type_registration(name, data, 1000)


def test_functions_over_the_payload_limit_are_413() -> None:
    big = body({"functions": base64.b64encode(b"x" * 200).decode()})
    with pytest.raises(PayloadTooLarge, match="functions"):
        parsing.type_registration("t", big, 100)
