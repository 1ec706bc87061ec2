"""Submit options, declared once: what every client accepts, and how it becomes a `JobSpec`.

`Jobs.submit`/`map` (so `JobQueue` and `jj.*`), `%%job` and the CLI take the same options, listed
in `OPTIONS` below: the arguments of the magic and of `jupyter jobs run` and `schedule add`, the
submit signature and docstrings are generated from it, `JobSpec.validate` checks a spec against
it (`check`, in clients and in the server), and a test checks it against the `JobSpec` schema of
`server/openapi.yaml` (same names, types and bounds), so no client can drift from another or from
the server. It is light on purpose: kernels import it without the store, the consumer or the
executors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .models import MAX_DURATION, MAX_EPOCH, MAX_INT, JobSpec, Kind

TimeLike = float | int | dt.datetime | dt.timedelta | None


def as_epoch(value: TimeLike) -> float | None:
    """Accept epoch seconds, an aware/naive datetime (local time), or a delay from now."""
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return dt.datetime.now().timestamp() + value.total_seconds()
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


def job_ids(after: Any) -> list[int]:
    """`after=` accepts job handles (anything with an `id`) or ids, one or many."""
    if after is None:
        return []
    if isinstance(after, int) or hasattr(after, "id"):
        after = [after]
    return [int(a.id) if hasattr(a, "id") else int(a) for a in after]


def parse_ids(text: str) -> list[int]:
    """`--after 3,4`: comma-separated job ids (the magic's spelling of `after=`)."""
    ids = []
    for part in text.split(","):
        if part.strip():
            try:
                ids.append(int(part))
            except ValueError:
                raise argparse.ArgumentTypeError(f"takes job ids, got {part.strip()!r}") from None
    return ids


@dataclass(frozen=True)
class Option:
    """One submit option: its wire type and bounds (as in openapi.yaml's `JobSpec`), its
    default, what it means, and how `%%job` spells it (`flag`; None: not a magic argument)."""

    name: str
    type: type  # int, float, bool, str or list (of job ids)
    default: Any
    help: str
    nullable: bool = False
    #: What a number stands for, in the error that refuses one out of range.
    unit: str = "a number"
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    max_length: int | None = None
    #: A regular expression the whole text must match (JSON Schema's `pattern`, anchored).
    pattern: str | None = None
    #: The value a caller gives -> the spec's value (datetimes, handles ...).
    convert: Callable[[Any], Any] | None = None
    #: `%%job`'s flag; `parse` reads its text (a `store_true` flag when the type is bool).
    flag: str | None = None
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None

    def schema(self) -> dict[str, Any]:
        """This option as a JSON schema, in openapi.yaml's spelling."""
        json_type = {int: "integer", float: "number", bool: "boolean", str: "string"}
        if self.type is list:
            items = {"type": "integer", "minimum": 1, "maximum": MAX_INT}
            return {"type": "array", "items": items}
        schema: dict[str, Any] = {"type": json_type[self.type]}
        if self.nullable:
            schema["type"] = [schema["type"], "null"]
        bounds = (
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("exclusiveMinimum", self.exclusive_minimum),
            ("maxLength", self.max_length),
            ("pattern", self.pattern),
        )
        schema.update({key: value for key, value in bounds if value is not None})
        return schema


SECONDS = "a number of seconds"
#: A channel's (and a channel reader's) name: it is a segment of REST paths, so no slash.
CHANNEL_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_.:@+-]*$"
TIME = "a time (epoch seconds)"

