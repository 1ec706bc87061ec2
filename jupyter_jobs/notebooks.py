"""Notebook jobs' payload and result: JSON, never a pickle, so the server may read both.

A notebook job's payload is `{"notebook": <nbformat v4>, "parameters": {...}, "kernel_name":
...}` as UTF-8 JSON bytes, built at submit (the notebook is snapshotted then: editing the file
later changes nothing) by whichever client submits (`front.Jobs.submit_notebook`, the REST
handler), checked here once for all of them, and run by `notebook_run.py` in a worker. Its
result is the executed notebook's JSON. Light on purpose: kernels and the server import it;
nbformat is imported only when a notebook is read.
"""

from __future__ import annotations

import json
import keyword
import math
import os
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest

if TYPE_CHECKING:
    import argparse

#: The `options` key under which a notebook job's spec says what it runs (for display only:
#: the worker reads the payload).
OPTION = "notebook"


def check_parameters(parameters: Any) -> dict[str, Any]:
    """The parameters, if every name is a Python identifier (not a keyword) and every value is
    JSON (finite numbers, strings, booleans, null, lists and objects of them); else
    `InvalidRequest` naming the first bad one."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidRequest(
            f"parameters must be an object of name: value, got {type(parameters).__name__}"
        )
    for name, value in parameters.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise InvalidRequest(
                f"parameter name {str(name)[:50]!r} is not a Python identifier",
                {"parameter": str(name)[:200]},
            )
        problem = _json_problem(value)
        if problem:
            raise InvalidRequest(f"parameter {name!r}: {problem}", {"parameter": name})
    return parameters


def _json_problem(value: Any, depth: int = 0) -> str | None:
    """Why `value` is not a plain JSON value, or None."""
    if depth > 100:
        return "the value is nested too deeply"
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    if isinstance(value, (list, tuple)):
        return next((p for v in value if (p := _json_problem(v, depth + 1))), None)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "object keys must be strings"
        return next((p for v in value.values() if (p := _json_problem(v, depth + 1))), None)
    return f"a {type(value).__name__} is not a JSON value (use numbers, strings, lists, dicts)"


def check_notebook(content: Any) -> dict[str, Any]:
    """A notebook as a plain dict, if it is valid nbformat v4 (older versions are upgraded);
    else `InvalidRequest` saying what is wrong."""
    import nbformat

    if not isinstance(content, dict):
        raise InvalidRequest(
            f"notebook content must be a JSON object, got {type(content).__name__}"
        )
    # JSON has one number type: 4.0 is the version 4 (as `parsing` takes 2.0 for an integer).
    content = {
        k: int(v) if k in _VERSION_KEYS and isinstance(v, float) and v.is_integer() else v
        for k, v in content.items()
    }
    try:
        node = nbformat.reads(json.dumps(content), as_version=4)
        nbformat.validate(node)
    except Exception as exc:  # nbformat raises ValidationError, NBFormatError, KeyError...
        why = _first_line(str(exc)) or type(exc).__name__
        raise InvalidRequest(f"not a valid notebook: {why}") from None
    return json.loads(nbformat.writes(node))


_VERSION_KEYS = ("nbformat", "nbformat_minor")


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def payload(
    notebook: dict[str, Any], parameters: dict[str, Any] | None, kernel_name: str | None
) -> bytes:
    """The payload bytes of a notebook job (the notebook checked, the parameters too)."""
    if kernel_name is not None and (not isinstance(kernel_name, str) or not kernel_name):
        raise InvalidRequest("kernel_name must be a kernelspec name or null")
    return encode_payload(check_notebook(notebook), check_parameters(parameters), kernel_name)


def encode_payload(
    notebook: dict[str, Any], parameters: dict[str, Any], kernel_name: str | None
) -> bytes:
    """The payload bytes of a notebook and parameters already checked (a schedule's run reuses
    the notebook checked when the schedule was made)."""
    document = {"notebook": notebook, "parameters": parameters, "kernel_name": kernel_name}
    try:
        return json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            "the notebook or its parameters hold text that is not valid Unicode"
        ) from None


def load_payload(data: bytes) -> dict[str, Any]:
    """A notebook job's payload, checked as at submit (the server checks what a client built;
    the worker reads it). `InvalidRequest` for bytes that are not one (a pickle included)."""
    try:
        document = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("a notebook job's payload must be its JSON document") from None
    if not isinstance(document, dict) or set(document) != {"notebook", "parameters", "kernel_name"}:
        raise InvalidRequest("a notebook job's payload must be {notebook, parameters, kernel_name}")
    check_parameters(document["parameters"])
    if not isinstance(document["notebook"], dict):
        raise InvalidRequest("a notebook job's payload must hold the notebook as an object")
    return document


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The notebook at `path`, as a checked dict (FileNotFoundError if there is none)."""
    with open(path, encoding="utf-8") as f:
        try:
            content = json.load(f)
        except ValueError as exc:
            raise InvalidRequest(f"{os.fspath(path)} is not a notebook (not JSON: {exc})") from None
    return check_notebook(content)


def job_name(path: str | None) -> str:
    """A notebook job's default name: the file's name, without `.ipynb`."""
    if not path:
        return "notebook"
    name = os.path.basename(os.fspath(path))
    return name[: -len(".ipynb")] if name.endswith(".ipynb") else name


def display_options(
    path: str | None, parameters: dict[str, Any] | None, kernel_name: str | None
) -> dict[str, Any]:
    """What a notebook job's spec carries in `options` for lists and the sidebar."""
    return {OPTION: {"path": path, "parameters": parameters or {}, "kernel_name": kernel_name}}


def from_result(data: bytes) -> Any:
    """An executed notebook's bytes as an `nbformat.NotebookNode` (the client side of
    `job.result()`)."""
    import nbformat

    return nbformat.reads(bytes(data).decode("utf-8"), as_version=4)


def add_parameter_argument(parser: argparse.ArgumentParser) -> None:
    """`-p NAME VALUE`, repeatable: the parameters of a notebook job, a schedule or a typed job
    (read back with `cli_parameters`)."""
    parser.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="a parameter (VALUE parsed as JSON, else taken as a string); repeatable",
    )


def cli_parameters(pairs: list[list[str]] | None) -> dict[str, Any]:
    """The `-p NAME VALUE` pairs given, as parameters (`cli_value`)."""
    return {name: cli_value(value) for name, value in pairs or []}


def cli_value(text: str) -> Any:
    """`-p NAME VALUE`: VALUE as JSON when it parses (42, 1.5, true, [1, 2], "s"), else the
    text itself."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return text


def _no_constant(name: str) -> Any:
    raise ValueError(name)
