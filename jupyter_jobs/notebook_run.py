"""Run a notebook job in the worker: a fresh kernel, nbclient, papermill-style parameters.

`runner.py` calls `run(payload, ...)` for a job of kind "notebook". The kernel is started in
the worker's own process group (jupyter_client would give it a session of its own), so the
executor's stop (SIGTERM to the group, then SIGKILL) ends the kernel and whatever it started
when the job is cancelled or times out, as it ends a function job's children. Every cell's
stdout/stderr is written to the worker's fds 1 and 2 as it arrives, which is the job's log;
progress is cells done / total with the current cell's first line. The result is the executed
notebook's JSON; a failing cell fails the job with an error naming the cell, and the notebook
executed so far is still sent back. The kernel is shut down after the job is reported.

A cancel or timeout gives the worker no chance to say anything (its group is killed, SIGKILL
after the grace at the latest), so the notebook as far as it ran is sent as it runs instead
(`Snapshots`): when each cell starts, and as outputs arrive, at most once per progress interval
(and in a tenth of the run's time at most). The executor keeps the last one as the result of a
run that is stopped; it carries a marker on the cell that was running (`STOPPED`), which is only
true of it if the run stops there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

from . import notebooks

#: The tag of the cell parameters follow, and of the cell that sets them (papermill's).
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
DEFAULT_KERNEL = "python3"

Report = Callable[[float, float | None, str | None], None]
#: Sends the notebook as far as it ran (its JSON bytes) to the executor.
Checkpoint = Callable[[bytes], None]

_STOPPED_WHY = (
    "the job was stopped while this cell ran (cancelled, timed out, or its worker ended): "
    "its outputs end here, and the cells below did not run"
)
#: The output that marks the cell a stopped run was in (as a failing cell shows its error).
STOPPED = {
    "output_type": "error",
    "ename": "JobStopped",
    "evalue": _STOPPED_WHY,
    "traceback": [f"JobStopped: {_STOPPED_WHY}"],
}


class NotebookFailed(Exception):
    """A notebook job that did not complete: its error (type, message, traceback) and the
    notebook as far as it ran."""

    def __init__(self, type_: str, message: str, tb: str, notebook: bytes | None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.traceback = tb
        self.notebook = notebook


def inject_parameters(nb: Any, parameters: dict[str, Any]) -> None:
    """Add a cell tagged `injected-parameters` setting each parameter, after the first cell
    tagged `parameters` (at the top when there is none), as papermill does. An earlier
    injected cell (a notebook that ran before) is replaced."""
    import nbformat

    if not parameters:
        return
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    lines = ["# Parameters"] + [f"{name} = {python_literal(v)}" for name, v in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    tagged = [
        i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])
    ]
    nb.cells.insert(tagged[0] + 1 if tagged else 0, cell)


def python_literal(value: Any) -> str:
    """The Python source of a JSON value (`true` -> `True`, `null` -> `None`)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    return repr(value)


def kernel_name_for(nb: Any, chosen: str | None) -> str:
    """The chosen kernelspec, else the notebook's own, else python3."""
    return chosen or nb.get("metadata", {}).get("kernelspec", {}).get("name") or DEFAULT_KERNEL


def first_line(cell: Any) -> str:
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    return next((line.strip() for line in source.splitlines() if line.strip()), "")[:200]


