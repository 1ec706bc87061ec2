"""Untrusted request text -> typed values, or `InvalidRequest` naming what is wrong.

Every check a handler needs on ids, query parameters and submit bodies lives here, so that bad
input is a 400 with a message (never a 500), and the handlers stay a few lines each. These
functions are pure and some (JSON bodies, base64 payloads) are slow on large input: the handlers
call those in a thread.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import posixpath
import re
from typing import Any, NamedTuple

from .. import job_types, notebooks
from ..channels import DEFAULT_READER, check_name
from ..errors import InvalidRequest, PayloadTooLarge
from ..models import ID_TEXT, JobSpec, Kind, Status
from ..shared import Function, Payload, SharedPayload, is_sha256
from ..streams import check_label

#: Digits of the largest integer a query parameter takes (MAX_INT has 19).
_MAX_DIGITS = 20
MAX_STATUS_IDS = 1000
MAX_BATCH = 10_000
#: What JSON calls a number (Python's int() and float() also take "1_0", " 5", "inf", "nan").
INTEGER = re.compile(r"-?[0-9]+")
NUMBER = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def job_id(text: str) -> int:
    """A job id from a URL segment or a list item (`models.ID_TEXT`, as openapi.yaml says)."""
    if not ID_TEXT.fullmatch(text):
        raise InvalidRequest(
            f"invalid job id {text[:50]!r}: expected a positive integer of at most 18 digits"
        )
    return int(text)


def job_ids(text: str) -> list[int]:
    """`1,2,3` -> [1, 2, 3] (order kept, duplicates dropped; "" is none); at most
    MAX_STATUS_IDS ids."""
    parts = text.split(",") if text else []
    if len(parts) > MAX_STATUS_IDS:
        raise InvalidRequest(f"too many ids: at most {MAX_STATUS_IDS} per request")
    return list(dict.fromkeys(job_id(p) for p in parts))


def statuses(text: str) -> list[str]:
    """`queued,running` -> the validated status names ("" is none)."""
    names = text.split(",") if text else []
    known = {s.value for s in Status}
    bad = [n for n in names if n not in known]
    if bad:
        raise InvalidRequest(
            f"unknown status {bad[0][:50]!r}: expected some of {', '.join(sorted(known))}"
        )
    return names


def job_type_filter(text: str | None) -> str | None:
    """The list's `?type=`: a job type's name (`job_types.NAME`), or None when absent."""
    if text is None:
        return None
    try:
        return job_types.check_name(text)
    except InvalidRequest as exc:
        raise InvalidRequest(f"type: {exc.message}", exc.detail) from None


def flag(name: str, text: str | None) -> bool:
    """A boolean query parameter: `true` or `false` (absent is false), as JSON spells them."""
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise InvalidRequest(f"{name} must be true or false, got {text[:50]!r}")


def integer(name: str, text: str, low: int, high: int) -> int:
    """A query parameter that must be a decimal integer in [low, high]."""
    if not INTEGER.fullmatch(text):
        raise InvalidRequest(f"{name} must be an integer, got {text[:50]!r}")
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {text[:50]!r}...")
    value = int(text)
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def seconds(name: str, text: str, cap: float) -> float:
    """A non-negative duration in seconds; values above `cap` are lowered to `cap`."""
    if not NUMBER.fullmatch(text):
        raise InvalidRequest(f"{name} must be a number of seconds, got {text[:50]!r}")
    value = float(text)
    if value < 0:
        raise InvalidRequest(f"{name} must be zero or more seconds, got {text[:50]!r}")
    return min(value, cap)


def json_object(body: bytes, what: str = "request body") -> dict[str, Any]:
    """Parse a JSON object from bytes (UTF-8)."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise InvalidRequest(f"{what} is not UTF-8 text") from None
    except ValueError as e:
        raise InvalidRequest(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidRequest(f"{what} is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity, which are not JSON and not storable.
    raise ValueError(f"{name} is not a JSON value")


def spec(data: Any) -> JobSpec:
    """A `JobSpec` from the decoded `spec` value of a submit.

    Beyond `JobSpec.validate` (which refuses numbers out of range wherever a spec comes from):
    lone UTF-16 surrogates, which SQLite cannot store, are refused here as a 400.
    """
    if not isinstance(data, dict):
        raise InvalidRequest(f"spec must be a JSON object, got {type(data).__name__}")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("spec contains text that is not valid Unicode") from None
    # A typed job's payload is the server's to build: its type and parameters come beside the
    # spec (`typed_submit`), never inside it with a payload of the client's.
    if data.get("kind") == Kind.TYPED.value or "type" in data or "parameters" in data:
        raise InvalidRequest(
            'a typed job is submitted as {"type": ..., "parameters": {...}, "spec": {...}}, '
            "without a payload"
        )
    return JobSpec.from_json(_integers(data))


#: The spec fields that hold an integer or a list of them (`after`).
_INTEGER_FIELDS = tuple(
    f.name for f in dataclasses.fields(JobSpec) if f.type in ("int", "list[int]")
)


def _integers(data: dict[str, Any]) -> dict[str, Any]:
    """JSON has one number type: `2.0` is the integer 2 (JSON Schema agrees), so it is taken
    where an integer is due; `2.5` is left for `JobSpec.validate` to refuse by name."""

    def whole(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    fixed = dict(data)
    for name in _INTEGER_FIELDS:
        if name not in fixed:
            continue
        value = fixed[name]
        fixed[name] = [whole(v) for v in value] if isinstance(value, list) else whole(value)
    return fixed


def payload(text: Any, limit: int, what: str = "payload") -> bytes:
    """Decode a base64 payload (standard alphabet, padded), refusing more than `limit` bytes;
    `what` names the field in errors."""
    if not isinstance(text, str):
        raise InvalidRequest(f"{what} must be a base64 string, got {type(text).__name__}")
    if len(text) // 4 * 3 > limit + 2:
        raise PayloadTooLarge(
            f"{what} is larger than the server's limit of {limit} bytes",
            {"max_payload_size": limit},
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidRequest(f"{what} is not valid base64: {e}") from None
    check_size(data, limit, what)
    return data


def check_size(data: Any, limit: int, what: str = "payload") -> None:
    """`PayloadTooLarge` for `what` (anything with a length) over `limit` bytes."""
    if len(data) > limit:
        raise PayloadTooLarge(
            f"{what} of {len(data)} bytes is larger than the server's limit of {limit} bytes",
            {"max_payload_size": limit, "size": len(data)},
        )


def submit_item(data: Any, limit: int, where: str = "") -> tuple[JobSpec, bytes]:
    """One `{"spec": {...}, "payload": "<base64>"}` item."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"{where}submit must be a JSON object with spec and payload")
    unknown = sorted(set(data) - {"spec", "payload"})
    if unknown:
        raise InvalidRequest(f"{where}unknown field(s): {', '.join(unknown)}")
    for key in ("spec", "payload"):
        if key not in data:
            raise InvalidRequest(f"{where}missing field {key!r}")
    try:
        return spec(data["spec"]), payload(data["payload"], limit)
    except (InvalidRequest, PayloadTooLarge) as e:
        # Name the batch item at fault.
        e.message = f"{where}{e.message}"
        e.args = (e.message,)
        raise


class NotebookByPath(NamedTuple):
    """A notebook submit naming a file under the server's root: the handler reads it through
    the contents manager, then `build` makes the job."""

    spec: JobSpec
    path: str
    parameters: dict[str, Any]
    kernel_name: str | None

    def build(self, content: Any, root_dir: str | None, limit: int) -> tuple[JobSpec, bytes]:
        """The job, with the notebook's content: it runs in the notebook's folder unless the
        spec says otherwise."""
        if self.spec.cwd is None and root_dir:
            self.spec.cwd = os.path.join(root_dir, *posixpath.dirname(self.path).split("/"))
        data = notebooks.payload(content, self.parameters, self.kernel_name)
        check_size(data, limit)
        return self.spec, data


_NOTEBOOK_FIELDS = {"path", "content", "parameters", "kernel_name"}


def notebook_submit(data: dict[str, Any], limit: int) -> tuple[JobSpec, bytes] | NotebookByPath:
    """`{"spec": {"kind": "notebook", ...}, "notebook": {path | content, parameters,
    kernel_name}}`: the job when the content is given, else what to read (`NotebookByPath`)."""
    unknown = sorted(set(data) - {"spec", "notebook"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}")
    request = data["notebook"]
    if not isinstance(request, dict):
        raise InvalidRequest("notebook must be an object {path | content, parameters, kernel_name}")
    unknown = sorted(set(request) - _NOTEBOOK_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field(s) in notebook: {', '.join(unknown)}")
    job = spec(data.get("spec", {}))
    if job.kind is not Kind.NOTEBOOK:
        raise InvalidRequest('a submit with "notebook" needs spec.kind "notebook"')
    path, content = request.get("path"), request.get("content")
    if (path is None) == (content is None):
        raise InvalidRequest("notebook needs exactly one of path and content")
    if path is not None:
        path = notebook_path(path)
    parameters = notebooks.check_parameters(request.get("parameters"))
    kernel_name = request.get("kernel_name")
    if kernel_name is not None and (not isinstance(kernel_name, str) or not kernel_name):
        raise InvalidRequest("kernel_name must be a kernelspec name or null")
    job.options = {**job.options, **notebooks.display_options(path, parameters, kernel_name)}
    if not (data.get("spec") or {}).get("name"):
        job.name = notebooks.job_name(path)
    if path is not None:
        return NotebookByPath(job, path, parameters, kernel_name)
    payload_bytes = notebooks.payload(content, parameters, kernel_name)
    check_size(payload_bytes, limit)
    return job, payload_bytes


def notebook_path(path: Any) -> str:
    """A notebook path relative to the server's root (the contents manager refuses what
    escapes it); `InvalidRequest` for what cannot be one."""
    if not isinstance(path, str) or not path.strip("/") or "\x00" in path:
        raise InvalidRequest(
            f"notebook path must be a file path under the server's root, got {str(path)[:100]!r}"
        )
    return path.strip("/")


class TypedSubmit(NamedTuple):
    """A typed submit: the spec (kind "typed", its type and parameters) whose payload the
    server builds from its job type (`type_registry.TypeRegistry.prepare`)."""

    spec: JobSpec


def typed_submit(data: dict[str, Any]) -> TypedSubmit:
    """`{"type": NAME, "parameters": {...}, "spec": {...}}` (spec optional, without kind)."""
    unknown = sorted(set(data) - {"type", "parameters", "spec"})
    if unknown:
        raise InvalidRequest(f"unknown field(s) in a typed submit: {', '.join(unknown)}")
    name = job_types.check_name(data["type"])
    parameters = data.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequest(
            f"parameters must be an object of name: value, got {type(parameters).__name__}"
        )
    given = data.get("spec", {})
    if isinstance(given, dict) and "kind" in given:
        raise InvalidRequest("a typed submit's spec has no kind: the job is typed")
    job = spec(given)
    job.kind, job.type, job.parameters = Kind.TYPED, name, parameters or {}
    if not (data.get("spec") or {}).get("name"):
        job.name = name
    job.validate()
    return TypedSubmit(job)


def submit_json(body: bytes, limit: int) -> tuple[JobSpec, bytes] | NotebookByPath | TypedSubmit:
    """The JSON form of `POST /jobs/api/jobs`: `{spec, payload}`, `{spec, notebook}`, or
    `{type, parameters, spec}`."""
    data = json_object(body)
    if isinstance(data, dict) and "notebook" in data:
        return notebook_submit(data, limit)
    if "type" in data:
        return typed_submit(data)
    return submit_item(data, limit)


def submit_multipart(parts: dict[str, list[Any]], limit: int) -> tuple[JobSpec, Any]:
    """The multipart form of `POST /jobs/api/jobs`: one `spec` part (JSON) and one `payload`
    part, by name (`bodies.SubmitBody` reads them: the payload's bytes, or the file they were
    written to, anything with a length). An optional `function` part names the stored function
    (its sha256, `shared.py`) the payload is the arguments of."""
    unknown = sorted(set(parts) - {"spec", "payload", "function"})
    if unknown:
        raise InvalidRequest(f"unknown multipart field(s): {', '.join(unknown)}")
    spec_parts, payload_parts = parts.get("spec", []), parts.get("payload", [])
    function_parts = parts.get("function", [])
    if len(spec_parts) != 1:
        raise InvalidRequest("multipart submit needs exactly one 'spec' part (JSON)")
    if len(payload_parts) != 1:
        raise InvalidRequest("multipart submit needs exactly one 'payload' part (bytes)")
    if len(function_parts) > 1:
        raise InvalidRequest("multipart submit takes at most one 'function' part (a sha256)")
    check_size(payload_parts[0], limit)
    found = spec(json_object(spec_parts[0], "spec part"))
    if not function_parts:
        return found, payload_parts[0]
    try:
        text = bytes(function_parts[0]).decode("ascii").strip()
    except UnicodeDecodeError:
        text = None
    sha256 = function_name(text, "the 'function' part")
    return found, SharedPayload(Function(sha256), payload_parts[0])


def batch_json(body: bytes, limit: int) -> list[tuple[JobSpec, Payload]]:
    """`POST /jobs/api/jobs/batch`: `{"items": [{"spec": ..., "payload": ...}, ...]}`, and
    `"functions": {sha256: base64}`: the functions that items naming one (`"function":
    sha256`, their payload then being the call's arguments) call, each sent once (`shared.py`).
    An item may name a function the server has already (`FunctionNotFound` when it has not:
    the store says so)."""
    data = json_object(body)
    unknown = sorted(set(data) - {"items", "functions"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}")
    items = data.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("items must be a non-empty list of {spec, payload} objects")
    if len(items) > MAX_BATCH:
        raise InvalidRequest(f"too many items: at most {MAX_BATCH} per batch")
    functions = functions_field(data.get("functions", {}), limit)
    parsed: list[tuple[JobSpec, Payload]] = []
    bad = {}
    for i, item in enumerate(items):
        try:
            parsed.append(batch_item(item, limit, functions, f"items[{i}]: "))
        except InvalidRequest as e:  # all or none: the 400 names every bad item at once
            bad[str(i)] = e.message
    if bad:
        raise InvalidRequest(
            f"{len(bad)} of {len(items)} items are invalid, none was submitted: "
            + "; ".join(list(bad.values())[:10])
            + ("; ..." if len(bad) > 10 else ""),
            {"items": bad},
        )
    named = {p.function.sha256 for _, p in parsed if isinstance(p, SharedPayload)}
    unused = sorted(set(functions) - named)
    if unused:
        raise InvalidRequest(
            f"functions {', '.join(unused)} are named by no item", {"functions": unused}
        )
    return parsed


def batch_item(
    data: Any, limit: int, functions: dict[str, Function], where: str = ""
) -> tuple[JobSpec, Payload]:
    """One batch item: `submit_item`'s, or one naming the function it calls (`"function":
    sha256`), whose bytes are among `functions` or stored already."""
    if not isinstance(data, dict) or "function" not in data:
        return submit_item(data, limit, where)
    rest = dict(data)
    sha256 = function_name(rest.pop("function"), f"{where}function")
    item_spec, arguments = submit_item(rest, limit, where)
    return item_spec, SharedPayload(functions.get(sha256, Function(sha256)), arguments)


def function_name(text: Any, what: str = "sha256") -> str:
    """A stored function's name: the sha256 of its bytes, as 64 lowercase hex digits."""
    if not isinstance(text, str) or not is_sha256(text):
        raise InvalidRequest(f"{what} must be a sha256: 64 lowercase hexadecimal digits")
    return text


def function_bytes(sha256: str, data: bytes, limit: int, what: str = "function") -> Function:
    """Bytes sent as the function `sha256`, checked: they must have that sha256 (the server
    stores what it can name, and never loads it)."""
    check_size(data, limit, what)
    if not data:
        raise InvalidRequest(f"{what}: a function's bytes cannot be empty")
    function = Function.of(bytes(data))
    if function.sha256 != sha256:
        raise InvalidRequest(
            f"{what}: the bytes sent as {sha256} have sha256 {function.sha256}",
            {"sha256": sha256, "received": function.sha256},
        )
    return function


def functions_field(value: Any, limit: int) -> dict[str, Function]:
    """A batch's `functions`: `{sha256: base64 of the bytes}`, each one checked."""
    if not isinstance(value, dict):
        raise InvalidRequest("functions must be an object mapping sha256 to base64 bytes")
    found = {}
    for key, text in value.items():
        sha256 = function_name(key, "functions: each key")
        data = payload(text, limit, f"functions.{sha256}")
        found[sha256] = function_bytes(sha256, data, limit, f"functions.{sha256}")
    return found


def schedule_json(body: bytes, what: str = "schedule") -> dict[str, Any]:
    """A schedule (or a change of one) from JSON: its job options' whole numbers as integers,
    as a submit's are; `schedules.ScheduleSpec` checks the rest."""
    data = json_object(body, what)
    if isinstance(data.get("job"), dict):
        data["job"] = _integers(data["job"])
    return data


_TYPE_FIELDS = {"description", "schema", "summarize", "owner", "interpreter", "cwd", "functions"}


def type_registration(name: str, body: bytes, limit: int) -> tuple[job_types.JobType, bytes]:
    """`PUT /jobs/api/types/{name}`: a kernel's job type (schema checked with jsonschema) and
    its functions' bytes (base64 of dill: stored, never loaded here)."""
    data = json_object(body, "job type")
    unknown = sorted(set(data) - _TYPE_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field(s) in a job type: {', '.join(unknown)}")
    if "functions" not in data:
        raise InvalidRequest("a job type needs its functions (base64 of their dill bytes)")
    for key in ("owner", "interpreter", "cwd"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{key} must be text or null, got {type(value).__name__}")
    if not isinstance(data.get("summarize", False), bool):
        raise InvalidRequest("summarize must be true or false")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("the job type contains text that is not valid Unicode") from None
    described = job_types.JobType(
        name=job_types.check_name(name),
        schema=job_types.check_schema(data.get("schema", {"type": "object"})),
        description=job_types.check_description(data.get("description", "")),
        source=job_types.REGISTERED,
        has_summarize=bool(data.get("summarize", False)),
        owner=data.get("owner") or "",
        interpreter=data.get("interpreter"),
        cwd=data.get("cwd"),
    )
    functions = payload(data["functions"], limit, "functions")
    if not functions:
        raise InvalidRequest("functions must not be empty")
    return described, functions


def channel_name(what: str, text: str) -> str:
    """A result channel's or reader's name from a URL (`channels.check_name`'s rule)."""
    return check_name(what, text)


def channel_ack(body: bytes) -> tuple[str, int]:
    """`POST /jobs/api/channels/{name}/ack`: `{"reader": name, "seq": n}` (reader optional)."""
    data = json_object(body)
    unknown = sorted(set(data) - {"reader", "seq"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}")
    reader = check_name("reader", data.get("reader", DEFAULT_READER))
    seq = data.get("seq")
    if isinstance(seq, float) and seq.is_integer():
        seq = int(seq)
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise InvalidRequest(f"seq must be an integer (a job's number in the channel), got {seq!r}")
    return reader, seq


def stream_name(text: str) -> str:
    """A log stream's name (`?stream=`): one line of text (`streams.check_label`)."""
    try:
        return check_label(text)
    except ValueError as e:
        raise InvalidRequest(f"stream: {e}") from None
