"""The runner in real worker processes: results, errors, cells, output capture, progress.

Jobs go through the LocalExecutor (the runner's only client), so every test here runs the real
`python -m jupyter_jobs.runner`; tests of process management are in test_local_executor.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import dill
import pytest

from jupyter_jobs import payload, protocol, rng
from jupyter_jobs.executors.base import Task
from jupyter_jobs.executors.processes import spawn_runner
from jupyter_jobs.models import FileBytes, Kind, Reason, Status

import workers_util as wu


@pytest.fixture
def recorder() -> wu.Recorder:
    return wu.Recorder()


@pytest.fixture
async def executor(recorder):
    async with wu.running_executor(recorder, log_limit=1024 * 1024) as executor:
        yield executor


async def run(executor, recorder, task: Task, timeout: float = 60.0):
    await executor.run(task)
    return await recorder.done(task.job_id, timeout)


def outputs_of(outcome) -> list[dict]:
    return json.loads(outcome.outputs)


# -- function jobs ----------------------------------------------------------------------------


async def test_function_result_comes_back_as_dill_bytes(executor, recorder):
    outcome = await run(executor, recorder, wu.function_task(wu.add, 2, b=40))
    assert outcome.status is Status.SUCCEEDED
    assert dill.loads(outcome.result) == 42
    assert outcome.outputs is None


async def test_job_sees_its_context_and_the_public_progress_api(executor, recorder):
    task = wu.function_task(wu.whoami)
    task.attempt = 3
    outcome = await run(executor, recorder, task)
    assert dill.loads(outcome.result)["job"] == (task.job_id, 3)

    task = wu.function_task(wu.public_api)
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    assert dill.loads(outcome.result) == (task.job_id, 1)
    assert [(p.done, p.total, p.message) for p in recorder.progress[task.job_id]] == [
        (1.0, 2.0, "half")
    ]


async def test_exception_reports_type_message_and_the_jobs_own_traceback(executor, recorder):
    outcome = await run(executor, recorder, wu.function_task(wu.outer_fails, "bad input"))
    assert outcome.status is Status.FAILED
    assert outcome.reason is Reason.ERROR
    assert outcome.error.type == "ValueError"
    assert outcome.error.message == "bad input"
    tb = outcome.error.traceback
    assert "outer_fails" in tb and "inner_fails" in tb
    assert "runner.py" not in tb
    assert tb.strip().endswith("ValueError: bad input")


async def test_system_exit_fails_the_job_not_the_worker(executor, recorder):
    outcome = await run(executor, recorder, wu.function_task(sys.exit, 4))
    assert outcome.reason is Reason.ERROR and outcome.error.type == "SystemExit"
    outcome = await run(executor, recorder, wu.function_task(wu.add, 1, 1))
    assert dill.loads(outcome.result) == 2


async def test_unserializable_result_fails_naming_its_type(executor, recorder):
    outcome = await run(executor, recorder, wu.function_task(wu.returns_generator))
    assert outcome.status is Status.FAILED and outcome.reason is Reason.ERROR
    assert "generator" in outcome.error.message
    assert "cannot be sent back" in outcome.error.message


async def test_payload_the_worker_cannot_load_fails_with_reason_payload(executor, recorder):
    # A pickle that names a module the worker does not have (GLOBAL opcode, then STOP).
    task = Task(wu.next_id(), 1, Kind.FUNCTION, "broken", b"cno_such_module_here\nthing\n.")
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.FAILED
    assert outcome.reason is Reason.PAYLOAD
    assert outcome.error.type == "ModuleNotFoundError"
    assert "no_such_module_here" in outcome.error.message
    assert "could not be loaded in the worker" in outcome.error.message
    # The worker survived: the next job runs.
    assert dill.loads((await run(executor, recorder, wu.function_task(wu.add, 1))).result) == 1


async def test_job_runs_in_the_requested_directory_and_imports_from_it(
    executor, recorder, tmp_path
):
    (tmp_path / "localmod.py").write_text("VALUE = 'from the notebook folder'\n")
    code = "import localmod\nfound = localmod.VALUE\nimport os\nhere = os.getcwd()"
    task = wu.cell_task(code, **{"return": ["found", "here"]})
    task.cwd = str(tmp_path)
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    values = dill.loads(outcome.result)["values"]
    assert values["found"] == "from the notebook folder"
    assert values["here"] == str(tmp_path)

    task = wu.function_task(wu.whoami)
    task.cwd = str(tmp_path / "missing")
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.FAILED and "missing" in outcome.error.message


def python_at_another_path(env_dir: Path) -> Path:
    """A Python at a new path that imports what this one imports: a fresh virtualenv whose `.pth`
    adds this interpreter's site directories (their own `.pth` files, editable installs, too).

    A bare link to `sys.executable` would do only outside a virtualenv: the linked python finds
    no `pyvenv.cfg` beside it and starts as the base interpreter, without the venv's packages.
    """
    venv.create(env_dir, with_pip=False, symlinks=os.name != "nt")
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    ask = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = subprocess.run(
        [python, "-c", ask], capture_output=True, text=True, check=True
    ).stdout.strip()
    sites = [
        *site.getsitepackages(),
        *([site.getusersitepackages()] if site.ENABLE_USER_SITE else []),
    ]
    lines = [f"import site; site.addsitedir({d!r})" for d in sites]
    Path(purelib, "this_environment.pth").write_text("\n".join(lines) + "\n")
    return python


async def test_job_runs_with_the_requested_interpreter(executor, recorder, tmp_path):
    other = python_at_another_path(tmp_path / "other-env")
    task = wu.function_task(wu.whoami)
    task.interpreter = str(other)
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    assert dill.loads(outcome.result)["executable"] == str(other)
    default = dill.loads((await run(executor, recorder, wu.function_task(wu.whoami))).result)
    assert default["executable"] == sys.executable


# -- output capture ---------------------------------------------------------------------------


async def test_logs_stream_while_running_in_order_with_fd_level_output(
    executor, recorder, tmp_path
):
    gate = tmp_path / "gate"
    task = wu.function_task(wu.mixed_output, str(gate))
    await executor.run(task)
    # Everything printed before the gate reaches the executor while the job still runs.
    await recorder.log_contains(task.job_id, "to stderr")
    await recorder.log_contains(task.job_id, "three")
    assert task.job_id not in recorder.outcomes
    gate.write_text("open")
    outcome = await recorder.done(task.job_id)
    assert outcome.status is Status.SUCCEEDED
    text = recorder.log_text(task.job_id)
    stdout_lines = [line for line in text.splitlines() if line != "to stderr"]
    assert stdout_lines == ["one", "two", "three", "four"]


async def test_log_cap_drops_a_flood_in_the_worker_with_one_marker(executor, recorder):
    task = wu.function_task(wu.floods, 50)
    outcome = await run(executor, recorder, task, timeout=120)
    assert outcome.status is Status.SUCCEEDED
    data = b"".join(recorder.logs[task.job_id])
    marker = b"[jupyter_jobs: output over 1048576 bytes was dropped]"
    assert data.count(marker) == 1
    assert len(data) <= 1024 * 1024 + 200
    assert data.startswith(b"x" * 1023 + b"\n")


async def test_a_cells_traceback_stays_under_the_log_cap(recorder):
    async with wu.running_executor(recorder, max_workers=1, log_limit=1000) as executor:
        task = wu.cell_task("print('x' * 5000)\n1/0")
        outcome = await run(executor, recorder, task)
    assert outcome.status is Status.FAILED and outcome.error.type == "ZeroDivisionError"
    data = b"".join(recorder.logs[task.job_id])
    marker = b"[jupyter_jobs: output over 1000 bytes was dropped]"
    assert data.count(marker) == 1 and data.endswith(marker + b"\n")  # nothing after it
    assert len(data) <= 1000 + 100


async def test_a_worker_shared_by_two_notebooks_gives_each_its_own_modules(recorder, tmp_path):
    """Two notebooks in two folders, each with a `localmod.py`, one worker for both."""
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
        (folder / "localmod.py").write_text(f"VALUE = {folder.name!r}\n")
    got = []
    async with wu.running_executor(recorder, max_workers=1) as executor:
        for folder in [*folders, folders[0]]:
            task = wu.function_task(wu.import_local)
            task.cwd = str(folder)
            outcome = await run(executor, recorder, task)
            assert outcome.status is Status.SUCCEEDED, outcome.error
            got.append(dill.loads(outcome.result))
    assert got == ["a", "b", "a"]


async def test_a_job_leaves_no_environment_variables_to_the_next(executor, recorder):
    await run(executor, recorder, wu.function_task(wu.set_environment_variable, "LEAK", "yes"))
    outcome = await run(executor, recorder, wu.function_task(wu.environment_variable, "LEAK"))
    assert outcome.status is Status.SUCCEEDED and dill.loads(outcome.result) is None
    # a variable the worker started with, changed, then removed, comes back as it was
    original = os.environ["HOME"]
    await run(executor, recorder, wu.function_task(wu.set_environment_variable, "HOME", "/x"))
    outcome = await run(executor, recorder, wu.function_task(wu.environment_variable, "HOME"))
    assert dill.loads(outcome.result) == original
    await run(executor, recorder, wu.function_task(wu.remove_environment_variable, "HOME"))
    outcome = await run(executor, recorder, wu.function_task(wu.environment_variable, "HOME"))
    assert dill.loads(outcome.result) == original


async def test_a_process_the_job_forks_does_not_speak_for_it(executor, recorder):
    task = wu.function_task(wu.progress_from_a_forked_child)
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    assert [p.message for p in recorder.progress[task.job_id]] == ["parent"]


async def test_progress_is_rate_limited_and_the_last_value_is_exact(executor, recorder):
    task = wu.function_task(wu.many_progress, 50_000, 1.0)
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED
    reports = recorder.progress[task.job_id]
    # ~1 s at one report per 0.2 s: a handful (slack for a slow machine), not 50 001.
    assert 2 <= len(reports) <= 30
    last = reports[-1]
    assert (last.done, last.total, last.message) == (50_000, 50_000, "end")


async def test_tqdm_bars_report_progress_without_code_changes(executor, recorder):
    task = wu.function_task(wu.with_tqdm, 100)
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED
    reports = recorder.progress[task.job_id]
    assert reports[-1].done == 100 and reports[-1].total == 100
    assert reports[-1].message == "steps"
    assert "100/100" in recorder.log_text(task.job_id)  # the bar itself still prints


# -- cell jobs --------------------------------------------------------------------------------

CELL = """\
import matplotlib.pyplot as plt
from IPython.display import display, Markdown
print("before")
display(Markdown("**shown**"))
!echo hi from the shell
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
total = sum(numbers)
total * 2
"""


async def test_cell_outputs_in_notebook_order(executor, recorder):
    task = wu.cell_task(CELL, {"numbers": [1, 2, 3]})
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    outputs = outputs_of(outcome)
    kinds = [o["output_type"] for o in outputs]
    assert kinds == ["stream", "display_data", "stream", "execute_result", "display_data"]
    assert outputs[0] == {"output_type": "stream", "name": "stdout", "text": "before\n"}
    assert outputs[1]["data"]["text/markdown"] == "**shown**"
    assert outputs[2]["text"] == "hi from the shell\n"
    assert outputs[3]["data"]["text/plain"] == "12"
    assert outputs[3]["execution_count"] is None
    assert outputs[4]["data"]["image/png"].startswith("iVBOR")  # the figure, inline
    # Prints reach the log too (the figure and displays do not).
    assert recorder.log_text(task.job_id) == "before\nhi from the shell\n"


@pytest.mark.skipif(sys.platform == "win32", reason="kernels on Windows run `!cmd` on pipes too")
async def test_shell_commands_run_on_a_terminal_as_in_a_kernel(executor, recorder, tmp_path):
    for name in ("array.npy", "frame.csv", "readme.txt"):
        (tmp_path / name).write_text("x")
    code = (
        "!ls {folder}\n"
        "!{python} -c 'import os; print(os.isatty(1), os.get_terminal_size().columns)'\n"
        "!exit 3\n"
        "print(_exit_code)\n"
    )
    task = wu.cell_task(code, {"folder": str(tmp_path), "python": sys.executable})
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    text = "".join(o["text"] for o in outputs_of(outcome))
    assert text == "array.npy  frame.csv  readme.txt\nTrue 80\n3\n"


@pytest.mark.skipif(sys.platform == "win32", reason="no pseudo-terminals")
async def test_cancel_ends_a_shell_command_on_its_terminal(executor, recorder, tmp_path):
    pid_file = tmp_path / "pid"
    task = wu.cell_task(f"!echo $$ > {pid_file}; exec sleep 600", {})
    await executor.run(task)
    await wu.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    pid = int(pid_file.read_text())
    await asyncio.wait_for(executor.kill(task.job_id, None, 0.5), 15)
    assert recorder.outcomes[task.job_id][0].status is Status.CANCELLED
    await wu.wait_for(lambda: not wu.alive(pid), timeout=5)


async def test_cell_outputs_are_valid_nbformat(executor, recorder):
    import nbformat

    outcome = await run(executor, recorder, wu.cell_task(CELL, {"numbers": [1]}))
    cell = nbformat.v4.new_code_cell("x", outputs=outputs_of(outcome))
    notebook = nbformat.v4.new_notebook(cells=[cell])
    nbformat.validate(notebook)


async def test_cell_sends_back_assigned_and_changed_names_and_reports_unsent(executor, recorder):
    code = (
        "items.append(3)\n"
        "x[0] = 5\n"
        "y = len(items)\n"
        "import json as j\n"
        "gen = (i for i in range(3))\n"
        "def helper(v):\n    return v + y\n"
    )
    namespace = {"items": [1, 2], "x": [0, 0], "same": {"a": 1}}
    outcome = await run(executor, recorder, wu.cell_task(code + "print(same)", namespace))
    assert outcome.status is Status.SUCCEEDED, outcome.error
    result = dill.loads(outcome.result)
    assert result["assigned"] == ["y", "j", "gen", "helper"]
    assert sorted(result["changed"]) == ["items", "x"]
    assert result["values"]["items"] == [1, 2, 3]
    assert result["values"]["x"] == [5, 0]
    assert result["values"]["y"] == 3
    assert result["values"]["j"] is json
    assert result["values"]["helper"](1) == 4
    assert "gen" not in result["values"]
    assert "generator" in result["unsent"]["gen"]


async def test_a_cell_after_others_reads_their_names_over_the_kernels(executor, recorder):
    import dataclasses
    import random

    from jupyter_jobs import chains

    random.seed(7)
    state = rng.capture()
    expected = random.random()
    first = payload.dumps({"values": {"df": [1, 2], "k": 3}, "assigned": ["df", "k"]})
    second = payload.dumps({"values": {"k": 4}, "assigned": ["k"], "rng": state})
    code = "import random\ndf.append(k)\nseen = (df, k)\ndrawn = random.random()"
    task = wu.cell_task(code, {"df": ["stale"]})
    task = dataclasses.replace(task, payload=chains.bundle(task.payload, [first, second]))
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    result = dill.loads(outcome.result)
    assert result["values"]["seen"] == ([1, 2, 4], 4)  # the later cell's `k` wins
    assert result["values"]["drawn"] == expected  # draws go on from the cell before
    assert result["changed"] == ["df"] and result["mutated"] == ["df"]
    assert "k" not in result["values"]  # read, unchanged: nothing to send back

    missing = wu.cell_task("print(never_set)", {})
    missing = dataclasses.replace(missing, payload=chains.bundle(missing.payload, [first]))
    outcome = await run(executor, recorder, missing)
    assert outcome.error.type == "NameError" and "never_set" in outcome.error.message


def test_a_bundle_is_received_as_its_parts_and_a_plain_payload_as_itself():
    import io

    from jupyter_jobs import chains

    def receive(data: bytes) -> tuple:
        stream = io.BytesIO(data + b"next frame")  # a body is followed by the next frame
        received = chains.receive(stream, len(data))
        assert stream.read() == b"next frame"  # read exactly its own bytes, whatever they hold
        return received

    assert chains.bundle(b"p", []) == b"p"
    body, parts = receive(chains.bundle(b"\x80payload", [b"one", b""]))
    assert bytes(body) == b"\x80payload" and [bytes(p) for p in parts] == [b"one", b""]
    plain, none = receive(b"\x80plain")
    assert bytes(plain) == b"\x80plain" and none == []
    with pytest.raises(ValueError, match="parts say"):
        receive(chains.bundle(b"p", [b"x"]) + b"extra")


async def test_cell_tells_objects_changed_in_place_from_names_bound_anew(executor, recorder):
    import numpy as np

    code = "items += [3]\nrebound = rebound + [1]\nx[0] = 5\nfresh = [0]\nwindow[:] = 1\nbase"
    base = np.zeros(4)
    namespace = {"items": [1], "rebound": [], "x": [0], "base": base, "window": base[1:3]}
    outcome = await run(executor, recorder, wu.cell_task(code, namespace))
    result = dill.loads(outcome.result)
    assert sorted(result["mutated"]) == ["base", "items", "window", "x"]
    assert result["values"]["window"].base is result["values"]["base"]  # one memory still


async def test_cell_return_options_choose_what_comes_back(executor, recorder):
    code = "a = 1\nb = 2\nitems.append(1)\nexec('hidden = 3')"
    task = wu.cell_task(code, {"items": [], "same": 1}, **{"return": ["b", "hidden", "nope"]})
    result = dill.loads((await run(executor, recorder, task)).result)
    assert result["values"] == {"b": 2, "hidden": 3}
    assert result["unsent"] == {"nope": "not defined after the cell ran"}

    task = wu.cell_task(code + "\nprint(same)", {"items": [], "same": 1}, **{"return": "items"})
    result = dill.loads((await run(executor, recorder, task)).result)
    assert result["values"] == {"items": [1]} and result["changed"] == ["items"]

    task = wu.cell_task(code, {"items": []}, no_return=True)
    result = dill.loads((await run(executor, recorder, task)).result)
    names = {"values": {}, "assigned": [], "changed": [], "unsent": {}}
    assert {key: result[key] for key in names} == names
    assert "random" in result["rng"]  # the generators' states come back all the same


async def test_cell_exception_fails_with_plain_traceback_and_error_output(executor, recorder):
    code = "print('start')\ndef divide(a):\n    return a / 0\ndivide(value)"
    task = wu.cell_task(code, {"value": 3})
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.FAILED and outcome.reason is Reason.ERROR
    assert outcome.error.type == "ZeroDivisionError"
    assert "divide" in outcome.error.traceback
    assert "\x1b[" not in outcome.error.traceback
    outputs = outputs_of(outcome)
    assert outputs[0]["text"] == "start\n"
    assert outputs[-1]["output_type"] == "error"
    assert outputs[-1]["ename"] == "ZeroDivisionError"
    sent = dill.loads(outcome.result)  # what ran before the error: `divide` was defined
    assert sent["assigned"] == ["divide"] and sent["values"]["divide"].__name__ == "divide"
    assert "ZeroDivisionError" in recorder.log_text(task.job_id)


async def test_a_failed_cell_sends_back_what_it_set_before_the_error(executor, recorder):
    code = (
        "kept.append(1)\n"
        "before = 'set'\n"
        "untouched = untouched\n"
        "raise ValueError('boom')\n"
        "after = 'never'\n"
        "shadow = 2\n"
    )
    namespace = {"kept": [], "untouched": {"a": 1}, "shadow": 1}
    outcome = await run(executor, recorder, wu.cell_task(code, namespace))
    assert outcome.status is Status.FAILED and outcome.error.type == "ValueError"
    sent = dill.loads(outcome.result)
    assert sent["values"] == {"before": "set", "kept": [1]}
    assert sent["assigned"] == ["before"] and sent["changed"] == ["kept"]
    assert "random" in sent["rng"] and "last" not in sent


async def test_the_last_value_comes_back_unless_hidden_or_unsendable(executor, recorder):
    outcome = await run(executor, recorder, wu.cell_task("x = 40\nx + 2"))
    assert dill.loads(outcome.result)["last"] == 42
    hidden = await run(executor, recorder, wu.cell_task("x = 40\nx + 2;"))
    assert "last" not in dill.loads(hidden.result)
    unsendable = await run(executor, recorder, wu.cell_task("(i for i in range(3))"))
    assert unsendable.status is Status.SUCCEEDED, unsendable.error
    assert "last" not in dill.loads(unsendable.result)
    shown = outputs_of(unsendable)[-1]  # what the kernel shows instead
    assert shown["output_type"] == "execute_result"
    assert shown["data"]["text/plain"].startswith("<generator object")


async def test_a_cell_draws_from_the_generators_it_was_sent_and_sends_them_back(executor, recorder):
    import random

    import numpy as np

    kept = rng.capture()
    try:
        random.seed(1)
        np.random.seed(0)
        sent = rng.capture()
        inline = [(random.random(), float(np.random.rand())) for _ in range(2)]
        # the cell does not import numpy itself: it reads `np` from the namespace
        code = "import random\ndrawn = (random.random(), float(np.random.rand()))"
        data, _ = payload.cell_payload(code, {"np": np}, settings={"rng": sent})
        outcome = await run(executor, recorder, Task(wu.next_id(), 1, Kind.CELL, "c", data))
        result = dill.loads(outcome.result)
        assert result["values"]["drawn"] == inline[0]
        assert rng.restore(result["rng"]) == ["random", "numpy.random"]
        assert (random.random(), float(np.random.rand())) == inline[1]
    finally:
        rng.restore(kept)


async def test_a_cell_reads_the_kernels_history_and_prints_with_its_display_options(
    executor, recorder
):
    import numpy as np

    kernel = {"_": 42, "__": "older", "_i2": "40 + 2", "Out": {2: 42, 3: "text"}, "x": 1}
    code = (
        "doubled = _ * 2\n"
        "earlier = __, _i2, Out[2] + 1, Out is _oh\n"
        "shown = str(np.array([1 / 3]))\n"
        "print(np.array([1 / 3]))"
    )
    settings = {"display": {"numpy": {"precision": 3}, "unknown": {"a": 1}}}
    data, info = payload.cell_payload(code, {**kernel, "np": np}, settings=settings)
    assert info.names == []  # history is not a variable of the cell: it never comes back
    outcome = await run(executor, recorder, Task(wu.next_id(), 1, Kind.CELL, "c", data))
    assert outcome.status is Status.SUCCEEDED, outcome.error
    values = dill.loads(outcome.result)["values"]
    assert values["doubled"] == 84
    assert values["earlier"] == ("older", "40 + 2", 43, True)
    assert values["shown"] == "[0.333]"
    assert np.get_printoptions()["precision"] == 8  # the kernel's own are untouched


def test_history_travels_only_what_the_cell_reads_and_only_what_pickles():
    namespace = {
        "_": 1,
        "_3": 3,
        "Out": {1: 1, 2: (i for i in "a generator")},
        "In": ["", "1"],
        "y": 2,
    }
    data, info = payload.cell_payload("print(_, Out[1], In, y, _4)", namespace)
    assert payload.load_payload(data)["history"] == {
        "_": 1,
        "Out": {1: 1},
        "In": ["", "1"],
    }
    assert info.names == ["y"]


async def test_notebook_helpers_read_the_jobs_globals_and_notebook_classes_come_back_as_theirs(
    executor, recorder, monkeypatch
):
    notebook: dict = {"__name__": "__main__"}
    cell = (
        "from dataclasses import dataclass\n"
        "scale = 10\n"
        "def scaled(x):\n    return x * scale\n"
        "@dataclass\nclass Point:\n    x: float\n"
        "    def norm(self):\n        return self.x * scale\n"
        "p = Point(1.0)\n"
    )
    exec(compile(cell, "<notebook cell 1>", "exec"), notebook)
    monkeypatch.setattr(sys.modules["__main__"], "Point", notebook["Point"], raising=False)
    code = "scale = 100\nres = scaled(3), p.norm()\nmoved = Point(p.x + 1)\n"
    data, _ = payload.cell_payload(code, notebook)
    outcome = await run(executor, recorder, Task(wu.next_id(), 1, Kind.CELL, "c", data))
    assert outcome.status is Status.SUCCEEDED, outcome.error
    result = dill.loads(outcome.result)
    assert result["values"]["res"] == (300, 100.0)  # as inline: the helpers read `scale` now
    assert type(result["values"]["moved"]) is notebook["Point"]  # the notebook's own class
    assert result["changed"] == []  # pickling side effects on the class are no change


async def test_display_updates_and_clear_output_behave_like_a_notebook(executor, recorder):
    code = (
        "from IPython.display import display, update_display, clear_output\n"
        "print('gone soon')\n"
        "clear_output()\n"
        "display('first', display_id='d')\n"
        "print('between')\n"
        "update_display('second', display_id='d')\n"
        "display('waiting')\n"
        "clear_output(wait=True)\n"
        "display('last')\n"
    )
    outcome = await run(executor, recorder, wu.cell_task(code))
    assert outcome.status is Status.SUCCEEDED, outcome.error
    assert [o["data"]["text/plain"] for o in outputs_of(outcome)] == ["'last'"]
    code = code.replace("clear_output(wait=True)\n", "")
    outputs = outputs_of(await run(executor, recorder, wu.cell_task(code)))
    assert [o.get("data", {}).get("text/plain", o.get("text")) for o in outputs] == [
        "'second'",
        "between\n",
        "'waiting'",
        "'last'",
    ]


async def test_trailing_semicolon_hides_the_result(executor, recorder):
    outcome = await run(executor, recorder, wu.cell_task("x = 1\nx + 1;"))
    assert outputs_of(outcome) == []


async def test_cell_magics_and_top_level_await_work(executor, recorder):
    code = (
        "import asyncio\n"
        "await asyncio.sleep(0.01)\n"
        "%time z = 6 * 7\n"
        "lines = !printf 'a\\nb\\n'\n"
        "%env JJ_TEST=1\n"
        "import os\n"
        "env = os.environ['JJ_TEST']"
    )
    outcome = await run(executor, recorder, wu.cell_task(code))
    assert outcome.status is Status.SUCCEEDED, outcome.error
    values = dill.loads(outcome.result)["values"]
    assert values["z"] == 42
    assert list(values["lines"]) == ["a", "b"]
    assert values["env"] == "1"


# -- figures (matplotlib, as the kernel's inline backend shows them) ---------------------------


def figure_task(code: str, style: dict | None = None) -> Task:
    """A cell with the kernel's `plt` (shipped by reference, as a notebook's first cell's
    import is) and the kernel's matplotlib style, `figures.style()`'s dict."""
    import matplotlib.pyplot as plt

    data, _ = payload.cell_payload(code, {"plt": plt}, settings={"figures": style})
    return Task(wu.next_id(), 1, Kind.CELL, "cell", data)


def figures_in(outcome) -> list[str]:
    """The text/plain of the cell's image outputs (`<Figure size WxH with N Axes>`)."""
    return [
        o["data"]["text/plain"]
        for o in outputs_of(outcome)
        if any(mime.startswith("image/") for mime in o.get("data", {}))
    ]


