"""Labelled output streams: which thread or child process of a job wrote which output.

In a worker, fds 1 and 2 are pipes (`runner.Capture`), and bytes read from a pipe do not say who
wrote them. So the streams are told apart where they are still apart:

- Python-level text writes (`print`, `sys.stdout.write`, a logging `StreamHandler`) know their
  thread: those of a thread other than the job's own go to the stream `thread <name>`, and
  inside `with jupyter_jobs.stream(label):` (a context: one thread, or one asyncio task) to
  `label`. The job's own thread writes to the main stream, as before.
- Child processes get pipes of their own as fds 1 and 2 (`children.py`), so everything they and
  their own children write, exec'd programs and C code included, goes to `pid <pid>` (or to the
  `stream()` label they were started in).

The runner installs `LabelledText` as `sys.stdout`/`sys.stderr`; outside a worker, `stream()` is
a quiet no-op context, so the same code runs in a notebook. Light on purpose: job code imports
it through `jupyter_jobs.stream`.
"""

from __future__ import annotations

import contextvars
import io
import os
import threading
from collections.abc import Callable
from typing import Any

#: The main stream's name: the job's own output (its thread, and what reaches fds 1 and 2
#: without a label). A `stream("main")` writes there too.
MAIN = "main"
#: The longest label (it is a segment of the log's stream list and of `?stream=` queries).
MAX_LABEL = 200

_label: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "jupyter_jobs_stream", default=None
)


def check_label(label: Any) -> str:
    """A stream label: text of 1 to MAX_LABEL characters on one line."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"a stream label must be non-empty text, got {label!r}")
    if len(label) > MAX_LABEL or any(c in label for c in "\r\n\x00"):
        raise ValueError(f"a stream label is one line of at most {MAX_LABEL} characters")
    return label


class stream:  # lower case: used like a function, `with jupyter_jobs.stream("fold-3"):`
    """Within the block, what this thread (or asyncio task) prints, and the processes it starts,
    write to the stream `label` of the job's log, shown on its own in the detail view.

    Outside a job this does nothing, so code using it runs unchanged in a notebook.
    """

    def __init__(self, label: str) -> None:
        self.label = check_label(label)
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> stream:
        self._token = _label.set(self.label)
        return self

    def __exit__(self, *exc: object) -> None:
        lines = _lines
        if lines is not None:
            lines.flush(self.label)  # its last partial line goes out with its label
        if self._token is not None:
            _label.reset(self._token)
            self._token = None


def current_label() -> str | None:
    """The stream what this thread writes now belongs to; None for the main stream."""
    label = _label.get()
    if label is not None:
        return None if label == MAIN else label
    thread = threading.current_thread()
    if thread is threading.main_thread():
        return None
    return f"thread {thread.name}"


def explicit_label() -> str | None:
    """The `stream()` label in force here, if any (the main stream's is None)."""
    label = _label.get()
    return None if label == MAIN else label


def label_for_child(pid: int | None = None) -> str:
    """The stream a child process started now writes to: the `stream()` label in force, else
    its pid (`pid` None: this process's own, in a child just forked)."""
    return explicit_label() or f"pid {os.getpid() if pid is None else pid}"


class LabelledLines:
    """Labelled text, delivered a line at a time (as a terminal shows it), so two threads'
    lines never cut into each other; a partial line goes out on `flush`.

    `deliver(name, label, data)`: name is "stdout" or "stderr", data UTF-8 bytes.
    """

    def __init__(self, deliver: Callable[[str, str, bytes], None]) -> None:
        self._deliver = deliver
        self._partial: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def write(self, name: str, label: str, text: str) -> None:
        with self._lock:
            pending = self._partial.pop((label, name), "") + text
            cut = pending.rfind("\n") + 1
            if cut < len(pending):
                self._partial[(label, name)] = pending[cut:]
            if cut:
                self._deliver(name, label, _encode(pending[:cut]))

    def flush(self, label: str | None = None) -> None:
        """Deliver the partial lines of `label` (None: of every label). Nothing in a process
        forked from the worker (its lock may have been held by a thread the fork left behind;
        the child's output goes to its own pipes)."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            for key in [k for k in self._partial if label is None or k[0] == label]:
                self._deliver(key[1], key[0], _encode(self._partial.pop(key)))


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="backslashreplace")


#: The worker's lines while it serves jobs (`install`); None elsewhere.
_lines: LabelledLines | None = None


def install(lines: LabelledLines) -> None:
    """Make `stream()` blocks flush into `lines` when they end (the runner, once)."""
    global _lines
    _lines = lines


class LabelledText(io.TextIOWrapper):
    """`sys.stdout`/`sys.stderr` in a worker: a line-buffered text stream on fd 1 or 2 whose
    writes from a labelled context (`current_label`) go to `lines` instead, with the label.

    In a process forked from the worker (another pid) every write goes to the fd, which is the
    child's own pipe there. Bytes written to `.buffer` and to the fd itself have no label.
    """

    def __init__(self, fd: int, name: str, lines: LabelledLines) -> None:
        raw = io.FileIO(fd, "w", closefd=False)
        super().__init__(
            io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace", line_buffering=True
        )
        self._stream_name = name
        self._lines = lines
        self._pid = os.getpid()

    def write(self, text: str) -> int:
        label = current_label()
        if label is None or os.getpid() != self._pid:
            return super().write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._lines.write(self._stream_name, label, text)
        return len(text)

    def flush(self) -> None:
        super().flush()
        label = current_label()
        if label is not None and os.getpid() == self._pid:
            self._lines.flush(label)
