"""The submit options are declared once (`options.OPTIONS`): the REST schema (checked here), the
spec's checks (`options.check`, from `JobSpec.validate`), `%%job`'s arguments and the submit
functions' signatures and docstrings all follow that declaration."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import yaml

from jupyter_jobs import options
from jupyter_jobs.errors import InvalidRequest
from jupyter_jobs.front import Jobs
from jupyter_jobs.kernel import api
from jupyter_jobs.kernel.magics import _cell_options, parse_cell_options
from jupyter_jobs.models import Kind

SPEC = Path(options.__file__).parent / "server" / "openapi.yaml"
#: JobSpec fields a client fills in itself, never a caller's option.
CLIENT_FIELDS = {"kind", "owner", "options"}


def job_spec_schema() -> dict[str, dict]:
    return yaml.safe_load(SPEC.read_text())["components"]["schemas"]["JobSpec"]["properties"]


def test_every_option_is_in_the_openapi_job_spec_with_the_same_type_and_bounds():
    schema = job_spec_schema()
    assert set(options.BY_NAME) == set(schema) - CLIENT_FIELDS
    for option in options.OPTIONS:
        assert option.schema() == schema[option.name], option.name


def build(**given):
    return options.build_spec(Kind.FUNCTION, "job", "me", given)


def beyond(value: float | int) -> float | int:
    """The next value past an upper bound: +1 for integers, the next float for floats."""
    return value + 1 if isinstance(value, int) else math.nextafter(value, math.inf)


def below(value: float | int) -> float | int:
    return value - 1 if isinstance(value, int) else math.nextafter(value, -math.inf)


@pytest.mark.parametrize("option", [o for o in options.OPTIONS if o.type in (int, float)])
def test_the_spec_accepts_the_declared_bounds_and_refuses_what_lies_beyond(option):
    cast = option.type
    if option.maximum is not None:
        build(**{option.name: cast(option.maximum)})
        with pytest.raises(InvalidRequest, match=option.name):
            build(**{option.name: beyond(cast(option.maximum))})
    if option.minimum is not None:
        build(**{option.name: cast(option.minimum)})
        with pytest.raises(InvalidRequest, match=option.name):
            build(**{option.name: below(cast(option.minimum))})
    if option.exclusive_minimum is not None:
        with pytest.raises(InvalidRequest, match=option.name):
            build(**{option.name: cast(option.exclusive_minimum)})


def test_the_name_is_refused_past_its_declared_length():
    limit = options.BY_NAME["name"].max_length
    assert options.build_spec(Kind.FUNCTION, "x" * limit, "me", {}).name == "x" * limit
    with pytest.raises(InvalidRequest, match="name"):
        options.build_spec(Kind.FUNCTION, "x" * (limit + 1), "me", {})


def test_an_option_not_given_takes_its_declared_default():
    spec = build()
    for option in options.OPTIONS[1:]:
        expected = [] if option.name == "after" else option.default
        assert getattr(spec, option.name) == expected, option.name


def test_unknown_options_are_named():
    with pytest.raises(TypeError, match="priorty"):
        build(priorty=3)


def test_the_job_magic_offers_exactly_the_options_that_declare_a_flag():
    flags = {a.dest for a in _cell_options.parser._actions if a.dest in options.BY_NAME}
    assert flags == {o.name for o in options.OPTIONS if o.flag is not None}
    for option in options.OPTIONS:
        if option.flag is not None:
            assert option.flag in _cell_options.__doc__
    assert parse_cell_options("--after 3 --hold").submit == {"after": [3], "hold": True}


def test_the_submit_functions_show_every_option_in_signature_and_docstring():
    for fn in (Jobs.submit, api.submit):
        params = inspect.signature(fn).parameters
        for option in options.OPTIONS:
            assert params[option.name].default == option.default
            assert option.name in fn.__doc__
    assert list(inspect.signature(api.submit).parameters)[:2] == ["fn", "args"]


def test_an_option_given_as_none_where_none_is_no_value_is_refused():
    with pytest.raises(InvalidRequest, match="priority"):
        build(priority=None)
    assert build(timeout=None).timeout is None