async def test_cell_with_the_kernels_plt_shows_the_figures_it_leaves_open(executor, recorder):
    code = "fig, ax = plt.subplots()\nax.plot([1, 2, 3])\nplt.figure()\nprint('plotted')"
    outcome = await run(executor, recorder, figure_task(code))
    assert outcome.status is Status.SUCCEEDED, outcome.error
    outputs = outputs_of(outcome)
    assert outputs[0] == {"output_type": "stream", "name": "stdout", "text": "plotted\n"}
    assert [o["output_type"] for o in outputs[1:]] == ["display_data", "display_data"]
    assert outputs[1]["data"]["image/png"].startswith("iVBOR")
    assert figures_in(outcome) == ["<Figure size 640x480 with 1 Axes>"]
    # an empty figure has no image, inline neither: its text only
    assert outputs[2]["data"] == {"text/plain": "<Figure size 640x480 with 0 Axes>"}


async def test_cell_show_display_and_matplotlib_magic_show_figures_as_inline(executor, recorder):
    code = (
        "%matplotlib inline\n"
        "fig, ax = plt.subplots()\n"
        "display(fig)\n"  # shown now, and again at the end: it is still open (as inline)
        "closed, _ = plt.subplots(1, 2)\n"
        "plt.close(closed)\n"
        "display(closed)\n"  # once: closed figures are not flushed
        "plt.plot([1, 2])\n"
        "plt.show()\n"  # the open figures, now, then closed: nothing left for the end
        "print(plt.get_fignums())\n"
        "%matplotlib\n"
        "plt.figure(figsize=(2, 1)).add_subplot();"
    )
    outcome = await run(executor, recorder, figure_task(code))
    assert outcome.status is Status.SUCCEEDED, outcome.error
    one, two = "<Figure size 640x480 with 1 Axes>", "<Figure size 640x480 with 2 Axes>"
    assert figures_in(outcome) == [one, two, one, "<Figure size 200x100 with 1 Axes>"]
    printed = "".join(o.get("text", "") for o in outputs_of(outcome))
    # IPython 8 names the backend by its module, IPython 9 by its name
    assert printed in (
        "[]\nUsing matplotlib backend: module://matplotlib_inline.backend_inline\n",
        "[]\nUsing matplotlib backend: inline\n",
    )


