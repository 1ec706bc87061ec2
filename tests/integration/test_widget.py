"""The JobWidget as a frontend sees it: widget model state in comm messages from a real kernel.

A real ipykernel (jupyter_client) runs `%%job` cells against a real `jupyter server`; the test
plays the frontend: it reads the widgets' comm_open/comm_msg state from iopub, and clicks buttons
by sending the comm message a browser sends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

STATUS = re.compile(r"&#9679; (\w+(?: \(cancelling\))?)")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
DEADLINE = 90.0


class Kernel:
    """A kernel and the widget models it has sent, kept up to date from iopub."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.km = KernelManager(kernel_name="python3")
        self.models: dict[str, dict[str, Any]] = {}
        self.updates: list[tuple[str, dict[str, Any]]] = []  # (model id, changed state)
        self.displays: list[dict[str, Any]] = []  # display_data / update_display_data contents
        self.km.start_kernel(env=env, cwd=str(cwd))
        self._connect()

    def _connect(self) -> None:
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def restart(self) -> None:
        self.kc.stop_channels()
        self.km.restart_kernel(now=True)
        self.models.clear()
        self._connect()

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    # --- messages ----------------------------------------------------------------------------

    def _track(self, msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "comm_open":
            self.models[content["comm_id"]] = dict(content["data"].get("state", {}))
        elif kind == "comm_msg" and content["data"].get("method") == "update":
            state = content["data"]["state"]
            self.models.setdefault(content["comm_id"], {}).update(state)
            self.updates.append((content["comm_id"], state))
        elif kind in ("display_data", "update_display_data"):
            self.displays.append(content)

    def execute(
        self, code: str, timeout: float = DEADLINE, reply: str = "ok"
    ) -> list[dict[str, Any]]:
        """Run `code`; every iopub message until it is idle (other cells' messages included:
        `mine` picks this cell's). The execute reply's status must be `reply`; it is kept in
        `self.reply`."""
        msg_id = self.msg_id = self.kc.execute(code)
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next(deadline, f"cell {code[:40]!r} to finish")
            seen.append(msg)
            if (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            ):
                self.reply = self.reply_to(msg_id)["content"]
                assert self.reply["status"] == reply, self.reply
                return seen

    def mine(self, msgs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        """The contents of the last executed cell's messages of one kind."""
        return [
            m["content"]
            for m in msgs
            if m["msg_type"] == kind and m["parent_header"].get("msg_id") == self.msg_id
        ]

    def reply_to(self, msg_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The shell reply to `msg_id`. Replies to nobody's current request are skipped: under
        load, `wait_for_ready` may have asked for kernel_info more than once."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no shell reply to {msg_id} within {timeout} s")
            reply = self.kc.get_shell_msg(timeout=left)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def pump_until(self, predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
        """Read iopub (the kernel is idle) until `predicate()` holds."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            self._next(deadline, what)
        return value

    def _next(self, deadline: float, what: str) -> dict[str, Any]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 1.0))
            except Empty:
                continue
            self._track(msg)
            return msg

    def output_text(self, msgs: list[dict[str, Any]]) -> str:
        return "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")

    def set_state(self, model_id: str, state: dict[str, Any]) -> None:
        """What a browser sends when the user changes a widget (opens an accordion...)."""
        data = {"method": "update", "state": state, "buffer_paths": []}
        self.kc.shell_channel.send(
            self.kc.session.msg("comm_msg", {"comm_id": model_id, "data": data})
        )

    def click(self, model_id: str) -> None:
        """What a browser sends when a Button is clicked."""
        content = {"comm_id": model_id, "data": {"method": "custom", "content": {"event": "click"}}}
        self.kc.shell_channel.send(self.kc.session.msg("comm_msg", content))

    # --- the job widget ----------------------------------------------------------------------

    def widget(self, name: str) -> dict[str, str]:
        """Model ids of the job widget whose header names `name` (header, bar, label, action)."""
        header = next(
            (i for i, s in self.models.items() if f"<b>{name}</b>" in str(s.get("value", ""))),
            None,
        )
        if header is None:
            return {}
        box = next(
            (
                s
                for s in self.models.values()
                if s.get("children", [None])[0] == f"IPY_MODEL_{header}"
            ),
            None,
        )
        if box is None:
            return {}
        row = self.models[box["children"][1].removeprefix("IPY_MODEL_")]
        bar, label, release, action = (c.removeprefix("IPY_MODEL_") for c in row["children"])
        parts = {"header": header, "bar": bar, "label": label, "release": release}
        parts["action"] = action
        for child in box["children"][2:]:
            state = self.models[child.removeprefix("IPY_MODEL_")]
            if state.get("_model_name") == "HTMLModel" and str(state.get("value")).startswith(
                ("Set:", "Set before the error:")
            ):
                parts["names"] = child.removeprefix("IPY_MODEL_")
        return parts

    def status(self, name: str) -> str | None:
        parts = self.widget(name)
        match = parts and STATUS.search(self.models[parts["header"]]["value"])
        return match.group(1) if match else None

    def statuses_seen(self, header_id: str) -> list[str]:
        seen: list[str] = []
        for model_id, state in self.updates:
            match = model_id == header_id and STATUS.search(str(state.get("value", "")))
            if match and (not seen or seen[-1] != match.group(1)):
                seen.append(match.group(1))
        return seen


@pytest.fixture
def kernel(jupyter_server: Any, tmp_path: Path) -> Iterator[Kernel]:
    """A kernel as the server would launch it: it inherits JUPYTER_JOBS_URL and the token."""
    env = dict(jupyter_server.env)
    env.update(JUPYTER_JOBS_URL=jupyter_server.url, JUPYTER_JOBS_TOKEN=jupyter_server.token)
    work = tmp_path / "notebook-dir"
    work.mkdir()
    k = Kernel(env, work)
    k.execute("%load_ext jupyter_jobs.kernel")
    yield k
    k.close()


LIVE_JOB = """%%job --name live-job --out job
import time
from jupyter_jobs.progress import progress

for step in range(1, 6):
    progress(step, 5, f"step {step}")
    print("step", step, flush=True)
    time.sleep(0.4)
answer = 42
"""


def test_the_widget_follows_a_job_while_the_kernel_is_busy_and_sets_names_when_idle(kernel):
    kernel.execute(LIVE_JOB)
    parts = kernel.widget("live-job")
    assert parts, "no widget for the job"
    busy = kernel.execute("import time\ntime.sleep(3)")
    moved = [m for m in busy if m["msg_type"] == "comm_msg"]
    assert moved, "no widget update while the kernel was busy with another cell"

    # nothing more is executed: the update comes while the kernel is idle
    kernel.pump_until(lambda: kernel.status("live-job") == "succeeded", "job succeeded")
    names = kernel.pump_until(lambda: kernel.widget("live-job").get("names"), "names listed")
    listed = kernel.models[names]["value"]
    assert listed.startswith("Set: ") and "<code>answer</code>" in listed.split("<br>")[0]

    def final_updates() -> list[dict[str, Any]]:
        """Display updates whose text (what a saved notebook keeps) says it all."""
        return [
            d
            for d in kernel.displays
            if "live-job succeeded" in (text := d["data"].get("text/plain", ""))
            and any(line.startswith("Set: ") and "answer" in line for line in text.splitlines())
            and "step 5" in text
        ]

    final = kernel.pump_until(final_updates, "final display update")
    assert final[0]["transient"]["display_id"]

    assert kernel.statuses_seen(parts["header"]) == ["queued", "running", "succeeded"]
    values = [s["value"] for i, s in kernel.updates if i == parts["bar"] and "value" in s]
    assert values == sorted(values) and values[-1] == 5.0
    labels = [s["value"] for i, s in kernel.updates if i == parts["label"] and "value" in s]
    assert "5/5 · step 5" in labels
    out = kernel.execute("print(answer, job.result()['values']['answer'])")
    assert kernel.output_text(out) == "42 42\n"

    # the full log loads when its accordion is opened
    models = kernel.models.items()
    accordion = next(i for i, m in models if m.get("_model_name") == "AccordionModel")
    full_log = kernel.models[accordion]["children"][0].removeprefix("IPY_MODEL_")
    kernel.set_state(accordion, {"selected_index": 0})
    kernel.pump_until(lambda: "step 1" in kernel.models[full_log].get("value", ""), "full log")
    assert all(f"step {i}" in kernel.models[full_log]["value"] for i in range(1, 6))


def flaky_cell(name: str, options: str = "") -> str:
    """A cell job that fails on its first attempt and sets `fixed` on the next."""
    return (
        f"%%job --name {name} --out job {options}\nimport os\n"
        f"if not os.path.exists('tried-{name}'):\n"
        f"    open('tried-{name}', 'w').close()\n"
        "    raise RuntimeError('first attempt fails')\n"
        "print('second attempt')\nfixed = 'yes'\n"
    )


def retry_from_the_button(kernel: Kernel, name: str) -> None:
    """Click the failed job's Retry; its names come back when the retry succeeds."""
    action = kernel.widget(name)["action"]
    kernel.pump_until(lambda: kernel.models[action].get("description") == "Retry", "Retry shown")
    kernel.click(action)
    kernel.pump_until(lambda: kernel.status(name) == "succeeded", f"{name} succeeded")
    kernel.pump_until(lambda: kernel.widget(name).get("names"), "names listed")
    assert kernel.output_text(kernel.execute("print(fixed)")) == "yes\n"


def test_cancel_and_retry_buttons(kernel):
    kernel.execute("%%job --name sleeper\nimport time\ntime.sleep(120)")
    kernel.pump_until(lambda: kernel.status("sleeper") == "running", "sleeper running")
    action = kernel.widget("sleeper")["action"]
    assert kernel.models[action]["description"] == "Cancel"
    kernel.click(action)
    kernel.pump_until(lambda: kernel.status("sleeper") == "cancelled", "sleeper cancelled")
    layout = kernel.models[action]["layout"].removeprefix("IPY_MODEL_")
    kernel.pump_until(
        lambda: (
            kernel.models[action]["description"] == "Retry"
            and kernel.models[layout].get("display") == ""
        ),
        "Retry offered",
    )
    # Once asked, the cancel shows until the job ends (a poll that crossed the click is not
    # shown): never "running" with its Cancel again.
    seen = kernel.statuses_seen(kernel.widget("sleeper")["header"])
    assert seen == ["queued", "running", "running (cancelling)", "cancelled"]

    kernel.execute(flaky_cell("flaky"))
    kernel.pump_until(lambda: kernel.status("flaky") == "failed", "flaky failed")
    retry_from_the_button(kernel, "flaky")


def test_retry_of_a_wait_cell_from_its_button_brings_the_names_back(kernel):
    kernel.execute(flaky_cell("waited", "--wait"), reply="error")
    assert kernel.status("waited") == "failed"
    retry_from_the_button(kernel, "waited")


def test_a_retry_by_the_line_magic_is_followed_by_the_widget(kernel):
    kernel.execute(flaky_cell("magic"))
    kernel.pump_until(lambda: kernel.status("magic") == "failed", "the first attempt failed")
    job_id = int(kernel.output_text(kernel.execute("print(job.id)")))
    kernel.execute(f"%job retry {job_id}")
    kernel.pump_until(lambda: kernel.status("magic") == "succeeded", "the widget shows the retry")
    kernel.pump_until(lambda: kernel.widget("magic").get("names"), "names listed")
    assert kernel.output_text(kernel.execute("print(fixed)")) == "yes\n"


def test_a_cancelled_cell_retried_through_rest_is_followed_and_sets_its_names(
    kernel, jupyter_server
):
    """A retry from the sidebar or the detail view: the REST API, from outside the kernel."""
    kernel.execute(
        "%%job --name elsewhere --out job\nimport os, time\n"
        "if not os.path.exists('tried-elsewhere'):\n"
        "    open('tried-elsewhere', 'w').close()\n"
        "    time.sleep(120)\n"
        "again = 'from the retry'\n"
    )
    kernel.pump_until(lambda: kernel.status("elsewhere") == "running", "first run running")
    job_id = int(kernel.output_text(kernel.execute("print(job.id)")))
    cancelled = jupyter_server.api("POST", f"jobs/api/jobs/{job_id}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    kernel.pump_until(lambda: kernel.status("elsewhere") == "cancelled", "first run cancelled")
    action = kernel.widget("elsewhere")["action"]
    layout = kernel.models[action]["layout"].removeprefix("IPY_MODEL_")
    kernel.pump_until(
        lambda: (
            kernel.models[action].get("description") == "Retry"
            and kernel.models[layout].get("display") != "none"
        ),
        "Retry offered for the cancelled job",
    )

    retried = jupyter_server.api("POST", f"jobs/api/jobs/{job_id}/retry", json={})
    assert retried.status_code == 200, retried.text
    kernel.pump_until(lambda: kernel.status("elsewhere") == "succeeded", "the retry followed")
    kernel.pump_until(lambda: kernel.widget("elsewhere").get("names"), "names listed")
    assert kernel.output_text(kernel.execute("print(again)")) == "from the retry\n"


def test_a_failed_request_for_the_final_outputs_is_retried(kernel):
    kernel.execute(
        "from jupyter_jobs.kernel import api\n"
        "from jupyter_jobs.errors import ServerUnavailable\n"
        "backend = api.connection()\n"
        "real, calls = backend.outputs, []\n"
        "def blip(job_id):\n"
        "    calls.append(job_id)\n"
        "    if len(calls) == 1:\n"
        "        raise ServerUnavailable('connection reset (the test says so)')\n"
        "    return real(job_id)\n"
        "backend.outputs = blip\n"
    )
    kernel.execute("%%job --name blip\nprint('hello')\nv = 1\n")
    kernel.pump_until(lambda: kernel.status("blip") == "succeeded", "blip succeeded")
    kernel.pump_until(lambda: kernel.widget("blip").get("names"), "names listed")
    assert kernel.output_text(kernel.execute("print(v, len(calls) >= 2)")) == "1 True\n"


def test_after_a_kernel_restart_attach_follows_the_job_and_brings_its_names_back(kernel):
    out = kernel.execute(
        "%%job --name survivor --out job\nimport time\ntime.sleep(4)\n"
        "print('survived')\nvalue = 7\n"
    )
    assert not [m for m in out if m["msg_type"] == "error"]
    job_id = int(kernel.output_text(kernel.execute("print(job.id)")))
    kernel.pump_until(lambda: kernel.status("survivor") == "running", "survivor running")

    kernel.restart()
    kernel.execute("%load_ext jupyter_jobs.kernel")
    assert kernel.status("survivor") is None  # the new kernel has shown nothing yet
    kernel.execute(f"%job attach {job_id}")
    assert kernel.status("survivor") in ("running", "succeeded")
    kernel.pump_until(lambda: kernel.status("survivor") == "succeeded", "attached job succeeded")
    outputs = kernel.pump_until(
        lambda: [s for s in kernel.models.values() if s.get("_model_name") == "OutputModel"],
        "captured outputs",
    )
    kernel.pump_until(lambda: outputs[0].get("outputs"), "outputs filled")
    assert outputs[0]["outputs"][0]["text"] == "survived\n"
    names = kernel.pump_until(lambda: kernel.widget("survivor").get("names"), "names listed")
    assert kernel.models[names]["value"].startswith("Set: <code>value</code>")
    assert kernel.output_text(kernel.execute("print(value)")) == "7\n"

    # attached once the job has finished, the names come at once; a name bound is kept
    kernel.restart()
    kernel.execute("%load_ext jupyter_jobs.kernel")
    kernel.execute(f"%job attach {job_id}")
    assert kernel.output_text(kernel.execute("print(value)")) == "7\n"
    out = kernel.execute(f"value = 'mine'\n%job attach {job_id}\nprint(value)")
    assert kernel.output_text(out) == "mine\n"
    names = kernel.models[kernel.widget("survivor")["names"]]["value"]
    assert names.startswith("Set: no results, only import <code>time</code><br>")
    assert "<code>value</code> was already bound at attach; kept yours" in names


def test_a_finished_cell_shows_its_results_the_tail_of_its_prints_and_its_cell_number(kernel):
    kernel.execute(
        "%%job --name chatty\nimport time\nimport jupyter_jobs\n"
        "for i in range(3000):\n    print('line', i)\nmodel, score = 'fitted', 0.9\n"
    )
    kernel.pump_until(lambda: kernel.status("chatty") == "succeeded", "chatty succeeded")
    names = kernel.pump_until(lambda: kernel.widget("chatty").get("names"), "names listed")
    assert kernel.models[names]["value"] == (
        "Set: <code>model</code>, <code>score</code> (and 3 more: imports <code>time</code>, "
        "<code>jupyter_jobs</code>; loop variable <code>i</code>)"
    )
    assert kernel.output_text(kernel.execute("print(i, time.__name__)")) == "2999 time\n"

    note = '[... 2,970 earlier lines: see "Full log" or %job logs'
    final = kernel.pump_until(
        lambda: [d for d in kernel.displays if "Set: model" in d["data"]["text/plain"]],
        "final display update",
    )
    saved = final[-1]["data"]["text/plain"]
    assert note in saved and "line 2999" in saved and "line 2969" not in saved
    assert len(saved.splitlines()) < 40  # what the saved notebook keeps
    output = next(s for s in kernel.models.values() if s.get("_model_name") == "OutputModel")
    shown = output["outputs"][0]["text"]
    assert shown.startswith(note) and shown.endswith("line 2999\n")

    out = kernel.execute(
        "%%job --wait --name broken\nx = 1\nraise ValueError('boom')", reply="error"
    )
    # the cell's own number, whichever IPython counts (9 counts a cell before it runs, 8 after)
    (number,) = [m["execution_count"] for m in kernel.mine(out, "execute_input")]
    errors = kernel.mine(out, "error")
    assert errors and errors[0]["ename"] == "ValueError"
    trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors[0]["traceback"]))
    assert f"Cell In[{number}], line 3" in trace  # the cell's line 3 (`%%job` is line 1)


def test_job_text_is_escaped_and_the_owner_is_the_kernel(kernel):
    name = "<img src=x onerror=alert(1)>"
    kernel.execute(f"%%job --wait --name '{name}'\nx = 1")
    header = next(s["value"] for s in kernel.models.values() if "onerror" in str(s.get("value")))
    assert "<img" not in header and "&lt;img src=x onerror=alert(1)&gt;" in header
    out = kernel.execute("from jupyter_jobs.kernel import api\nprint(api.jobs()[0].record.owner)")
    owner = kernel.output_text(out).strip()
    connection_id = Path(kernel.km.connection_file).stem.removeprefix("kernel-")
    assert owner == f"kernel:{connection_id}"


def test_a_job_handle_displays_as_the_widget(kernel):
    out = kernel.execute("from jupyter_jobs.kernel import api\napi.submit(pow, 2, 9, name='power')")
    shown = [m for m in out if m["msg_type"] == "display_data"]
    assert len(shown) == 1 and WIDGET_MIME in shown[0]["content"]["data"]
    assert "power" in shown[0]["content"]["data"]["text/plain"]
    assert not [m for m in out if m["msg_type"] == "execute_result"]  # no repr besides it
    kernel.pump_until(lambda: kernel.status("power") == "succeeded", "power succeeded")


def test_interrupting_a_wait_leaves_the_job_running_and_its_names_still_come_back(kernel):
    msg_id = kernel.kc.execute("%%job --wait --name patient\nimport time\ntime.sleep(3)\nz = 1")
    kernel.pump_until(lambda: kernel.status("patient") == "running", "patient running")
    kernel.km.interrupt_kernel()
    reply = kernel.reply_to(msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    kernel.pump_until(lambda: kernel.status("patient") == "succeeded", "patient succeeded")
    kernel.pump_until(lambda: kernel.widget("patient").get("names"), "names listed")
    assert kernel.output_text(kernel.execute("print(z)")) == "1\n"


def test_the_jobs_table(kernel):
    kernel.execute("%%job --wait --name tabled\nx = 1")
    listed = [
        m["content"]["data"]["text/plain"]
        for m in kernel.execute("%jobs --status succeeded")
        if m["msg_type"] == "display_data"
    ]
    assert len(listed) == 1 and "tabled" in listed[0] and "succeeded" in listed[0]
    none = [
        m for m in kernel.execute("%jobs --all --status failed") if m["msg_type"] == "display_data"
    ]
    assert none[0]["content"]["data"]["text/plain"] == "no jobs"
    msg_id = kernel.kc.execute("%jobs --bogus")
    reply = kernel.reply_to(msg_id)
    assert reply["content"]["ename"] == "UsageError"


# --- a `%%job` cell behaves as the same cell inline ---------------------------------------------


def test_a_failing_wait_cell_fails_as_inline_and_keeps_what_it_set_before_the_error(kernel):
    out = kernel.execute(
        "%%job --wait --name broken\nx = 1\nraise ValueError('boom')\ny = 2", reply="error"
    )
    assert (kernel.reply["ename"], kernel.reply["evalue"]) == ("ValueError", "boom")
    (number,) = [m["execution_count"] for m in kernel.mine(out, "execute_input")]
    (error,) = kernel.mine(out, "error")  # the job's traceback, shown once
    trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert f"Cell In[{number}], line 3" in trace and "ValueError: boom" in trace
    assert kernel.output_text(kernel.execute("print(x, 'y' in globals())")) == "1 False\n"
    names = kernel.models[kernel.widget("broken")["names"]]["value"]
    assert names == "Set before the error: <code>x</code>"


def test_a_failed_background_cell_brings_back_what_it_set_before_the_error(kernel):
    kernel.execute("%%job --name later\nearly = 'kept'\nraise ValueError('boom')\nlate = 1")
    kernel.pump_until(lambda: kernel.status("later") == "failed", "the job failed")
    names = kernel.pump_until(lambda: kernel.widget("later").get("names"), "names listed")
    assert kernel.models[names]["value"] == "Set before the error: <code>early</code>"
    out = kernel.execute("print(early, 'late' in globals())")
    assert kernel.output_text(out) == "kept False\n"


def test_run_all_stops_at_a_failing_wait_cell_with_the_names_it_set(jupyter_server, tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    cells = [
        "%load_ext jupyter_jobs.kernel",
        "%%job --wait --name broken\nbefore = 'set'\nraise ValueError('boom')\nafter = 1",
        "reached = True",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = dict(jupyter_server.env)
    env.update(JUPYTER_JOBS_URL=jupyter_server.url, JUPYTER_JOBS_TOKEN=jupyter_server.token)
    km = KernelManager(kernel_name="python3")
    client = NotebookClient(nb, km=km, timeout=120, resources={"metadata": {"path": tmp_path}})
    try:
        with pytest.raises(CellExecutionError, match="ValueError"):
            client.execute(env=env)
        assert nb.cells[1].outputs[-1]["ename"] == "ValueError"
        assert nb.cells[2].get("execution_count") is None  # Run All stopped there
        kc = km.client()
        kc.start_channels()
        try:
            shown = []
            kc.wait_for_ready(timeout=60)
            reply = kc.execute_interactive(
                "print(before, 'after' in globals(), 'reached' in globals())",
                timeout=60,
                output_hook=lambda msg: shown.append(msg["content"].get("text", "")),
            )
            assert reply["content"]["status"] == "ok"
            assert "".join(shown) == "set False False\n"
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


def test_the_last_value_of_a_wait_cell_is_its_result(kernel):
    (inline,) = kernel.mine(kernel.execute("40 + 2"), "execute_result")
    out = kernel.execute("%%job --wait --name answer\nbase = 40\nbase + 2")
    (number,) = [m["execution_count"] for m in kernel.mine(out, "execute_input")]
    (result,) = kernel.mine(out, "execute_result")
    assert result["execution_count"] == number
    assert result["data"] == inline["data"]
    out = kernel.execute(f"print(_, __, Out[{number}], _{number})")
    assert kernel.output_text(out) == "42 42 42 42\n"

    quiet = kernel.execute("%%job --wait --name quiet\n40 + 2;")
    assert not kernel.mine(quiet, "execute_result")
    shown = [m["data"].get("text/plain") for m in kernel.mine(quiet, "display_data")]
    assert "42" not in shown


def test_a_syntax_error_shows_as_inline_and_submits_nothing(kernel):
    cases = [("x = (\n", "SyntaxError", 2), ("if True:\nx = 1\n", "IndentationError", 3)]
    for code, ename, line in cases:
        # inline, the code under a first line: the same line numbers as under `%%job`
        kernel.execute("#\n" + code, reply="error")
        inline = kernel.reply
        kernel.execute("%%job --wait --name bad\n" + code, reply="error")
        job = kernel.reply
        assert job["ename"] == inline["ename"] == ename

        def shown(reply: dict[str, Any]) -> str:
            text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(reply["traceback"]))
            return re.sub(r"Cell In\[\d+\]", "Cell In[n]", text)

        assert shown(job) == shown(inline) and f"Cell In[n], line {line}\n" in shown(job)
    out = kernel.execute("from jupyter_jobs.kernel import api\nprint(len(api.jobs(all=True)))")
    assert kernel.output_text(out) == "0\n"
    assert kernel.status("bad") is None  # no widget either


def test_seeded_draws_are_the_inline_ones_and_go_on_from_the_job(kernel):
    draw = "(random.random(), float(np.random.rand()))"
    kernel.execute(
        "import random\nimport numpy as np\nrandom.seed(1)\nnp.random.seed(0)\n"
        f"expected = [{draw} for _ in range(4)]\nrandom.seed(1)\nnp.random.seed(0)"
    )
    kernel.execute(f"%%job --wait --name waited-draw\nfirst = {draw}")
    kernel.execute(f"second = {draw}")  # the kernel goes on from the job's state
    kernel.execute(f"%%job --name background-draw\nthird = {draw}")
    kernel.pump_until(lambda: kernel.widget("background-draw").get("names"), "names back")
    out = kernel.execute(f"fourth = {draw}\nprint([first, second, third, fourth] == expected)")
    assert kernel.output_text(out) == "True\n"


def test_a_cell_reads_the_history_and_the_kernel_follows_its_change_of_directory(kernel):
    kernel.execute("import os\nstart = os.getcwd()\nos.makedirs('sub', exist_ok=True)\n40 + 2")
    kernel.execute("%%job --wait --name history\nimport os\ndoubled = _ * 2\nos.chdir('sub')")
    out = kernel.execute("print(doubled, os.getcwd() == os.path.join(start, 'sub'))")
    assert kernel.output_text(out) == "84 True\n"


def test_a_cell_after_another_sees_its_names_even_submitted_while_it_runs(kernel, tmp_path):
    gate = tmp_path / "gate"
    kernel.execute("rows = [0]\nscale = 1")
    kernel.execute(
        "%%job --name load --out first\n"
        "import pathlib, time\n"
        "deadline = time.monotonic() + 60\n"
        f"while not pathlib.Path({str(gate)!r}).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "rows = list(range(5))\n"
        "scale = 10\n"
        "table = {'n': len(rows)}\n"
    )
    # Submitted while `load` still runs: it reads names that job sets (`table` is not even in
    # the kernel yet) and changes one of them in place.
    state = kernel.execute("print(first.status.value)")
    assert kernel.output_text(state).strip() in ("queued", "running")
    kernel.execute(
        "%%job --name fit --out second --after {first.id}\n"
        "rows.append(99)\n"
        "total = sum(rows) * scale + table['n']\n"
    )
    gate.touch()
    kernel.execute("second.result(timeout=60)")
    result = kernel.execute("print(rows, scale, table, total)")
    expected = f"[0, 1, 2, 3, 4, 99] 10 {{'n': 5}} {(sum(range(5)) + 99) * 10 + 5}\n"
    assert kernel.output_text(result) == expected


def test_a_background_cells_names_are_there_right_after_waiting_on_its_handle(kernel):
    """The cell's done callback runs in the thread whose `wait()` settles the handle: here the
    kernel's main thread, inside the waiting cell (the handle's `wait` itself sets nothing)."""
    kernel.execute("%%job --name later --out later_job\nimport time\ntime.sleep(1)\nlate = 7")
    out = kernel.execute("print(later_job.wait(60).status.value, late)")
    assert kernel.output_text(out) == "succeeded 7\n"