def clear_outputs(nb: Any) -> None:
    """Forget the outputs the snapshot was saved with: the result shows what this run did,
    and a cell it did not reach shows nothing."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None


def stopped_at(nb: Any, index: int | None) -> bytes:
    """The notebook's JSON bytes with the cell at `index` (if any) marked `STOPPED`; `nb`
    itself is left as it is."""
    cells = list(nb.cells)
    if index is not None:
        cell = cells[index]
        cells[index] = {**cell, "outputs": [*cell.get("outputs", []), STOPPED]}
    return json.dumps({**nb, "cells": cells}, ensure_ascii=False).encode("utf-8")


class Snapshots:
    """Sends the notebook as far as it ran: when a cell starts, and after outputs at most once
    per `interval` seconds (the last change always goes, `interval` later at most).

    Encoding the whole notebook each time costs what the notebook weighs, so sending takes at
    most `SHARE` of the run's time: after a snapshot that took t seconds, the next waits until
    9 t later (a few ms for a usual notebook; for a large one of short cells the last snapshot
    may then lag its cell start by that much). With an `interval` of 0, every change goes at
    once, before the log has it. Runs on nbclient's event loop, which owns `nb`.
    """

    #: The most of the run's time snapshots may take.
    SHARE = 0.1

    def __init__(self, nb: Any, send: Checkpoint, interval: float) -> None:
        self.nb, self._send, self.interval = nb, send, interval
        self.running: int | None = None
        self._last = float("-inf")  # when the last one was sent (loop time)
        self._allowed = float("-inf")  # the earliest the next may go, by the budget
        self._timer: asyncio.TimerHandle | None = None
        self._announce: Callable[[], None] | None = None
        self._closed = False

    def cell_started(self, index: int, announce: Callable[[], None]) -> None:
        """Cell `index` starts. `announce` (its progress) is called once the snapshot that has
        it running is sent: whoever saw that progress and stopped the run finds that snapshot."""
        self.running, self._announce = index, announce
        self._send_by(self._allowed)

    def changed(self) -> None:
        """An output of the running cell arrived."""
        self._send_by(max(self._last + self.interval, self._allowed))

    def _send_by(self, when: float) -> None:
        """Send the notebook as it is at loop time `when` (now, if that has passed), unless a
        send is due before then already."""
        loop = asyncio.get_running_loop()
        if when <= loop.time():
            self.send_now()
        elif self._timer is None or self._timer.when() > when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self.send_now)

    def send_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._send(stopped_at(self.nb, self.running))
        self._last = loop.time()
        if self.interval > 0:  # else every change goes at once, whatever it costs
            self._allowed = self._last + (self._last - start) * (1 / self.SHARE - 1)
        announce, self._announce = self._announce, None
        if announce is not None:
            announce()

    def close(self) -> None:
        """The run ended (its own result says how): nothing more is sent."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def run(
    data: bytes,
    report: Report,
    checkpoint: Checkpoint,
    interval: float,
    after_done: Callable[[Callable[[], None]], None],
) -> bytes:
    """Execute the notebook in `data` (a notebook job's payload); returns the executed
    notebook's bytes, or raises `NotebookFailed`. `checkpoint` receives the notebook as far
    as it ran while it runs, at most once per `interval` seconds as outputs arrive.
    `after_done` is handed the kernel's shutdown, for the caller to run once the job is
    reported: a graceful shutdown (the kernel's exit hooks, its buffered files) takes a few
    tenths of a second that the job's result need not wait for."""
    import nbformat

    document = notebooks.load_payload(data)
    nb = nbformat.reads(json.dumps(document["notebook"]), as_version=4)  # sources joined
    inject_parameters(nb, document["parameters"])
    clear_outputs(nb)
    snapshots = Snapshots(nb, checkpoint, interval)
    client = _client_class()(
        nb,
        report=report,
        snapshots=snapshots,
        kernel_name=kernel_name_for(nb, document["kernel_name"]),
        timeout=None,  # the job's timeout applies, enforced by the executor
        resources={"metadata": {"path": os.getcwd()}},
    )
    try:
        client.execute(cwd=os.getcwd(), cleanup_kc=False)
    except Exception as exc:
        raise NotebookFailed(*client.describe(exc), _dumps(nb)) from None
    finally:
        snapshots.close()
        after_done(client.shut_down)
    report(client.total, client.total, "done")
    return _dumps(nb)


def _dumps(nb: Any) -> bytes:
    import nbformat

    return nbformat.writes(nb).encode("utf-8")