async def test_cell_asking_for_a_gui_backend_fails_saying_why(executor, recorder):
    outcome = await run(executor, recorder, figure_task("%matplotlib qt\nplt.plot([1])"))
    assert outcome.status is Status.FAILED and outcome.reason is Reason.ERROR
    assert outcome.error.type == "UsageError"
    assert "`%matplotlib qt` needs a screen or a live kernel" in outcome.error.message


async def test_cell_figures_take_the_kernels_style_and_send_the_cells_back(executor, recorder):
    from matplotlib.colors import ListedColormap

    style = {
        "rc": {"figure.figsize": [4.0, 2.5], "image.cmap": "jobs_two_tone"},
        "colormaps": {"jobs_two_tone": ListedColormap(["red", "blue"], name="jobs_two_tone")},
        "inline": {
            "figure_formats": {"svg"},
            "print_figure_kwargs": {"bbox_inches": "tight"},
            "close_figures": True,
        },
    }
    code = "plt.imshow([[0, 1]])\nplt.style.use('ggplot')"
    outcome = await run(executor, recorder, figure_task(code, style))
    assert outcome.status is Status.SUCCEEDED, outcome.error
    (shown,) = [o for o in outputs_of(outcome) if o["output_type"] == "display_data"]
    assert shown["data"]["text/plain"] == "<Figure size 400x250 with 1 Axes>"
    assert "image/svg+xml" in shown["data"] and "image/png" not in shown["data"]
    back = dill.loads(outcome.result)["figures"]
    assert back["rc"]["axes.facecolor"] == "#E5E5E5"  # ggplot's, for the kernel's next cells
    assert back["rc"]["image.cmap"] == "jobs_two_tone"
    assert back["inline"]["figure_formats"] == {"svg"}