OPTIONS: tuple[Option, ...] = (
    Option(
        "name",
        str,
        None,
        "the job's name (default: the function's, or the cell's first line)",
        max_length=500,
        flag="--name",
        metavar="NAME",
    ),
    Option(
        "priority",
        int,
        0,
        "higher runs first",
        minimum=-MAX_INT,
        maximum=MAX_INT,
        flag="--priority",
        parse=int,
    ),
    Option(
        "timeout",
        float,
        None,
        "seconds after which the job is killed",
        nullable=True,
        unit=SECONDS,
        exclusive_minimum=0,
        maximum=MAX_DURATION,
        flag="--timeout",
        parse=float,
        metavar="SECONDS",
    ),
    Option(
        "retries",
        int,
        0,
        "automatic retries after a failure",
        minimum=0,
        maximum=MAX_INT,
        flag="--retries",
        parse=int,
    ),
    Option(
        "retry_delay",
        float,
        1.0,
        "seconds before the first retry (doubling after)",
        unit=SECONDS,
        minimum=0,
        maximum=MAX_DURATION,
        flag="--retry-delay",
        parse=float,
        metavar="SECONDS",
    ),
    Option(
        "after",
        list,
        None,
        "jobs (handles or ids) that must succeed first",
        convert=job_ids,
        flag="--after",
        parse=parse_ids,
        metavar="IDS",
    ),
    Option(
        "run_at",
        float,
        None,
        "not before this time (epoch seconds, datetime, or a timedelta from now)",
        nullable=True,
        unit=TIME,
        minimum=0,
        maximum=MAX_EPOCH,
        convert=as_epoch,
    ),
    Option(
        "expires_at",
        float,
        None,
        "cancelled if still waiting at this time (as run_at)",
        nullable=True,
        unit=TIME,
        minimum=0,
        maximum=MAX_EPOCH,
        convert=as_epoch,
    ),
    Option(
        "hold",
        bool,
        False,
        "stored but held until released (`release(id)`, the sidebar, `jupyter jobs release`)",
        flag="--hold",
    ),
    Option(
        "channel",
        str,
        None,
        "a result channel: once finished, the job is delivered to each reader of the channel "
        "(`results(channel)`, `jupyter jobs results CHANNEL`), in the order jobs finish",
        nullable=True,
        max_length=200,
        pattern=CHANNEL_PATTERN,
        flag="--channel",
        metavar="NAME",
    ),
    Option(
        "fresh_worker",
        bool,
        False,
        "run in a new worker process that exits after the job (a one-time worker), so nothing "
        "an earlier job left in a warm worker can reach it",
        flag="--fresh-worker",
    ),
    Option(
        "idempotency_key",
        str,
        None,
        "a submit with a key already used returns that job instead of storing another",
        nullable=True,
    ),
    Option(
        "interpreter",
        str,
        None,
        "the Python that runs the job (a kernel's: its own)",
        nullable=True,
    ),
    Option(
        "cwd",
        str,
        None,
        "the working directory of the job (a kernel's: its own)",
        nullable=True,
    ),
)

BY_NAME = {option.name: option for option in OPTIONS}

_ACCEPTS: dict[type, tuple[type, ...]] = {float: (int, float)}
_TYPE_WORDS = {int: "int", float: "a number", bool: "bool", str: "str", list: "list"}


def check(spec: JobSpec) -> None:
    """Refuse a spec whose option fields break their declaration (`JobSpec.validate` calls
    this on every submit, in clients and in the server): `InvalidRequest` names the field."""
    from .errors import InvalidRequest

    for option in OPTIONS:
        name, value = option.name, getattr(spec, option.name)
        if value is None and option.nullable:
            continue
        word = _TYPE_WORDS[option.type]
        if isinstance(value, bool) and option.type is not bool:
            raise InvalidRequest(f"{name} must be {word}, not a boolean")
        if not isinstance(value, _ACCEPTS.get(option.type, (option.type,))):
            raise InvalidRequest(f"{name} must be {word}, got {value!r}")
        if option.type is list:
            _check_ids(value)
        elif option.type is int and not option.minimum <= value <= option.maximum:
            raise InvalidRequest(
                f"{name} must be between {option.minimum} and {option.maximum}, got {value}"
            )
        elif option.type is float:
            # A number that is not finite, or beyond what a date can be, would break every
            # reader (JSON has no Infinity; rendering a date of 1e300 raises).
            low = option.minimum if option.minimum is not None else option.exclusive_minimum
            if not (math.isfinite(value) and low <= value <= option.maximum):
                raise InvalidRequest(
                    f"{name} must be {option.unit} between {low:g} and {option.maximum:g}, "
                    f"got {value!r}"
                )
            if option.exclusive_minimum is not None and value <= option.exclusive_minimum:
                raise InvalidRequest(f"{name} must be positive")
        elif option.max_length is not None and len(value) > option.max_length:
            raise InvalidRequest(f"{name} is longer than {option.max_length} characters")
        elif option.pattern is not None and not re.fullmatch(option.pattern, value):
            raise InvalidRequest(f"{name} {value[:50]!r} does not match {option.pattern}")


