"""`%%job` option parsing, default names, tables, and the clear errors users get."""

from __future__ import annotations

import gc
import socket
import sys
import weakref

import numpy as np
import pytest
from IPython.core.error import UsageError

from jupyter_jobs.kernel import api
from jupyter_jobs.kernel.client import HttpBackend
from jupyter_jobs.kernel.magics import (
    default_name,
    jobs_table,
    load_ipython_extension,
    parse_cell_options,
)
from jupyter_jobs.models import Job, Kind, Status


def test_defaults_leave_every_submit_option_to_its_declared_default():
    opts = parse_cell_options("")
    assert opts.submit == {} and opts.after == [] and opts.return_names is None
    assert not opts.no_return and opts.out is None and not opts.wait


def test_unclosed_quotes_are_a_usage_error():
    with pytest.raises(UsageError, match="quotation"):
        parse_cell_options('--name "half')


def test_every_option():
    opts = parse_cell_options(
        '--name "my job" --priority 5 --timeout 2.5 --retries 3 --retry-delay 0.5 --after 4,7 '
        "--hold --return a,b --out handle --wait"
    )
    assert opts.submit == {
        "name": "my job",
        "priority": 5,
        "timeout": 2.5,
        "retries": 3,
        "retry_delay": 0.5,
        "after": [4, 7],
        "hold": True,
    }
    assert opts.after == [4, 7]
    assert opts.return_names == ["a", "b"]
    assert opts.out == "handle"
    assert opts.wait


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--return a --no-return", "exclude each other"),
        ("--after 3,x", "'x'"),
        ("--out 1abc", "--out needs a variable name"),
        ("--return a,2b", "--return takes comma-separated names"),
        ("--priority high", "priority"),
        ("--bogus", "unrecognized arguments"),
    ],
)
def test_bad_options_are_usage_errors_that_name_the_problem(line, message):
    with pytest.raises(UsageError, match=message):
        parse_cell_options(line)


def test_default_name_is_the_first_line_of_code_past_imports_and_comments():
    assert default_name("# load\nimport time\n\nresult = crunch(data)\n") == "result = crunch(data)"
    assert default_name("import numpy as np\n") == "import numpy as np"
    assert default_name("\n\n") == "cell"
    assert len(default_name("x = " + "1" * 200)) == 60


def record(job_id: int, name: str, status: Status) -> Job:
    return Job(id=job_id, name=name, kind=Kind.CELL, owner="nb.ipynb", status=status)


def test_jobs_table_escapes_names_and_lists_every_job():
    table = jobs_table(
        [record(2, "<b>bold</b>", Status.RUNNING), record(1, "plain", Status.FAILED)]
    )
    assert "&lt;b&gt;bold&lt;/b&gt;" in table["text/html"]
    assert "<b>bold</b>" not in table["text/html"]
    lines = table["text/plain"].splitlines()
    assert lines[0].split()[:3] == ["id", "name", "status"]
    assert lines[1].startswith("2 ") and "running" in lines[1]
    assert lines[2].startswith("1 ") and "failed" in lines[2]
    assert jobs_table([])["text/plain"] == "no jobs"


@pytest.fixture
def shell(monkeypatch):
    """A real IPython shell with the extension loaded, and no server to talk to."""
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    load_ipython_extension(ip)
    api.reset_connection()
    yield ip
    api.reset_connection()


def test_line_magic_usage(shell):
    with pytest.raises(UsageError, match=r"show\|logs\|cancel\|retry\|release\|result\|attach ID"):
        shell.run_line_magic("job", "explode 3")
    with pytest.raises(UsageError, match="usage"):
        shell.run_line_magic("job", "show notanumber")


@pytest.mark.parametrize(
    ("magic", "line", "message"),
    [
        ("jobs", "--bogus", r"unrecognized arguments: --bogus"),
        ("jobs", "extra", r"unrecognized arguments: extra"),
        ("jobs", "--status", r"--status: expected one argument"),
        ("jobs", "--status 'a", r"No closing quotation"),
        ("job", "show 'x", r"No closing quotation"),
    ],
)
def test_bad_magic_lines_say_what_is_wrong(shell, magic, line, message):
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic(magic, line)


def test_an_unshippable_variable_is_named_before_anything_is_sent(shell, monkeypatch):
    monkeypatch.setenv("JUPYTER_JOBS_URL", "http://127.0.0.1:9/")  # never contacted
    shell.user_ns["numbers"] = (i for i in range(3))  # a generator cannot travel
    with pytest.raises(UsageError, match="PayloadError: variable 'numbers' \\(generator\\)"):
        shell.run_cell_magic("job", "", "y = sum(numbers)\n")
    assert "y" not in shell.user_ns


def test_no_server_says_how_to_start_one(shell, monkeypatch):
    monkeypatch.delenv("JUPYTER_JOBS_URL", raising=False)  # and the runtime dir is empty
    with pytest.raises(UsageError, match="jupyter lab"):
        shell.run_cell_magic("job", "", "y = 1\n")


def test_a_server_that_does_not_answer_says_how_to_start_one(shell, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("JUPYTER_JOBS_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(UsageError, match=rf"127\.0\.0\.1:{port}.*does not answer.*jupyter lab"):
        shell.run_line_magic("jobs", "")


def test_an_error_leaving_the_magic_keeps_none_of_the_cell_s_variables(shell, monkeypatch):
    """IPython keeps the last error (`sys.last_traceback`) until the next one: the magic's
    frames in it must not hold the payload built from the cell's variables, so `del` frees
    them as after a failed inline cell."""
    with socket.socket() as s:  # a port nobody listens on: the submit fails after the payload
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("JUPYTER_JOBS_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.setattr(HttpBackend, "submit_patience", 0.0)
    big = shell.user_ns["big"] = np.ones(2**17)  # above buffers.THRESHOLD: sent beside
    alive = weakref.ref(big)
    del big
    result = shell.run_cell("%%job --wait\ntotal = big.sum()\n")
    error = result.error_in_exec
    assert isinstance(error, UsageError) and "does not answer" in str(error)
    assert sys.last_value is error  # kept by IPython, as after any failed cell
    del error
    del shell.user_ns["big"]
    gc.collect()
    assert alive() is None, "the failed submit's frames keep the cell's variable"