async def test_cell_without_matplotlib_sends_no_style(executor, recorder):
    outcome = await run(executor, recorder, wu.cell_task("x = 1"))
    assert dill.loads(outcome.result)["figures"] is None


async def test_cell_worker_retires_and_function_workers_are_reused(executor, recorder):
    first = dill.loads((await run(executor, recorder, wu.function_task(wu.whoami))).result)
    second = dill.loads((await run(executor, recorder, wu.function_task(wu.whoami))).result)
    assert first["pid"] == second["pid"]
    cell = await run(executor, recorder, wu.cell_task("import os\npid = os.getpid()"))
    cell_pid = dill.loads(cell.result)["values"]["pid"]
    await wu.wait_for(lambda: not wu.alive(cell_pid), timeout=10)
    after = dill.loads((await run(executor, recorder, wu.function_task(wu.whoami))).result)
    assert after["pid"] != cell_pid


async def test_a_cells_side_effects_never_reach_the_next_cell(executor, recorder):
    await run(executor, recorder, wu.cell_task("import os\nos.environ['LEAK'] = '1'\nleak = 1"))
    outcome = await run(
        executor, recorder, wu.cell_task("import os\nseen = os.environ.get('LEAK')")
    )
    assert dill.loads(outcome.result)["values"]["seen"] is None