def _check_ids(after: list[Any]) -> None:
    from .errors import InvalidRequest

    if not all(isinstance(a, int) and not isinstance(a, bool) for a in after):
        raise InvalidRequest("after must be a list of job ids (integers)")
    if not all(0 < a <= MAX_INT for a in after):
        raise InvalidRequest("after must list job ids, positive 64-bit integers")


def split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`submit(fn, *args, **kwargs)`'s keywords: (the submit options, the function's own)."""
    options = {k: v for k, v in kwargs.items() if k in BY_NAME}
    rest = {k: v for k, v in kwargs.items() if k not in BY_NAME}
    return options, rest


def function_name(fn: Callable[..., Any], name: str | None = None) -> str:
    """The job name: the one given, else the function's qualified name."""
    return name or getattr(fn, "__qualname__", None) or repr(fn)


def build_spec(
    kind: Kind,
    name: str,
    owner: str,
    options: dict[str, Any],
    *,
    interpreter: str | None = None,
    cwd: str | None = None,
    type: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> JobSpec:
    """A validated spec from submit options; `interpreter`/`cwd` are the client's defaults;
    `type` and `parameters` a typed job's.

    `options` may also carry `options` (the kind's own settings, e.g. a cell's names to send
    back). Unknown options raise TypeError (naming them) and bad values InvalidRequest, before
    anything is stored or sent.
    """
    unknown = sorted(set(options) - set(BY_NAME) - {"options"})
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for option in OPTIONS[1:]:  # the name is given apart
        value = options.get(option.name, option.default)
        values[option.name] = value if option.convert is None else option.convert(value)
    values["interpreter"] = values.get("interpreter") or interpreter
    values["cwd"] = values.get("cwd") or cwd
    kind_options = options.get("options") or {}
    spec = JobSpec(
        kind=kind,
        name=name,
        owner=owner,
        options=kind_options,
        type=type,
        parameters=parameters,
        **values,
    )
    spec.validate()
    return spec


def add_arguments(
    parser: argparse.ArgumentParser, only: Collection[str] | None = None
) -> list[str]:
    """The arguments of the options that have a `flag` (`%%job`'s, the CLI's), of those named
    in `only` if given; returns their names (each argument's `dest`). An option left out stays
    None, so its default is `OPTIONS`' own."""
    names = []
    for option in OPTIONS:
        if option.flag is None or (only is not None and option.name not in only):
            continue
        names.append(option.name)
        if option.type is bool:
            parser.add_argument(
                option.flag, dest=option.name, action="store_true", default=None, help=option.help
            )
            continue
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=option.parse,
            metavar=option.metavar,
            help=f"{option.help} (default {option.default})"
            if option.default is not None
            else option.help,
        )
    return names


def given(args: Mapping[str, Any], names: Iterable[str] = BY_NAME) -> dict[str, Any]:
    """The options (of `names`) given on a command line parsed with `add_arguments`: those
    left out are None there, and absent here."""
    return {name: value for name in names if (value := args.get(name)) is not None}


def describe(options: Iterable[Option] = OPTIONS) -> str:
    """The options as a docstring section (appended to the submit functions' docstrings)."""
    lines = ["", "Options (`jupyter_jobs.options.OPTIONS`):"]
    lines += [f"    {o.name} (default {o.default!r}): {o.help}." for o in options]
    return "\n".join(lines) + "\n"


def submit_signature(*, method: bool = False) -> inspect.Signature:
    """`submit(fn, /, *args, <options>, **kwargs)`, for `help()` and editors."""
    p = inspect.Parameter
    head = [p("self", p.POSITIONAL_ONLY)] if method else []
    head += [p("fn", p.POSITIONAL_ONLY), p("args", p.VAR_POSITIONAL)]
    keywords = [p(o.name, p.KEYWORD_ONLY, default=o.default) for o in OPTIONS]
    return inspect.Signature([*head, *keywords, p("kwargs", p.VAR_KEYWORD)])