def _client_class() -> type:
    """`nbclient.NotebookClient`, streaming outputs to the log and reporting progress, with a
    kernel manager that keeps the kernel in this process group. Built on first use: nbclient
    and jupyter_client load only in workers that run notebooks."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = _build_client_class()
    return _CLIENT


_CLIENT: type | None = None


def _build_client_class() -> type:
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning import LocalProvisioner
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from traitlets import Type

    class InGroupProvisioner(LocalProvisioner):  # type: ignore[misc]
        """The local provisioner, but the kernel stays in the worker's process group: the
        executor ends the group, kernel and its children included. Its `pgid` stays unset so
        that jupyter_client signals the kernel alone, never the worker's group."""

        async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
            options = LocalProvisioner._scrub_kwargs(kwargs)
            env = dict(options.pop("env", None) or os.environ)
            env["JPY_PARENT_PID"] = str(os.getpid())  # ipykernel ends if the worker dies
            self.process = subprocess.Popen(
                [os.path.expanduser(part) for part in cmd],
                stdin=subprocess.PIPE,
                env=env,
                cwd=options.get("cwd"),
            )
            self.pid, self.pgid = self.process.pid, None
            self.cwd = options.get("cwd") or os.getcwd()
            return self.connection_info

    class InGroupKernelManager(AsyncKernelManager):  # type: ignore[misc]
        async def _async_pre_start_kernel(self, **kw: Any) -> Any:
            # Windows has no sessions to escape: its launcher's own kernel is fine there.
            if self.provisioner is None and os.name == "posix" and not self._custom_provisioner():
                import uuid

                self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
                self.provisioner = InGroupProvisioner(
                    kernel_id=self.kernel_id,
                    kernel_spec=self.kernel_spec,
                    parent=self,
                )
            return await super()._async_pre_start_kernel(**kw)

        def _custom_provisioner(self) -> bool:
            metadata = self.kernel_spec.metadata or {}
            return bool(metadata.get("kernel_provisioner"))

    class JobNotebookClient(NotebookClient):  # type: ignore[misc]
        kernel_manager_class = Type(InGroupKernelManager, config=True)

        async def async_start_new_kernel(self, **kw: Any) -> None:
            # nbclient has just made SIGTERM shut the kernel down and carry on, which would
            # keep this worker alive through the executor's stop until its SIGKILL: the stop
            # ends it at once instead, as it ends a function job (the last snapshot is kept).
            with contextlib.suppress(RuntimeError):  # no signals here (Windows)
                asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            await super().async_start_new_kernel(**kw)

        def __init__(self, nb: Any, report: Report, snapshots: Snapshots, **kw: Any) -> None:
            super().__init__(nb, **kw)
            self._report = report
            self._snapshots = snapshots
            self.code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
            self.total = len(self.code_cells)
            self.current: int | None = None

        async def async_execute_cell(self, cell: Any, cell_index: int, *a: Any, **kw: Any) -> Any:
            if cell.cell_type == "code":
                self.current = cell_index
                done = self.code_cells.index(cell_index)
                message = first_line(cell) or f"cell {cell_index}"
                self._snapshots.cell_started(
                    cell_index, lambda: self._report(done, self.total, message)
                )
            return await super().async_execute_cell(cell, cell_index, *a, **kw)

        def output(self, outs: list, msg: dict, display_id: Any, cell_index: int) -> Any:
            out = super().output(outs, msg, display_id, cell_index)
            # Offered before the log gets the text: with no interval to wait for, whoever
            # read it in the log (and stopped the run) finds it in the last snapshot too.
            self._snapshots.changed()
            if msg["msg_type"] == "stream":
                stream = sys.stderr if msg["content"].get("name") == "stderr" else sys.stdout
                stream.write(msg["content"].get("text", ""))
                stream.flush()
            elif msg["msg_type"] == "error":
                content = msg["content"]
                sys.stderr.write("\n".join(content.get("traceback", [])) + "\n")
                sys.stderr.flush()
            return out

        def shut_down(self) -> None:
            """Shut the kernel down, gracefully, and close its channels (nbclient's own
            cleanup, which `execute` was told to leave for later)."""
            if self.km is not None:
                self._cleanup_kernel()

        def describe(self, exc: BaseException) -> tuple[str, str, str]:
            """The job's error for `exc`: the failing cell named by index and first line."""
            if self.current is None:
                return (type(exc).__name__, f"the notebook could not run: {exc}", _tb(exc))
            cell = self.nb.cells[self.current]
            where = f"cell {self.current} ({first_line(cell)!r})"
            if isinstance(exc, CellExecutionError):
                return (exc.ename, f"{where} raised {exc.ename}: {exc.evalue}", _ansi_free(exc))
            return (type(exc).__name__, f"{where} did not complete: {exc}", _tb(exc))

    return JobNotebookClient


def _tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _ansi_free(exc: BaseException) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc))