# -- the runner alone -------------------------------------------------------------------------


def start_runner(tmp_path: Path) -> tuple[subprocess.Popen, protocol.Channel]:
    env = dict(os.environ)
    root = str(Path(payload.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    proc, end = spawn_runner(env=env, cwd=str(tmp_path))
    try:
        sock = end.accept(30, lambda: proc.poll() is None)
    finally:
        end.close()
    return proc, protocol.Channel(sock)


def test_runner_says_ready_and_exits_when_the_executor_goes_away(tmp_path):
    proc, channel = start_runner(tmp_path)
    try:
        header, _ = channel.recv()
        assert header["t"] == "ready" and header["pid"] == proc.pid
        assert header["executable"] == sys.executable
        channel.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_runner_frames_for_one_job(tmp_path):
    proc, channel = start_runner(tmp_path)
    try:
        assert channel.recv()[0]["t"] == "ready"
        body = payload.function_payload(wu.add, (1, 2), {})
        channel.send({"t": "job", "job_id": 7, "attempt": 1, "kind": "function"}, body)
        header, data = channel.recv()
        assert header["t"] == "done" and header["status"] == "succeeded"
        assert dill.loads(data[: header["result_len"]]) == 3
        channel.send({"t": "exit"})
        assert proc.wait(timeout=30) == 0
    finally:
        channel.close()
        proc.kill()
        proc.wait()


def test_runner_reads_a_large_payload_from_its_file_and_leaves_a_large_result_as_one(tmp_path):
    import numpy as np

    original = np.arange(300_000.0)
    namespace = {"a": original.copy(), "untouched": np.ones(300_000)}
    data, _ = payload.cell_payload("b = a * 2\na[0] = -1\nc = untouched.sum()", namespace)
    (tmp_path / "payload").write_bytes(bytes(data))
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    proc, channel = start_runner(tmp_path)
    try:
        assert channel.recv()[0]["t"] == "ready"
        header = protocol.job_header(
            job_id=8, attempt=1, kind="cell", name="big", cwd=None, options={}, log_limit=None,
            progress_interval=1.0, result_dir=str(incoming),
        )  # fmt: skip
        channel.send(*protocol.job_frame(header, FileBytes(str(tmp_path / "payload"), len(data))))
        while (frame := channel.recv())[0]["t"] != "done":
            pass
        fields = protocol.done_fields(*frame, incoming)
        assert fields["status"] == "succeeded" and isinstance(fields["result"], FileBytes)
        assert Path(fields["result"].path).parent == incoming  # for the store to take
        result = payload.loads(fields["result"].read())
        # the untouched big array is not sent back: only what the cell set or changed
        assert result["mutated"] == ["a"] and sorted(result["values"]) == ["a", "b", "c"]
        assert result["values"]["a"][0] == -1 and np.array_equal(
            result["values"]["b"], original * 2
        )
        (tmp_path / "payload").write_bytes(bytes(data)[:-100])  # cut short: the job fails
        channel.send(
            *protocol.job_frame(
                {**header, "job_id": 9}, FileBytes(str(tmp_path / "payload"), len(data))
            )
        )
        while (frame := channel.recv())[0]["t"] != "done":
            pass
        assert (
            frame[0]["reason"] == "payload" and "could not be read" in frame[0]["error"]["message"]
        )
        channel.send({"t": "exit"})
        assert proc.wait(timeout=30) == 0  # and the worker went on serving
    finally:
        channel.close()
        proc.kill()
        proc.wait()


def test_a_done_frame_can_name_only_a_result_file_of_its_own_folder(tmp_path):
    header = {"t": "done", "status": "succeeded", "has_result": True, "result_len": 3}
    with pytest.raises(protocol.ProtocolError, match="cannot"):
        protocol.done_fields({**header, "result_file": "../jobs.db"}, b"", tmp_path)
    with pytest.raises(protocol.ProtocolError, match="cannot"):
        protocol.done_fields({**header, "result_file": f"{'a' * 32}.result"}, b"", None)
    name = protocol.result_file_name()
    left = protocol.done_fields({**header, "result_file": name}, b"", tmp_path)["result"]
    assert left == FileBytes(str(tmp_path / name), 3)


def test_deprecated_pandas_options_are_not_read_nor_sent():
    # Reading one warns (pandas 3 deprecated `mode.chained_assignment`): a warning per cell.
    import warnings

    import pandas as pd
    from pandas._config import config

    from jupyter_jobs import display_options

    config.register_option("jupyter_jobs_test.old", 1)
    config.deprecate_option("jupyter_jobs_test.old", FutureWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.set_option("jupyter_jobs_test.old", 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "jupyter_jobs_test.old" not in display_options.capture().get("pandas", {})
    assert not [w for w in caught if "jupyter_jobs_test.old" in str(w.message)]


# -- labelled streams: threads and child processes ----------------------------------------------


async def test_other_threads_and_stream_blocks_write_to_streams_of_their_own(executor, recorder):
    task = wu.function_task(wu.labelled_threads)
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    texts = recorder.stream_texts(task.job_id)
    assert texts.pop("") == "main before\nmain after\n"
    assert texts == {
        "thread worker-a": "a line 0\na line 1\na line 2\n",
        "thread worker-b": "b line 0\nb line 1\nb line 2\n",
        "phase-2": "inside phase 2\n",
        "thread partial": "no newline",  # its last partial line, when the job ended
    }
    # the whole log keeps the order of writing: the threads took turns
    order = [line for line in recorder.log_text(task.job_id).splitlines() if " line " in line]
    assert order == [f"{t} line {k}" for k in range(3) for t in "ab"]


async def test_child_processes_write_to_streams_labelled_by_pid(executor, recorder):
    task = wu.function_task(wu.labelled_children)
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    pids = dill.loads(outcome.result)
    texts = recorder.stream_texts(task.job_id)
    assert texts.pop("") == "main got captured\n"  # the captured output stayed the job's
    assert texts.pop(f"pid {pids.pop('subprocess')}") == "from subprocess\nerr\n"
    assert texts.pop("tool") == "from the shell\n"
    for method, pid in pids.items():  # fork, spawn, forkserver: each child's python and fd
        assert texts.pop(f"pid {pid}") == (
            f"python from the {method} child\nfd 2 of the {method} child\n"
        ), method
    assert texts == {}


async def test_a_cells_threads_print_into_its_output_too(executor, recorder):
    code = (
        "import threading\n"
        "t = threading.Thread(target=print, args=('from a thread',), name='helper')\n"
        "t.start(); t.join()\n"
        "print('from the cell')\n"
    )
    task = wu.cell_task(code)
    outcome = await run(executor, recorder, task)
    assert outcome.status is Status.SUCCEEDED, outcome.error
    text = "".join(o.get("text", "") for o in outputs_of(outcome))
    assert text == "from a thread\nfrom the cell\n"
    assert recorder.stream_texts(task.job_id)["thread helper"] == "from a thread\n"
