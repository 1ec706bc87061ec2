"""Job types: jobs started by name with JSON parameters, so that an app needs no pickles.

A job type is a run function, a JSON schema of its parameters and, optionally, a `summarize`
function that turns a finished run into a short JSON view served with the job's status. Types
come from two places:

- **Installed** (the `jupyter_jobs.types` entry point group): `train = mlapp.jobs:train` names
  the run function; `@job_type(schema=...)` on it gives the schema and `summarize`. Only
  workers (and processes that ask, such as `JobQueue` or the CLI) import it: the server learns
  the schemas from `python -m jupyter_jobs.typed_run describe`, run in a worker's interpreter.
- **Registered from a kernel** (`@jupyter_jobs.job_type("train", schema=...)` on a function
  defined in the notebook): its name, schema and the dill bytes of its functions are kept in
  the job database (`store/types.py`), so they survive a restart; the server never loads the
  bytes, it copies them into each job's payload for the worker.

This module is the vocabulary every side shares, and is light on purpose (no dill, no store):
the `JobType` record, the decorator, the checks (names, schemas with `jsonschema`, parameters
named by their path), the payload a worker reads, and the result (JSON when the value is
plain JSON, so apps read it over REST; else dill's pickle, which always starts with byte 0x80,
or a framed pickle with its arrays beside it, `buffers.MAGIC`).
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import buffers
from .errors import InvalidRequest

#: The entry point group of installed job types (`name = module:function`).
ENTRY_POINT_GROUP = "jupyter_jobs.types"
#: A type's name: what `POST /jobs/api/jobs` and the URL `/types/{name}` carry.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
#: The attribute `job_type` sets on a run function: its `JobType` description.
ATTRIBUTE = "__job_type__"
#: The largest summary kept (JSON text, bytes): a summary is a short view, not a result.
MAX_SUMMARY = 64 * 2**10
#: The largest schema accepted (JSON text, bytes).
MAX_SCHEMA = 256 * 2**10
#: Every pickle dill writes (protocol 2 or later) starts with this byte; JSON text never does.
PICKLE_MARK = 0x80

INSTALLED = "installed"
REGISTERED = "registered"


@dataclass
class JobType:
    """A job type as every front end shows it (`GET /jobs/api/types`).

    `source` is "installed" (an entry point, run by importing `entry_point` in the worker) or
    "registered" (from a kernel or a script: its functions are dill bytes kept in the store,
    with the `interpreter` and `cwd` of the process that registered it, where its jobs run
    unless told otherwise). `error` says why an installed type cannot be loaded (it is listed, but
    refuses submits). `run` and `summarize` are the functions themselves, where they are
    loaded (a worker, or the process that defined them); never sent as JSON.
    """

    name: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    description: str = ""
    source: str = INSTALLED
    entry_point: str | None = None
    has_summarize: bool = False
    owner: str = ""
    interpreter: str | None = None
    cwd: str | None = None
    created_at: float | None = None
    error: str | None = None
    run: Callable[..., Any] | None = field(default=None, repr=False, compare=False)
    summarize: Callable[[TypedRun], Any] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The REST and CLI shape (openapi.yaml's `JobType`): everything but the functions."""
        return {
            "name": self.name,
            "description": self.description,
            "schema": self.schema,
            "source": self.source,
            "entry_point": self.entry_point,
            "summarize": self.has_summarize,
            "owner": self.owner,
            "interpreter": self.interpreter,
            "cwd": self.cwd,
            "created_at": self.created_at,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobType:
        """The inverse of `to_json` (clients of the REST API; `typed_run describe`'s output)."""
        fields = {k: data[k] for k in _JSON_FIELDS if k in data}
        fields["has_summarize"] = bool(data.get("summarize"))
        return cls(**fields)


_JSON_FIELDS = (
    "name", "schema", "description", "source", "entry_point", "owner", "interpreter", "cwd",
    "created_at", "error",
)  # fmt: skip


@dataclass
class TypedRun:
    """What `summarize(job)` is given in the worker, once the run function has returned.

    `result` is the value the run function returned (not its bytes); `parameters` the JSON
    parameters it was called with.
    """

    id: int
    attempt: int
    type: str
    parameters: dict[str, Any]
    result: Any


@dataclass(frozen=True)
class Declaration:
    """What `@job_type(...)` said of a function, as given: checked only when the type is
    described (`describe_function`), so that importing a package of types in a worker stays
    cheap (jsonschema is not imported there)."""

    name: str | None = None
    schema: dict[str, Any] | None = None
    summarize: Callable[[TypedRun], Any] | None = None
    description: str | None = None


def job_type(
    name: str | None = None,
    schema: dict[str, Any] | None = None,
    *,
    summarize: Callable[[TypedRun], Any] | None = None,
    description: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare `fn` a job type: its name (default: the function's), the JSON schema of its
    parameters (default: one made from its signature, see `schema_from_signature`) and an
    optional `summarize(job)`. The function is returned unchanged, with the declaration in its
    `__job_type__` attribute: an entry point naming it gives the type its schema, and
    `jupyter_jobs.job_type` in a kernel also registers it with the server.
    """
    if summarize is not None and not callable(summarize):
        raise TypeError("summarize must be a function of the finished job")
    declared = Declaration(name, schema, summarize, description)

    def declare(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"job_type decorates a function, got {type(fn).__name__}")
        setattr(fn, ATTRIBUTE, declared)
        return fn

    return declare


def summarize_of(fn: Callable[..., Any]) -> Callable[[TypedRun], Any] | None:
    """The `summarize` declared with a run function, if any (what a worker needs of it)."""
    declared = getattr(fn, ATTRIBUTE, None)
    return declared.summarize if isinstance(declared, Declaration) else None


def describe_function(
    fn: Callable[..., Any],
    name: str | None = None,
    schema: dict[str, Any] | None = None,
    summarize: Callable[[TypedRun], Any] | None = None,
    description: str | None = None,
) -> JobType:
    """The `JobType` of a run function: what is given here, else what `@job_type` declared;
    its name, schema (with jsonschema) and description checked."""
    declared = getattr(fn, ATTRIBUTE, None)
    if isinstance(declared, Declaration):
        name = name or declared.name
        schema = schema if schema is not None else declared.schema
        summarize = summarize or declared.summarize
        description = description if description is not None else declared.description
    type_name = check_name(name or getattr(fn, "__name__", ""))
    doc = description if description is not None else inspect.getdoc(fn) or ""
    return JobType(
        name=type_name,
        schema=check_schema(schema if schema is not None else schema_from_signature(fn)),
        description=check_description(doc),
        has_summarize=summarize is not None,
        run=fn,
        summarize=summarize,
    )


def check_name(name: Any) -> str:
    """A type's name, or `InvalidRequest` saying what a name may be."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidRequest(
            f"job type name {str(name)[:50]!r} is not valid: a letter or _, then up to 99 "
            "letters, digits, _, . or -",
            {"type": str(name)[:200]},
        )
    return name


def check_description(text: Any) -> str:
    if not isinstance(text, str):
        raise InvalidRequest(f"description must be text, got {type(text).__name__}")
    return text[:2000]


def check_schema(schema: Any) -> dict[str, Any]:
    """A JSON schema of parameters: a JSON object, valid for its own dialect (`$schema`, else
    the latest `jsonschema` knows), describing an object (the parameters are keywords)."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        raise InvalidRequest(f"schema must be a JSON object, got {type(schema).__name__}")
    try:
        text = json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"schema must be JSON: {exc}") from None
    if len(text) > MAX_SCHEMA:
        raise InvalidRequest(f"schema is larger than {MAX_SCHEMA} bytes")
    if schema.get("type", "object") != "object":
        raise InvalidRequest(
            f'schema must describe an object ("type": "object"): parameters are keywords, '
            f"got type {schema.get('type')!r}"
        )
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise InvalidRequest(
            f"schema is not a valid JSON schema{f' at {where}' if where else ''}: {exc.message}"
        ) from None
    return json.loads(text)


def check_parameters(job_type: JobType, parameters: Any) -> dict[str, Any]:
    """The parameters, if they are valid for the type's schema; else `InvalidRequest` naming
    every offending parameter by its path (`parameters.epochs`), with the schema's reason."""
    from jsonschema.validators import validator_for

    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise InvalidRequest(
            f"parameters must be an object of name: value, got {type(parameters).__name__}"
        )
    try:  # as the job will have them: JSON (a tuple is a list there)
        parameters = json.loads(json.dumps(parameters, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"parameters must be JSON values: {exc}", {"type": job_type.name}
        ) from None
    cls = validator_for(job_type.schema)
    validator = cls(job_type.schema, format_checker=cls.FORMAT_CHECKER)
    problems: dict[str, str] = {}
    for error in validator.iter_errors(parameters):
        for where, why in _explain(error):
            problems.setdefault(where, why)
    if problems:
        listed = "; ".join(f"{where}: {why}" for where, why in sorted(problems.items())[:10])
        raise InvalidRequest(
            f"job type {job_type.name!r}: {listed}",
            {"type": job_type.name, "parameters": problems},
        )
    return parameters


def _explain(error: Any) -> Iterable[tuple[str, str]]:
    """(path, reason) of one jsonschema error: a missing property is named by its own path."""
    base = "parameters" + "".join(
        f".{p}" if isinstance(p, str) and NAME.fullmatch(p) else f"[{json.dumps(p)}]"
        for p in error.absolute_path
    )
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [r for r in error.validator_value if r not in error.instance]
        return [(f"{base}.{name}", "is required") for name in missing] or [(base, error.message)]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set((error.schema or {}).get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        return [(f"{base}.{name}", "is not a parameter of this type") for name in extra]
    return [(base, error.message[:300])]


def schema_from_signature(fn: Callable[..., Any]) -> dict[str, Any]:
    """A schema from the run function's keyword parameters: their annotations (int, float,
    str, bool, list, dict) and defaults; parameters without a default are required, and
    others are refused unless the function takes `**kwargs`."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return {"type": "object"}
    properties: dict[str, Any] = {}
    required: list[str] = []
    open_ended = False
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            open_ended = True
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.POSITIONAL_ONLY):
            continue
        prop: dict[str, Any] = {}
        json_type = _JSON_TYPES.get(_annotation_name(parameter.annotation))
        if json_type:
            prop["type"] = json_type
        if parameter.default is parameter.empty:
            required.append(parameter.name)
        elif plain_json(parameter.default):
            prop["default"] = parameter.default
        properties[parameter.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if not open_ended:
        schema["additionalProperties"] = False
    return schema


_JSON_TYPES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
}


def _annotation_name(annotation: Any) -> str:
    """`int` or "int" (a postponed annotation, quoted or not) -> "int"; else ""."""
    if isinstance(annotation, str):
        return annotation.strip().strip("'\"")
    return getattr(annotation, "__name__", "") if isinstance(annotation, type) else ""


# --- what a worker reads -------------------------------------------------------------------


@dataclass
class TypedPayload:
    """A typed job's payload: the type and parameters, where its run function comes from (an
    entry point's `module:function`, or the dill bytes of a kernel type's functions).

    `takes_scheduled_time` is a typed schedule's: its type's schema declares the parameter
    `scheduled_time`, which each run receives (`schedules.run_parameters`); a job's payload
    never has it."""

    type: str
    parameters: dict[str, Any]
    entry_point: str | None = None
    functions: bytes = b""
    takes_scheduled_time: bool = False


def encode_payload(payload: TypedPayload) -> bytes:
    """One JSON line (newlines inside strings are escaped by `json.dumps`), then the function
    bytes if any: the server builds it without loading them, the worker splits it."""
    head: dict[str, Any] = {"type": payload.type, "parameters": payload.parameters}
    if payload.entry_point is not None:
        head["entry_point"] = payload.entry_point
    if payload.takes_scheduled_time:
        head["takes_scheduled_time"] = True
    return json.dumps(head, ensure_ascii=False).encode("utf-8") + b"\n" + payload.functions


def decode_payload(data: bytes | memoryview, functions_apart: bool = False) -> TypedPayload:
    """The inverse of `encode_payload`; `InvalidRequest` for bytes that are not one.
    `functions_apart`: a kernel type's functions come apart (stored once: `shared.py`)."""
    head, _, functions = bytes(data).partition(b"\n")
    try:
        document = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("a typed job's payload must start with its JSON line") from None
    if not isinstance(document, dict) or not isinstance(document.get("parameters"), dict):
        raise InvalidRequest("a typed job's payload must name its type and parameters")
    entry_point = document.get("entry_point")
    if entry_point is None and not functions and not functions_apart:
        raise InvalidRequest("a typed job's payload has neither an entry point nor functions")
    return TypedPayload(
        str(document.get("type")),
        document["parameters"],
        entry_point,
        functions,
        document.get("takes_scheduled_time") is True,
    )


# --- results -------------------------------------------------------------------------------


def plain_json(value: Any, depth: int = 0) -> bool:
    """Whether `value` comes back the same from JSON: dicts with text keys, lists, text,
    finite numbers, booleans and None (a tuple would come back a list; it goes as a pickle)."""
    if depth > 100:
        return False
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(plain_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v, depth + 1) for k, v in value.items())
    return False


def encode_result(value: Any, pickle: Callable[[Any], bytes]) -> bytes:
    """A typed job's result bytes: UTF-8 JSON when the value is plain JSON, else `pickle`'s."""
    if plain_json(value):
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    return pickle(value)


def is_pickle(data: bytes) -> bool:
    """Whether result bytes are a pickle, plain or framed (else they are JSON, or empty)."""
    return len(data) > 0 and (data[0] == PICKLE_MARK or buffers.is_framed(data))


def decode_result(data: bytes) -> Any:
    """A typed job's value from its result bytes (dill only for a pickle: client side)."""
    if is_pickle(data):
        from . import payload  # dill: not for the server, which only reads this module

        return payload.loads(data)
    return json.loads(bytes(data).decode("utf-8"))


def summary_json(summary: Any) -> Any:
    """The summary to store, or `InvalidRequest` saying why it cannot be (not plain JSON, or
    over MAX_SUMMARY bytes)."""
    if not plain_json(summary):
        raise InvalidRequest(
            f"summarize returned a {type(summary).__name__}, which is not plain JSON "
            "(use dicts with text keys, lists, text, numbers, booleans, None)"
        )
    size = len(json.dumps(summary, ensure_ascii=False).encode("utf-8"))
    if size > MAX_SUMMARY:
        raise InvalidRequest(f"summarize returned {size} bytes of JSON, over {MAX_SUMMARY}")
    return summary
