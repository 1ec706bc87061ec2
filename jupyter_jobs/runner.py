"""The worker process: load a payload, run it, stream its output, report how it ended.

Started by an executor as `python -m jupyter_jobs.runner CHANNEL PARENT_PID [START_LOG]` (see
`executors/processes.py`), where CHANNEL says how to reach the executor's socket: `fd:N`, an
inherited socket pair end, or `tcp:HOST:PORT`, a loopback listener to connect back to with the token
read from stdin (where sockets cannot be inherited; see `oslayer.parent_end`), and START_LOG the
file where it writes down each attempt before its code begins (`start_log.py`). This is the
only server-hosted place that unpickles, and it runs in its own process (and process group) so that
cancel and timeout can end the job's whole tree without touching the server.

Output: fds 1 and 2 are pipes drained by a thread, so prints, subprocesses and C code all reach
the log in order, and a job printing gigabytes costs only the reading (the cap is enforced
here). What other threads print, and what child processes write (each on pipes of its own),
reaches the log labelled with its thread or pid (`streams.py`, `children.py`). A cell job also
records nbformat outputs: the display machinery drains the pipes before it records a display,
which keeps prints and displays in the order they happened.

A worker runs many function jobs, or the cell jobs of one kernel: a cell changes global state
(imports, matplotlib, the shell) as it would in its kernel, so after one the executor gives the
worker only the next cells of the same kernel (each in a fresh namespace), as a kernel runs a
notebook's cells in one process, or retires it.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import dataclasses
import faulthandler
import functools
import importlib
import inspect
import io
import json
import os
import platform
import re
import selectors
import signal
import site
import sys
import threading
import time
import traceback
import types
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from traitlets import Type
from traitlets.config import Config

from . import (
    buffers,
    chains,
    changes,
    children,
    display_options,
    figures,
    history,
    notebook_main,
    notebook_run,
    oslayer,
    protocol,
    rng,
    shared,
    start_log,
    streams,
    tty_system,
    typed_run,
)
from . import payload as payloads
from .errors import InvalidRequest
from .progress import JobContext, install_tqdm_bridge, job_context
from .protocol import FrameType
from .submitter import flush_all
from .workspace import write_private

T = TypeVar("T")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Seconds between two reads of the output pipes where they cannot be waited on (Windows).
_PIPE_POLL = 0.01


class Outputs:
    """A cell's nbformat v4 outputs, built the way a notebook front end would build them."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._display_ids: dict[int, str] = {}
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
        }
        self._clear_on_next = False

    def _add(self, output: dict[str, Any]) -> None:
        if self._clear_on_next:
            self.clear()
        self.items.append(output)

    def stream(self, name: str, data: bytes) -> None:
        text = self._decoders[name].decode(data)
        if not text:
            return
        last = self.items[-1] if self.items and not self._clear_on_next else None
        if last and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self._add({"output_type": "stream", "name": name, "text": text})

    def display(
        self, data: dict, metadata: dict | None, transient: dict | None, update: bool
    ) -> None:
        display_id = (transient or {}).get("display_id")
        if update:
            for index, known in self._display_ids.items():
                if known == display_id:
                    self.items[index].update(data=_jsonable(data), metadata=metadata or {})
            return
        self._add(
            {"output_type": "display_data", "data": _jsonable(data), "metadata": metadata or {}}
        )
        if display_id:
            self._display_ids[len(self.items) - 1] = display_id

    def result(self, data: dict, metadata: dict | None) -> None:
        self._add(
            {
                "output_type": "execute_result",
                "execution_count": None,
                "data": _jsonable(data),
                "metadata": metadata or {},
            }
        )

    def error(self, ename: str, evalue: str, stb: list[str]) -> None:
        self._add({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": stb})

    def clear(self, wait: bool = False) -> None:
        if wait:
            self._clear_on_next = True
            return
        self._clear_on_next = False
        self.items.clear()
        self._display_ids.clear()

    def to_json(self) -> bytes:
        return json.dumps(self.items, default=repr).encode()


def _jsonable(data: dict) -> dict:
    """Mime bundles as JSON: binary images become base64 text, as in a notebook file."""
    return {
        mime: base64.b64encode(value).decode() if isinstance(value, bytes) else value
        for mime, value in data.items()
    }


class JobOutput:
    """Where one job's output goes: log frames (capped), and the cell's outputs if any."""

    def __init__(
        self, channel: protocol.Channel, log_limit: int | None, outputs: Outputs | None
    ) -> None:
        self.channel = channel
        self.log_limit = log_limit
        self.outputs = outputs
        self.sent = 0
        self.truncated = False

    def deliver(
        self, name: str, data: bytes, stream: bool = True, label: str | None = None
    ) -> None:
        """One chunk read from fd 1 or 2 (the caller holds the capture lock); `label`: the
        stream it belongs to (`streams.py`; None: the job's main stream). `stream=False`: for
        the log only, under the same cap (a cell's traceback, already an output)."""
        if self.truncated:
            return
        if self.log_limit is not None and self.sent + len(data) > self.log_limit:
            data = data[: max(0, self.log_limit - self.sent)]
            self.truncated = True
        if data:
            self._emit(name, data, stream, label)
        if self.truncated:
            marker = f"\n[jupyter_jobs: output over {self.log_limit} bytes was dropped]\n"
            self._emit(name, marker.encode(), stream, None)

    def _emit(self, name: str, data: bytes, stream: bool, label: str | None) -> None:
        self.sent += len(data)
        header: dict[str, Any] = {"t": FrameType.LOG.value}
        if label is not None:
            header["s"] = label
        self.channel.send(header, data)
        if stream and self.outputs is not None:
            self.outputs.stream(name, data)


#: A child's pipe whose label is still to come: the child writes it as its first line.
_FROM_CHILD = "\x00"


class _Pipe:
    """One pipe the drain thread reads: fd 1 or 2 of the worker (`label` None: the main
    stream, for whichever job runs), or a child's (its label, and the job that started it)."""

    __slots__ = ("head", "job", "label", "name")

    def __init__(self, name: str, label: str | None, job: JobOutput | None) -> None:
        self.name = name
        self.label = label
        self.job = job
        self.head = b""  # a child's first line, while it is incomplete


class Capture:
    """Owns fds 1 and 2 for the worker's life: pipes, drained by a thread into the current job.

    Output written between jobs (a straggling child of an earlier job) is dropped. `synced()`
    gives the main thread everything written so far, in order, under the drain lock. Text that
    another thread or a `stream()` block writes arrives labelled through `lines`; the pipes of
    the job's child processes (`children.py`, `add_child`) are drained beside fds 1 and 2.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job: JobOutput | None = None
        self._pipes: dict[int, _Pipe] = {}
        self._write_ends: dict[int, int] = {}  # fd 1/2 -> a spare (non-inheritable) copy
        for fd, name in ((1, "stdout"), (2, "stderr")):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            self._write_ends[fd] = write_end
            os.set_blocking(read_end, False)
            self._pipes[read_end] = _Pipe(name, None, None)
        # Children's pipes come and go; the drain thread (un)registers them, woken by a byte.
        self._added: list[int] = []
        self._ended: list[int] = []
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.lines = streams.LabelledLines(self._deliver_labelled)
        self.stdout = streams.LabelledText(1, "stdout", self.lines)
        self.stderr = streams.LabelledText(2, "stderr", self.lines)
        self.reset()
        threading.Thread(target=self._drain_forever, name="jobs-output", daemon=True).start()

    def reset(self) -> None:
        """Undo what a job may have done to its output: replaced sys.stdout, closed fd 1."""
        for fd, spare in self._write_ends.items():
            try:
                same = os.path.sameopenfile(fd, spare)
            except OSError:
                same = False
            if not same:
                os.dup2(spare, fd)
        if self.stdout.closed:
            self.stdout = streams.LabelledText(1, "stdout", self.lines)
        if self.stderr.closed:
            self.stderr = streams.LabelledText(2, "stderr", self.lines)
        sys.stdout, sys.stderr = self.stdout, self.stderr

    def add_child(self, fds: dict[int, str], label: str | None) -> None:
        """Drain a child's pipes (read fds by stream name) for the current job, under `label`
        (None: the first line the child writes)."""
        with self.lock:
            for fd, name in fds.items():
                os.set_blocking(fd, False)
                self._pipes[fd] = _Pipe(name, _FROM_CHILD if label is None else label, self.job)
                self._added.append(fd)
        self._poke()

    def end_job(self) -> None:
        """The job is over: its threads' partial lines go out, then nothing more is its."""
        self.lines.flush()
        with self.synced():
            self.job = None

    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a wake-up is pending already
            os.write(self._wake_write, b"!")

    def _drain_forever(self) -> None:
        """Wake when a pipe has data (or, where pipes cannot be waited on, every few ms)."""
        if not oslayer.can_select_pipes():
            while True:
                time.sleep(_PIPE_POLL)
                with self.lock:
                    self._added.clear()
                    self._read_available()
                    self._close_ended(None)
        selector = selectors.DefaultSelector()
        for fd in [*self._pipes, self._wake_read]:
            selector.register(fd, selectors.EVENT_READ)
        while True:
            selector.select()
            with self.lock:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_read, 4096)
                for fd in self._added:
                    selector.register(fd, selectors.EVENT_READ)
                self._added.clear()
                self._read_available()
                self._close_ended(selector)

    def _close_ended(self, selector: selectors.BaseSelector | None) -> None:
        for fd in self._ended:
            if selector is not None:
                selector.unregister(fd)
            os.close(fd)
        self._ended.clear()

    def _read_available(self) -> None:
        # Bounded, so that a child writing without pause cannot hold the lock forever.
        for fd, pipe in list(self._pipes.items()):
            for _ in range(64):
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:  # a child's pipe whose writers are all gone (fds 1/2 never end)
                    del self._pipes[fd]
                    self._ended.append(fd)
                    self._poke()  # the drain thread unregisters and closes it
                    break
                self._take(pipe, data)

    def _take(self, pipe: _Pipe, data: bytes) -> None:
        if pipe.label == _FROM_CHILD:
            pipe.head += data
            end = pipe.head.find(b"\n")
            if end < 0:
                return
            pipe.label = pipe.head[:end].decode("utf-8", errors="replace") or "child"
            data, pipe.head = pipe.head[end + 1 :], b""
        job = self.job
        if job is not None and data and (pipe.job is None or pipe.job is job):
            job.deliver(pipe.name, data, label=pipe.label)

    def _deliver_labelled(self, name: str, label: str, data: bytes) -> None:
        """Lines of another thread or a `stream()` block (`streams.LabelledLines`), after what
        the pipes hold, so that the whole log keeps the order of writing."""
        with self.synced():
            if self.job is not None:
                self.job.deliver(name, data, label=label)

    @contextmanager
    def synced(self) -> Iterator[None]:
        """Flush Python's streams and drain the pipes, then hold the lock for the caller."""
        for stream in (self.stdout, self.stderr):
            if not stream.closed:
                io.TextIOWrapper.flush(stream)  # its own buffer, not other threads' lines
        with self.lock:
            self._read_available()
            yield


class Reporter:
    """Progress frames at most once per interval, the last value always sent before "done"."""

    def __init__(self, channel: protocol.Channel) -> None:
        self.channel = channel
        self.interval = 1.0
        self._cond = threading.Condition()
        self._pending: tuple[float, float | None, str | None] | None = None
        self._last = float("-inf")
        threading.Thread(target=self._send_later, name="jobs-progress", daemon=True).start()

    def start(self, interval: float) -> None:
        with self._cond:
            self.interval, self._pending, self._last = interval, None, float("-inf")

    def report(self, done: float, total: float | None, message: str | None) -> None:
        with self._cond:
            if self._pending is None and time.monotonic() - self._last >= self.interval:
                self._send((done, total, message))
            else:
                self._pending = (done, total, message)
                self._cond.notify()

    def flush(self) -> None:
        with self._cond:
            if self._pending is not None:
                self._send(self._pending)

    def _send(self, value: tuple[float, float | None, str | None]) -> None:
        done, total, message = value
        self.channel.send(
            {"t": FrameType.PROGRESS.value, "done": done, "total": total, "message": message}
        )
        self._pending, self._last = None, time.monotonic()

    def _send_later(self) -> None:
        with self._cond:
            while True:
                if self._pending is None:
                    self._cond.wait()
                    continue
                delay = self._last + self.interval - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                else:
                    self._send(self._pending)


class CellOutput:
    """What a cell's display machinery writes to: its outputs, in order with its streams.

    Every record first drains fds 1 and 2 (`Capture.synced`), so a display lands after the
    prints that came before it, and the streams never interleave with it.
    """

    def __init__(self, capture: Capture, channel: protocol.Channel, outputs: Outputs) -> None:
        self.capture = capture
        self.channel = channel
        self.outputs = outputs

    def display(self, data: dict, metadata: dict | None, transient: dict | None, update: bool):
        with self.capture.synced():
            self.outputs.display(data, metadata, transient, update)

    def result(self, data: dict, metadata: dict | None) -> None:
        with self.capture.synced():
            self.outputs.result(data, metadata)

    def clear(self, wait: bool) -> None:
        with self.capture.synced():
            self.outputs.clear(wait)

    def error(self, ename: str, evalue: str, stb: list[str]) -> None:
        with self.capture.synced():
            self.outputs.error(ename, evalue, stb)
            # The log gets the traceback too, as plain text: logs are read in terminals.
            text = _ANSI.sub("", "\n".join(stb)) + "\n"
            if self.capture.job is not None:  # always, while a cell runs
                self.capture.job.deliver("stderr", text.encode(), stream=False)


class _Publisher(DisplayPublisher):
    """display() in a cell job: recorded as display_data, in order with the streams."""

    cell: CellOutput | None = None

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
        if self.cell is not None:
            self.cell.display(data, metadata, transient, update)
        elif "text/plain" in data:
            print(data["text/plain"])  # display() in a function job: text, as in plain Python

    def clear_output(self, wait=False):
        if self.cell is not None:
            self.cell.clear(wait)


class _Hook(DisplayHook):
    """The cell's last expression: an execute_result (no prompt, no execution count)."""

    cell: CellOutput | None = None
    code = ""

    def quiet(self):
        # IPython looks for the trailing ';' in the history, which store_history=False skips.
        return self.semicolon_at_end_of_expression(self.code)

    def write_output_prompt(self):
        pass

    def write_format_data(self, format_dict, md_dict=None):
        if self.cell is not None:
            self.cell.result(format_dict, md_dict)


class JobShell(figures.InlineShell, InteractiveShell):
    """IPython as a notebook cell sees it: magics, `!cmd`, display(), tracebacks as outputs."""

    display_pub_class = Type(_Publisher)
    displayhook_class = Type(_Hook)
    cell: CellOutput | None = None
    last_traceback: list[str] | None = None

    def init_virtualenv(self):
        """Never: the job runs with its interpreter's own packages, not the server's venv."""

    def _showtraceback(self, etype, evalue, stb):
        self.last_traceback = stb
        if self.cell is not None:
            self.cell.error(etype.__name__, str(evalue), stb)

    def attach(self, cell: CellOutput, code: str) -> None:
        """Send this cell's displays, result and errors to `cell`."""
        self.cell = self.display_pub.cell = self.displayhook.cell = cell
        self.displayhook.code = code


def _make_shell() -> JobShell:
    config = Config()
    config.HistoryManager.enabled = False  # no shared history.sqlite between workers
    shell = JobShell.instance(config=config)
    # `!cmd` on a terminal as in a kernel, but in our process group (killable with the job);
    # IPython's own goes through a pty in a new session.
    if tty_system.AVAILABLE:
        shell.system = functools.partial(tty_system.system, shell)
    else:
        shell.system = shell.system_raw
    return shell


class Failure(Exception):
    """Ends a job as failed with a reason and a described error (nothing to unpickle later).

    `result`: what a failed cell still sends back (the names it set before its error)."""

    def __init__(
        self,
        reason: str,
        type_: str,
        message: str,
        tb: str = "",
        result: bytes | buffers.Framed | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.error = {"type": type_, "message": message, "traceback": tb}
        self.result = result


def _job_traceback(exc: BaseException) -> str:
    """The job's own frames: the first frame is the runner's call into the job."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    return "".join(traceback.format_exception(type(exc), exc, tb))


#: What the inbox reads of a "job" frame's body (`_read_body`): the payload and, for a cell
#: that runs after others, their results (chains.py), each plain bytes or a framed pickle
#: whose arrays are read already (buffers.py), a function job's pack as its parts, its
#: function whole (`shared.HeldFunctions.receive`); or why it could not be read.
JobBody = tuple[buffers.Loadable | shared.Unpacked, list[buffers.Loadable]] | buffers.FramingError


def _read_body(header: dict[str, Any], stream: buffers.Readable, size: int) -> Any:
    """A frame's body, read by the inbox thread as it arrives: a job's arrays straight into
    their own memory, hashed on the way (the runner then knows what the cell was sent without
    hashing it again, changes.py)."""
    if header["t"] != FrameType.JOB:
        return buffers.read_exactly(stream, size)
    try:
        return chains.receive(stream, size, hashed=True)
    except buffers.FramingError as exc:  # all of it was read: the job fails, the worker goes on
        return exc


def _load(data: buffers.Loadable) -> dict[str, Any]:
    return _loading(lambda: payloads.load_payload(data))


def _loading(load: Callable[[], T]) -> T:
    """`load()`, or the job fails `payload` saying why."""
    try:
        return load()
    except Exception as exc:
        where = f"Python {platform.python_version()} at {sys.executable}"
        raise Failure(
            "payload",
            type(exc).__name__,
            f"the payload could not be loaded in the worker ({where}): {exc}",
            _job_traceback(exc),
        ) from None


#: A pack's function, loaded (or kept from an earlier job of the worker: `shared.py`).
Loaded = Callable[[shared.Unpacked], Any]
#: A job's payload as the runner gets it: as received (or mapped), or a pack's parts.
Body = buffers.Loadable | shared.Unpacked


def _unpacked(body: Body) -> shared.Unpacked | None:
    """A function or typed job's pack, in parts; None for a payload that is not one."""
    if isinstance(body, shared.Unpacked):
        return body
    if not isinstance(body, (bytes, bytearray, memoryview)):
        return None  # a framed pickle, read into its arrays
    return _loading(lambda: shared.unpack(body))


def _run_function(data: Body, loaded: Loaded) -> bytes | buffers.Framed:
    unpacked = _unpacked(data)
    if unpacked is None:  # one pickle of the whole call (a schedule's, or from before)
        job = _load(data)
        fn, args, kwargs = job["fn"], job.get("args", ()), job.get("kwargs", {})
    else:
        fn = _loading(lambda: loaded(unpacked))
        call = _load(unpacked.arguments)
        args, kwargs = call.get("args", ()), call.get("kwargs", {})
    try:
        value = fn(*args, **kwargs)
        if inspect.iscoroutine(value):
            value = asyncio.run(value)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt end this job, not the worker
        raise Failure("error", type(exc).__name__, str(exc), _job_traceback(exc)) from None
    try:
        return payloads.dumps_framed(value)
    except Exception as exc:
        kind = payloads.describe_type(value)
        message = f"the job's return value ({kind}) cannot be sent back: {exc}"
        raise Failure("error", "PayloadError", message) from None


def _run_notebook(
    data: buffers.Loadable,
    report: notebook_run.Report,
    checkpoint: notebook_run.Checkpoint,
    interval: float,
    after_done: list[Callable[[], None]],
) -> bytes:
    """A notebook job (`notebook_run.py`): a failure keeps the notebook as far as it ran, and
    so does a stop (the last checkpoint). Its kernel is shut down once it is reported."""
    try:
        return notebook_run.run(data, report, checkpoint, interval, after_done.append)
    except notebook_run.NotebookFailed as failed:
        raise Failure(
            "error", failed.type, failed.message, failed.traceback, failed.notebook
        ) from None
    except InvalidRequest as exc:
        raise Failure("payload", "PayloadError", str(exc)) from None


def _run_typed(data: Body, header: dict[str, Any], loaded: Loaded) -> tuple[bytes, Any]:
    """A typed job (`typed_run.py`): its result bytes and its summary. A kernel type's
    functions come packed with the job's parameters, and are loaded once per worker."""
    unpacked = _unpacked(data)
    try:
        if unpacked is None:
            return typed_run.run(data, header["job_id"], header["attempt"])
        functions = functools.partial(loaded, unpacked)
        return typed_run.run(unpacked.arguments, header["job_id"], header["attempt"], functions)
    except typed_run.TypeNotLoaded as exc:
        raise Failure("payload", "PayloadError", str(exc)) from None
    except typed_run.RunFailed as failed:
        exc = failed.error
        raise Failure("error", type(exc).__name__, str(exc), _job_traceback(exc)) from None


def _prepare_cell(
    shell: JobShell, job: dict[str, Any], upstream: Sequence[buffers.Loadable] = ()
) -> tuple[dict[str, Any], set[type]]:
    """Fill the fresh namespace; returns the shipped variables (what a change is told from,
    changes.py), and the notebook classes that go back by reference (the kernel has them).
    `upstream`: the results of the cells this one runs after (chains.py), whose names are
    newer than the kernel's at submit."""
    namespace = shell.user_ns
    for alias, name in job.get("modules", {}).items():
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            message = f"module '{name}' (as '{alias}') cannot be imported in the worker: {exc}"
            raise Failure("payload", type(exc).__name__, message) from None
        if alias.isidentifier():
            namespace[alias] = module
    # notebook helpers read the job's globals, as the kernel's read the notebook's
    variables = notebook_main.rebind(job.get("variables", {}), namespace)
    namespace.update(variables)
    read = set(payloads.read_names(job["code"])) if upstream else set()
    for index, data in enumerate(upstream):
        before_it = _upstream_result(data, index)
        values = before_it.get("values")
        values = values if isinstance(values, dict) else {}
        namespace.update(notebook_main.rebind(values, namespace))
        # what the cell reads of them counts as sent: a change to it comes back
        variables.update({n: namespace[n] for n in values if n in read})
        # draws and figure style go on from the cell that ran just before, as inline
        job.update({k: before_it[k] for k in ("rng", "figures") if before_it.get(k) is not None})
    figures.prepare(shell, job.get("figures"))  # shown and styled as in the kernel
    return variables, notebook_main.notebook_classes(variables.values())


def _upstream_result(data: buffers.Loadable, index: int) -> dict[str, Any]:
    """What a cell this one runs after sent back (its names, generators, style), loaded here."""
    try:
        return payloads.load_payload(data)
    except Exception as exc:
        message = f"the result of the cell job it runs after (#{index + 1}) cannot be loaded: {exc}"
        raise Failure("payload", type(exc).__name__, message) from None


def _cell_result(
    shell: JobShell,
    code: str,
    shipped: changes.Fingerprints,
    classes: set[type],
    options: dict[str, Any],
    last: Any = None,
    partial: bool = False,
) -> bytes | buffers.Framed:
    """What a cell sends back: its names (`values`, `assigned`, `changed`, `unsent`), the
    global generators' states (`rng`), its figures' style (`figures`), and the value of its
    last expression (`last`, when it showed one), which the kernel shows as the cell's result.
    `partial`: the cell raised, so a shipped variable counts only if its value changed (the
    kernel keeps its own object). `classes`: the notebook classes the kernel has, sent as its
    own, so that what the cell built with them is an instance of them there. `mutated`: the
    names whose object is the one `shipped` (changed in place, not bound anew): the kernel
    changes its own object, which other names and views may share. Big arrays go beside the
    pickle, not into it (buffers.py)."""
    result: dict[str, Any] = {"values": {}, "assigned": [], "changed": [], "unsent": {}}
    if not options.get("no_return"):
        result.update(_names_back(shell.user_ns, code, shipped, options, partial))
    sent = shipped.sent
    result["mutated"] = [
        name for name, value in result["values"].items() if name in sent and sent[name] is value
    ]
    result["rng"] = rng.capture()
    result["figures"] = figures.style()
    result["cwd"] = os.getcwd()  # where the cell left it (`os.chdir`): the kernel follows
    if last is not None:
        result["last"] = last
    values = result["values"]
    try:
        return payloads.dumps_framed(result, classes, together=values.values())
    except Exception:
        unsent = result["unsent"]
        for name, value in list(values.items()):
            try:
                payloads.dumps_framed(value, classes)
            except Exception as exc:
                kind = payloads.describe_type(value)
                unsent[name] = f"{kind} cannot be sent back: {exc}"
                del values[name]
        try:
            payloads.dumps_framed(last, classes)
        except Exception:
            del result["last"]  # the kernel shows the worker's rendering of it instead
        return payloads.dumps_framed(result, classes, together=values.values())


def _names_back(
    namespace: dict[str, Any],
    code: str,
    shipped: changes.Fingerprints,
    options: dict[str, Any],
    partial: bool,
) -> dict[str, Any]:
    wanted = options.get("return")
    if isinstance(wanted, str):
        wanted = [wanted]
    if wanted is not None and not all(isinstance(name, str) for name in wanted):
        raise Failure("error", "InvalidRequest", f"option 'return' must list names: {wanted!r}")
    bound = payloads.assigned_names(code)
    if partial:  # the assignments after the error never ran
        bound = [
            n
            for n in bound
            if n not in shipped or (n in namespace and shipped.changed(n, namespace[n]))
        ]
    # Asked-for names count even when the AST cannot see them bound (exec, globals()).
    candidates = bound if wanted is None else [n for n in wanted if n in bound or n not in shipped]
    assigned = [name for name in candidates if name in namespace]
    looked_at = shipped.sent if wanted is None else [n for n in wanted if n in shipped]
    # A notebook function changes only by being bound anew (its globals are the job's now).
    changed = [
        name
        for name in looked_at
        if name in namespace
        and name not in bound
        and not isinstance(namespace[name], types.FunctionType)
        and shipped.changed(name, namespace[name])
    ]
    unsent = {
        name: "not defined after the cell ran" for name in wanted or () if name not in namespace
    }
    values = {name: namespace[name] for name in assigned + changed}
    return {"values": values, "assigned": assigned, "changed": changed, "unsent": unsent}


def _as_in_the_notebook(code: str, first_line: Any) -> str:
    """`code` after comment lines that stand for the notebook cell's lines above it (the
    `%%job` line), so that a traceback's `line k` is the cell's line k. Comments, because
    IPython drops leading blank lines; none before a cell magic, which must come first, nor
    before indented code, which IPython dedents only when it comes first."""
    if not isinstance(first_line, int) or not 1 < first_line <= 100:
        return code
    if code.startswith("%%") or code.lstrip("\r\n")[:1] in (" ", "\t"):
        return code
    return "#\n" * (first_line - 1) + code


def _run_cell(
    shell: JobShell,
    cell: CellOutput,
    payload: buffers.Loadable,
    upstream: list[buffers.Loadable],
    options: dict[str, Any],
) -> bytes | buffers.Framed:
    job = _load(payload)
    variables, classes = _prepare_cell(shell, job, upstream)
    origins = {k: v for part in (payload, *upstream) for k, v in _origins(part).items()}
    # the objects the cell starts with: a change in place is told from a name bound anew
    sent = {name: shell.user_ns[name] for name in variables}
    shipped = changes.Fingerprints(sent, classes, origins)
    code = job["code"]
    shell.attach(cell, code)
    # IPython names the cell in tracebacks by its execution count: `Cell In[7], line 3`, as in
    # the notebook that ran `%%job` as cell 7 (store_history=False leaves the count alone).
    count = job.get("execution_count")
    shell.execution_count = count if isinstance(count, int) and count > 0 else 1
    rng.restore(job.get("rng"), import_missing=True)  # draws as the kernel would have
    display_options.restore(job.get("display"))  # prints as the kernel would have
    history.restore(shell, job.get("history"))  # `_`, `Out[2]` are the kernel's
    outcome = shell.run_cell(_as_in_the_notebook(code, job.get("first_line")), store_history=False)
    if not outcome.success:
        exc = outcome.error_before_exec or outcome.error_in_exec
        stb = shell.last_traceback or []
        text = _ANSI.sub("", "\n".join(stb))
        # What ran before the error stays done, as in a kernel: its names come back too.
        ran = outcome.error_before_exec is None
        partial = (
            _cell_result(shell, code, shipped, classes, options, partial=True) if ran else None
        )
        raise Failure("error", type(exc).__name__, str(exc), text, partial)
    return _cell_result(shell, code, shipped, classes, options, last=outcome.result)


def _origins(part: Any) -> dict[int, buffers.Origin]:
    """What a received part's arrays were as they arrived, by array id."""
    return part.origins if isinstance(part, buffers.Received) else {}


def _raw_environ() -> Mapping[Any, Any]:
    """The environment as `os.environ` keeps it, encoded (CPython's and PyPy's `_data`).

    Comparing it takes a microsecond; comparing `os.environ` itself decodes every variable,
    which was a third of a no-op job's time in the worker.
    """
    return getattr(os.environ, "_data", os.environ)


class Worker:
    """The state a worker keeps between jobs, and the loop that serves them."""

    def __init__(
        self,
        channel: protocol.Channel,
        shell: JobShell,
        lease: _LeaseWatch,
        starts: start_log.Recorder | None = None,
    ) -> None:
        self.channel = channel
        self.shell = shell
        self.lease = lease
        self.starts = starts
        self.home = os.getcwd()
        self.capture = Capture()
        streams.install(self.capture.lines)
        children.ChildPipes(self.capture.add_child, lambda: self.capture.job is not None).install()
        self.reporter = Reporter(channel)
        self.preloaded = frozenset(sys.modules)  # what no job's directory change may drop
        self.last_cwd: str | None = None  # the directory of the last job (see `_in_directory`)
        self.environ = dict(os.environ)  # what every job starts with
        self.environ_raw = dict(_raw_environ())
        #: What the last job left to do once it is reported (a notebook's kernel to shut down).
        self.after_done: list[Callable[[], None]] = []
        #: The functions of the jobs it ran, loaded once each (`shared.py`).
        self.functions = shared.LoadedFunctions()

    def _loaded(self, cwd: str) -> Loaded:
        """How a job run in `cwd` gets its pack's function: loaded once per worker."""
        return lambda unpacked: self.functions.get(unpacked, cwd, payloads.loads)

    @contextmanager
    def _in_directory(self, cwd: str) -> Iterator[None]:
        """Run in the job's directory, importing the job's local modules from there like a
        kernel.

        A function worker serves every notebook with its interpreter, so what one job leaves
        must not reach another's: the environment is restored after each job, and a job from
        another directory than the last one finds none of the last directory's modules (two
        notebooks may each have a `utils.py`). Jobs from the same directory keep them, as a
        kernel would.
        """
        try:
            os.chdir(cwd)
        except OSError as exc:
            raise Failure(
                "error", type(exc).__name__, f"cannot run in directory {cwd!r}: {exc}"
            ) from None
        if self.last_cwd is not None and self.last_cwd != cwd:
            _forget_modules_under(self.last_cwd, self.preloaded)
        self.last_cwd = cwd
        sys.path.insert(0, cwd)
        try:
            yield
        finally:
            if cwd in sys.path:
                sys.path.remove(cwd)
            if _raw_environ() != self.environ_raw:
                os.environ.clear()
                os.environ.update(self.environ)

    def _checkpoint(self, data: bytes) -> None:
        """The current job's result, should it be stopped before it ends."""
        self.channel.send({"t": FrameType.CHECKPOINT.value}, data)

    def serve(self) -> None:
        self.channel.send(
            {
                "t": FrameType.READY.value,
                "pid": os.getpid(),
                "python": platform.python_version(),
                "executable": sys.executable,
            }
        )
        inbox = _Inbox(self.channel, self.lease, shared.HeldFunctions())
        done: tuple[dict[str, Any], list[Any]] | None = None  # sent with the next "start"
        while True:
            job = inbox.take()
            if done is not None:
                self._send_done(*done, job)
                done = None
                while self.after_done:  # before the next job runs, whose log this is not
                    self.after_done.pop(0)()
            elif job is not None and job[0].get("queued"):
                self.channel.send(_start(job))
            if job is None:
                job = inbox.wait()
                if job is None:
                    break
                if job[0].get("queued"):
                    self.channel.send(_start(job))
            header, body = job
            done_header, parts = self.run(header, body)
            job = body = None  # the run's arrays go now, not when the next job comes
            if header["kind"] == "cell":
                self.channel.send(done_header, *parts)
                parts = None
                # Its names go now, not when the kernel's next cell comes (if it does).
                self.shell.reset(new_session=False)
                continue
            done = (done_header, parts)
        inbox.check()

    def _send_done(
        self, header: dict[str, Any], parts: list[Any], job: protocol.Frame | None
    ) -> None:
        """The last job's "done", in one write with the next job's "start" when it has one."""
        start = [(_start(job), b"")] if job is not None and job[0].get("queued") else []
        if sum(len(part) for part in parts) > protocol.JOIN_LIMIT:
            self.channel.send(header, *parts)
            for frame in start:
                self.channel.send(*frame)
        else:
            self.channel.send_frames([(header, b"".join(parts)), *start])

    def run(self, header: dict[str, Any], body: JobBody) -> tuple[dict[str, Any], list[Any]]:
        """One job, start to end; returns the "done" frame (header, body parts: big arrays
        as views of their memory, see buffers.py)."""
        cell = header["kind"] == "cell"
        outputs = Outputs() if cell else None
        output = JobOutput(self.channel, header.get("log_limit"), outputs)
        self.reporter.start(header.get("progress_interval", 1.0))
        context = JobContext(header["job_id"], header["attempt"])
        cwd = header.get("cwd") or self.home
        with self.capture.lock:
            self.capture.job = output
        self.lease.begin(header.get("lease_until"))
        result, error, reason, summary = None, None, None, None
        try:
            self._write_start(header)
            with self._in_directory(cwd), job_context(context, self.reporter.report):
                payload, upstream = _job_body(header, body)
                body = None  # what is loaded now lives as long as the job's names
                if outputs is not None:
                    target = CellOutput(self.capture, self.channel, outputs)
                    options = header.get("options") or {}
                    result = _run_cell(self.shell, target, payload, upstream, options)
                elif header["kind"] == "notebook":
                    interval = header.get("progress_interval", 1.0)
                    result = _run_notebook(
                        payload, self.reporter.report, self._checkpoint, interval, self.after_done
                    )
                elif header["kind"] == "typed":
                    result, summary = _run_typed(payload, header, self._loaded(cwd))
                else:
                    result = _run_function(payload, self._loaded(cwd))
        except Failure as failure:
            error, reason, result = failure.error, failure.reason, failure.result
        finally:
            # Jobs the job submitted are stored before it is reported: the worker may be
            # retired (`os._exit`) as soon as it is, and the exit hook would not run.
            flush_all()
            self.capture.reset()
            # A reused worker must stay killable: a job may have ignored SIGTERM.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self.reporter.flush()
            self.capture.end_job()
            self.lease.running = False
            oslayer.reap_orphans()
        notebook = outputs.to_json() if outputs is not None else b""
        done = {
            "t": FrameType.DONE.value,
            "status": "failed" if error else "succeeded",
            "reason": reason,
            "error": error,
            "has_result": result is not None,
            "result_len": len(result or b""),
            "has_outputs": outputs is not None,
            "outputs_len": len(notebook),
        }
        if summary is not None:
            done["summary"] = summary
        left = _leave_result(header.get("result_dir"), result)
        if left is not None:
            return {**done, "result_file": left}, [notebook]
        return done, [*buffers.parts(result or b""), notebook]

    def _write_start(self, header: dict[str, Any]) -> None:
        """Write the attempt down before anything of it runs (`start_log.py`). A worker whose
        consumer is gone begins nothing more: its claims may be given back already."""
        if self.starts is None:
            return
        try:
            consumer_alive = self.starts.begin(header["job_id"], header["attempt"])
        except OSError as exc:
            message = f"its start could not be written down, so it did not run: {exc}"
            raise Failure("error", type(exc).__name__, message) from None
        if not consumer_alive:
            oslayer.end_descendants()
            os._exit(1)


def _job_body(header: dict[str, Any], body: Any) -> tuple[Body, list[buffers.Loadable]]:
    """The payload (and upstream results) as the inbox read them, or the file the header names
    (a large payload, on this machine: never through the executor), its arrays mapped. A pack
    that comes with a file holds the function the file's arguments are for (`shared.py`)."""
    if isinstance(body, buffers.FramingError):
        message = f"the payload could not be read in the worker: {body}"
        raise Failure("payload", "FramingError", message)
    payload, upstream = body if isinstance(body, tuple) else (body, [])
    path = header.get("payload_file")
    if path is not None:
        try:
            mapped = buffers.map_file(path, int(header["payload_len"]))
        except (OSError, ValueError, EOFError) as exc:
            message = f"the payload file {path} could not be read in the worker: {exc}"
            raise Failure("payload", type(exc).__name__, message) from None
        unpacked = _unpacked(payload)
        payload = mapped if unpacked is None else dataclasses.replace(unpacked, arguments=mapped)
    return payload, upstream


def _leave_result(folder: str | None, result: bytes | buffers.Framed | None) -> str | None:
    """Write a large result to a new file in `folder` (the store's incoming folder, from the
    job header), for the store to take, rather than through the executor; its name, or None
    to send it in the "done" frame (small, no folder, or the file could not be written)."""
    if folder is None or result is None or len(result) <= protocol.READ_CHUNK:
        return None
    name = protocol.result_file_name()
    path = os.path.join(folder, name)
    try:
        write_private(path, buffers.parts(result))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None
    return name


def _start(job: protocol.Frame) -> dict[str, Any]:
    return {"t": FrameType.START.value, "job_id": job[0]["job_id"]}


class _Inbox:
    """The executor's frames, read by a thread of their own into a queue of jobs.

    A job sent ahead waits here while the current one runs; a "skip" for it is answered at
    once, so the executor can take it back from a worker stuck on a long job. `held`: the
    functions this worker holds (the executor sends each once: `shared.HeldFunctions`).
    """

    def __init__(
        self, channel: protocol.Channel, lease: _LeaseWatch, held: shared.HeldFunctions
    ) -> None:
        self.channel = channel
        self.lease = lease
        self.held = held
        self._jobs: deque[protocol.Frame] = deque()
        self._ready = threading.Condition()
        self._closed = False  # "exit", or the executor is gone
        self._error: BaseException | None = None
        threading.Thread(target=self._read, name="jobs-inbox", daemon=True).start()

    def take(self) -> protocol.Frame | None:
        """The next job if one is waiting."""
        with self._ready:
            return self._jobs.popleft() if self._jobs and not self._closed else None

    def wait(self) -> protocol.Frame | None:
        """The next job, waiting for it; None once the executor said "exit" or is gone."""
        with self._ready:
            self._ready.wait_for(lambda: self._jobs or self._closed)
            return None if self._closed else self._jobs.popleft()

    def check(self) -> None:
        """Raise what made the reader stop, if it was not a clean end."""
        if self._error is not None:
            raise self._error

    def _read(self) -> None:
        try:
            while (frame := self.channel.recv(_read_body)) is not None:
                header = frame[0]
                if header["t"] == FrameType.EXIT:
                    break
                with self._ready:
                    if header["t"] == FrameType.JOB:
                        # Counted as it comes, as the executor counted it when it sent it.
                        self._jobs.append((header, self._held(frame[1])))
                        self._ready.notify()
                    elif header["t"] == FrameType.SKIP:
                        self._skip(header["job_id"])
                    elif header["t"] == FrameType.LEASE:
                        self.lease.renew(header["until"])
                    elif header["t"] == FrameType.PING:
                        self.channel.send({"t": FrameType.PONG.value})
                    else:
                        raise protocol.ProtocolError(f"unexpected {header['t']!r} frame")
        except BaseException as exc:  # the main thread raises it, and the worker ends
            self._error = exc
        finally:
            with self._ready:
                self._closed = True
                self._ready.notify()

    def _held(self, body: JobBody) -> JobBody:
        """A job's body with its pack's function whole again (`shared.HeldFunctions`)."""
        if not isinstance(body, tuple):
            return body
        return self.held.receive(body[0]), body[1]

    def _skip(self, job_id: int) -> None:
        # Not found: it has started or ended already, as the executor learns from our frames.
        for job in self._jobs:
            if job[0]["job_id"] == job_id:
                self._jobs.remove(job)
                self.channel.send({"t": FrameType.SKIPPED.value, "job_id": job_id})
                return


def _forget_modules_under(directory: str, keep: frozenset[str]) -> None:
    """Drop the modules jobs imported from files under `directory`: the notebook's own. Not
    installed packages, even in a virtualenv inside it (an extension module cannot be loaded
    twice), nor those in `keep` (what the worker had imported before its first job)."""
    prefix = os.path.join(os.path.realpath(directory), "")
    installed = tuple(
        os.path.join(os.path.realpath(p), "")
        for p in {sys.prefix, sys.base_prefix, *site.getsitepackages()}
    )
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name in keep or not path:
            continue
        real = os.path.realpath(path)
        if real.startswith(prefix) and not real.startswith(installed):
            del sys.modules[name]


def _die_with_parent(parent: int) -> None:
    """Never outlive the server, even when it is killed with SIGKILL, and take the job's
    processes along: the runner adopts its orphaned descendants where it can (a Linux
    subreaper), and a thread that sees the parent gone kills them all before it exits."""
    oslayer.become_subreaper()
    oslayer.watch_parent(parent, before_exit=oslayer.end_descendants)
    if os.getppid() != parent:  # it died before the watch began
        oslayer.end_descendants()
        os._exit(1)


class _LeaseWatch:
    """Ends the job (its whole tree, and this worker) when its claim could not be renewed.

    The consumer's claim on a job is a lease; when it lapses another consumer may start the
    next attempt. A stalled consumer (stopped, swapping) cannot stop its workers, so each
    worker stops itself first: the executor sends, with the job and after every renewal, the
    wall-clock time by which the job must be over unless renewed again (`lease_until`, its
    lease minus a margin). Two attempts of a job therefore never run at once."""

    #: Seconds between two looks at the deadline.
    interval = 0.1

    def __init__(self, diagnostics: IO[str]) -> None:
        self.until: float | None = None
        self.running = False
        self._diagnostics = diagnostics
        threading.Thread(target=self._watch, name="jobs-lease-watch", daemon=True).start()

    def begin(self, until: float | None) -> None:
        """A job starts, with its own time (its claim's, or a renewal since)."""
        self.until, self.running = until, True

    def renew(self, until: float) -> None:
        """Every claim of the consumer was renewed: the current job's included."""
        if self.until is not None:
            self.until = max(self.until, until)

    def _watch(self) -> None:
        while True:
            time.sleep(self.interval)
            until = self.until
            if self.running and until is not None and time.time() > until:
                self._diagnostics.write(
                    "the job's claim was not renewed in time: stopped, so that no other "
                    "attempt of it runs at once\n"
                )
                self._diagnostics.flush()
                oslayer.end_descendants()
                os._exit(4)


def main(argv: list[str]) -> int:
    """Serve jobs until the executor says exit or goes away; returns the exit code."""
    channel_arg, parent = argv[0], int(argv[1])
    _die_with_parent(parent)
    starts = None
    if len(argv) > 2:
        starts = start_log.Recorder(Path(argv[2]), oslayer.still_parent(parent))
    channel = protocol.Channel(oslayer.child_socket(channel_arg))
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path.pop(0)  # added by -m; each job puts its own directory there instead
    os.environ.setdefault("MPLBACKEND", "agg")
    install_tqdm_bridge()
    shell = _make_shell()
    # The executor reads our original stderr: the worker's own last words (a crash in a C
    # extension, a protocol error) end up in the worker_lost error instead of nowhere.
    diagnostics = os.fdopen(os.dup(2), "w", buffering=1)
    faulthandler.enable(diagnostics, all_threads=False)
    try:
        Worker(channel, shell, _LeaseWatch(diagnostics), starts).serve()
    except Exception:
        traceback.print_exc(file=diagnostics)
        return 3
    return 0


if __name__ == "__main__":
    status = 3
    try:
        status = main(sys.argv[1:])
    finally:
        # Skip interpreter teardown: atexit hooks and non-daemon threads a job left behind must
        # not keep a retired worker alive.
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(status)
