"""`JobWidget`: a job's live view in a notebook, made of standard ipywidgets only.

Name, status (colour and word), progress bar with done/total and message, elapsed time and ETA,
the last log lines (the full log in an accordion), Cancel, Retry or Release when its `actions` offer
them (`lifecycle.allowed_actions`, the rule the server applies), then the captured outputs (in
an `Output` widget, so they render as in a cell; long prints cut to their tail) or the error
with its traceback.

The widget does not poll: the kernel's one `Poller` feeds it records from a background thread
(ipywidgets sends trait changes as comm messages from any thread, so it moves while the kernel
is busy). Work that touches the user's namespace runs on the kernel's main thread. A widget
keeps following a failed or cancelled job: whoever runs it again (its Retry, `%job retry`, the
sidebar, the REST API), the widget shows the new run and its names come back.

Saved notebooks: every display of the widget is a bundle of the widget view plus text/html and
text/plain describing the state, and when the job finishes the display is updated (by its
display_id) with the final state, captured outputs included. A notebook viewer without the
widget's model (nbconvert, GitHub, a notebook saved without widget state) shows that instead.
The bundle also names the job (`JOB_MIME`): the labextension renders the widget while its model
exists, and otherwise the job as the server knows it now (or, failing that, the saved state),
so a reopened notebook never shows "model not found".
"""

from __future__ import annotations

import collections
import functools
import html
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from IPython.display import display, publish_display_data, update_display

from .. import payload, wording
from ..errors import JobsError, ResultNotReady
from ..lifecycle import Action
from ..models import Job as JobRecord
from ..models import Status
from . import render

if TYPE_CHECKING:
    from .handle import RemoteJob

log = logging.getLogger(__name__)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: Which job a display shows; `created_at` tells it from another server's job with the same id.
JOB_MIME = "application/vnd.jupyter-jobs.job+json"
TAIL_LINES = 8
TAIL_BYTES = 8 * 2**10
FULL_LOG_BYTES = 2**20
#: The last log lines are fetched at most this often per widget while the log grows.
TAIL_INTERVAL = 1.0


def show(job: RemoteJob) -> JobWidget:
    """Display `job`'s widget (the one already made for it in this kernel, else a new one)."""
    widget = widget_for(job)
    widget.show()
    return widget


def widget_for(job: RemoteJob, **kwargs: Any) -> JobWidget:
    """The widget of `job` on its connection: one per job, so showing a job again shows
    another view of the same widget (which keeps what its `%%job` cell needs to finish)."""
    backend = job.backend
    with backend.widgets_lock:
        widget = backend.widgets.get(job.id)
        if widget is None:
            widget = backend.widgets[job.id] = JobWidget(job, **kwargs)
            return widget
    widget.adopt(job)
    return widget


def _ending(record: JobRecord) -> tuple[int, float | None]:
    """Which end of a job a record shows: a retry that is cancelled before it is claimed ends
    again with the same attempt number, but not at the same time."""
    return record.attempt, record.finished_at


def _before_cancel(record: JobRecord, shown: JobRecord) -> bool:
    """Whether `record` was fetched before the cancel `shown` asked for: within an attempt, a
    job asked to cancel stays so until it ends (the poller's fetch may cross the click's)."""
    return (
        record.attempt == shown.attempt
        and shown.cancel_requested
        and not record.cancel_requested
        and not record.finished
    )


#: Ends after which a cell's names come back: a failed cell keeps what it set before the error.
_SENDS_NAMES = (Status.SUCCEEDED, Status.FAILED)


def call_on_main(fn: Callable[..., None], *args: Any) -> None:
    """Run `fn(*args)` on the kernel's main thread, between cells (at once if already there).

    Namespace updates must not race the user's running cell. An ipykernel hands them to its
    event loop. A terminal IPython has no loop to hand over to: they wait for the next cell to
    start (its `pre_run_cell` event, on the main thread), or for `job.wait()`/`result()`. In a
    plain script there are no cells, and `fn` runs in this thread.
    """
    from IPython import get_ipython

    shell = get_ipython()
    loop = getattr(getattr(shell, "kernel", None), "io_loop", None)
    if threading.current_thread() is threading.main_thread() or shell is None:
        _logged(fn, *args)
    elif loop is not None:
        loop.add_callback(_logged, fn, *args)
    else:
        _on_event(shell, "pre_run_cell", fn, args)


def after_cell(fn: Callable[..., None], *args: Any) -> None:
    """Run `fn(*args)` on the main thread once the running cell has ended (its
    `post_run_cell` event, which comes also when the cell failed); at once outside IPython."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        _logged(fn, *args)
    else:
        _on_event(shell, "post_run_cell", fn, args)


#: Main-thread work waiting for an IPython event, by event (`call_on_main`, `after_cell`).
_waiting: dict[str, collections.deque[tuple[Callable[..., None], tuple[Any, ...]]]] = {}


def _on_event(shell: Any, event: str, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    """Queue `fn(*args)` for the shell's next `event`, hooked once per shell and event."""
    _waiting.setdefault(event, collections.deque()).append((fn, args))
    hooked: set[str] = getattr(shell, "_jupyter_jobs_hooked", set())
    if event not in hooked:
        shell._jupyter_jobs_hooked = hooked | {event}
        shell.events.register(event, functools.partial(_run_waiting, event))


def _run_waiting(event: str, *_info: Any) -> None:
    queue = _waiting[event]
    while queue:
        fn, args = queue.popleft()
        _logged(fn, *args)


def _logged(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("jupyter_jobs: %s failed", getattr(fn, "__qualname__", fn))


class JobWidget:
    """The live view of one job. `on_result(result)` (main thread) gets a succeeded job's
    result, or what a failed cell sent back (the names it set before its error), and may return
    a namespace report (`MergeReport.to_json()`) to list; `on_kept()` (main thread) is called
    after each run that ended without success, whose `on_result` is kept for a Retry (it lets
    go of what a Retry does not need); `inline=True` (`%%job --wait`) leaves the captured
    outputs to the cell itself, which publishes them as its own outputs.

    The log, names and outputs parts are created when there is something to show: every
    ipywidget costs comm messages, and a trivial `%%job` should appear at once.
    """

    def __init__(
        self,
        job: RemoteJob,
        *,
        on_result: Callable[[Any], dict[str, Any] | None] | None = None,
        on_kept: Callable[[], None] | None = None,
        inline: bool = False,
    ) -> None:
        self.job = job
        self.record: JobRecord = job.record
        self.on_result = on_result
        self.on_kept = on_kept
        self.inline = inline
        self.report: dict[str, Any] | None = None
        self.outputs: list[dict[str, Any]] = []
        self.tail: list[str] = []
        self.problem = ""
        self._lock = threading.RLock()
        self._display_ids: list[str] = []
        self._completed: tuple[int, float | None] | None = None  # `_ending` of the last finish
        self._collected: tuple[int, float | None] | None = None  # the end whose outputs show
        self._completing = False
        self._resent: tuple[int, float | None] | None = None
        self._tail_size = 0
        self._tail_at = 0.0
        self._full_offset = 0
        self._full_text = ""

        self.header = widgets.HTML()
        self.bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, layout={"width": "40%"})
        self.bar_label = widgets.Label()
        self.action = widgets.Button(layout={"width": "auto"})
        self.action.on_click(lambda _: self._act(self._on_action))
        # A held job waits for this: the one action offered beside the main one.
        self.release = widgets.Button(description="Release", icon="play", layout={"width": "auto"})
        self.release.on_click(lambda _: self._act(self._on_release))
        self.log_tail: widgets.HTML | None = None
        self.log_box: widgets.Accordion | None = None
        self.full_log: widgets.HTML | None = None
        self.names: widgets.HTML | None = None
        self.out: widgets.Output | None = None
        self.box = widgets.VBox(
            [self.header, widgets.HBox([self.bar, self.bar_label, self.release, self.action])]
        )
        self._render(self.record)

    # --- showing -----------------------------------------------------------------------------

    def show(self) -> None:
        """Display one more view of this widget, and keep it fed until the job finishes."""
        with self._lock:
            if self.record.finished:
                self.complete()
            handle = display(self._bundle(), raw=True, display_id=True)
            self._display_ids.append(handle.display_id)
        self._follow(self.record)

    def _follow(self, record: JobRecord) -> None:
        """Keep getting the job's records while it runs, or while it may run again."""
        if not record.finished or Action.RETRY in record.actions:
            self.job.backend.poller.watch(self.job.id, self)

    def _bundle(self) -> dict[str, Any]:
        """Widget view, the job's identity, and the state as HTML and text (what shows where
        widgets cannot)."""
        shown = () if self.inline else self.outputs
        bundle: dict[str, Any] = render.static_bundle(
            self.record, outputs=shown, log_lines=self.tail, report=self.report
        )
        bundle[WIDGET_MIME] = {
            "version_major": 2,
            "version_minor": 0,
            "model_id": self.box.model_id,
        }
        record = self.record
        bundle[JOB_MIME] = {"id": record.id, "name": record.name, "created_at": record.created_at}
        return bundle

    def _update_displays(self) -> None:
        bundle = self._bundle()
        for display_id in self._display_ids:
            update_display(bundle, raw=True, display_id=display_id)

    def _layout(self) -> None:
        """The parts that exist, in their fixed order."""
        parts = [self.log_tail, self.log_box, self.names, self.out]
        self.box.children = [*self.box.children[:2], *(p for p in parts if p is not None)]

    # --- fed by the poller (background thread) -----------------------------------------------

    def observe(self, record: JobRecord) -> None:
        with self._lock:
            if record.attempt < self.record.attempt or _before_cancel(record, self.record):
                # a record fetched before a retry or a cancel this widget shows already (if it
                # was that run's end, the poller has let go of this job: the new run is still
                # to follow)
                self._follow(self.record)
                return
            if self._collected is not None:  # an end is shown: is this a new run?
                rerun = self._rerun(record)
                if rerun is None:
                    self._follow(self.record)
                    return
                self._restart(self.job.backend.handle(rerun))
                record = rerun
            self.problem = ""
            self._render(record)
            self._refresh_tail(record, force=record.finished)
            if record.finished and not self.inline:
                self._collect(record)
                call_on_main(self._complete, record)
            if record.finished:
                self._follow(record)

    def _rerun(self, record: JobRecord) -> JobRecord | None:
        """The record of a new run of the job, when `record` may show one, else None.

        A later attempt is one. A record of the attempt shown may also have been fetched just
        before the end this widget shows (by the poller, while `wait()` fetched the end): only
        the server's current record tells a stale one from a retry not yet claimed.
        """
        shown = self._collected
        if shown is None or (record.finished and _ending(record) == shown):
            return None
        if record.attempt == shown[0]:
            record = self.job.backend.get(self.job.id)
            if record.finished and _ending(record) == shown:
                return None
        return record

    def observe_missing(self, job_id: int) -> None:
        with self._lock:
            self.problem = f"job {job_id} no longer exists (deleted)"
            self._render(self.record)
            self.action.layout.display = "none"

    def observe_error(self, exc: JobsError) -> None:
        with self._lock:
            self.problem = f"cannot reach the server, still trying: {exc.message}"
            self._render(self.record)

    # --- rendering ---------------------------------------------------------------------------

    def _render(self, record: JobRecord) -> None:
        self.record = record
        header = render.header_html(record)
        if self.problem:
            header += f'<br><span style="color:#c62828">{html.escape(self.problem)}</span>'
        self.header.value = header
        p = record.progress
        status = record.status
        has_bar = bool(p and p.total) or status is Status.SUCCEEDED
        self.bar.layout.display = "" if has_bar else "none"
        if p and p.total:
            self.bar.max = float(p.total)
            self.bar.value = min(float(p.done), float(p.total))
        elif status is Status.SUCCEEDED:
            self.bar.max, self.bar.value = 1.0, 1.0
        self.bar.bar_style = render.BAR_STYLES.get(status, "")
        self.bar_label.value = wording.progress_text(record)
        if Action.CANCEL in record.actions:
            self.action.description, self.action.icon = "Cancel", "stop"
            self.action.layout.display = ""
        elif Action.RETRY in record.actions:
            self.action.description, self.action.icon = "Retry", "redo"
            self.action.layout.display = ""
        else:
            self.action.layout.display = "none"
        self.release.layout.display = "" if Action.RELEASE in record.actions else "none"

    def _refresh_tail(self, record: JobRecord, force: bool = False) -> None:
        """The last lines of the log, fetched only when it grew (and at most once a second)."""
        now = time.monotonic()
        grew = record.log_size != self._tail_size
        if not grew or (not force and now - self._tail_at < TAIL_INTERVAL):
            return
        self._tail_at, self._tail_size = now, record.log_size
        offset = max(0, record.log_size - TAIL_BYTES)
        page = self.job.backend.log_page(self.job.id, offset, TAIL_BYTES)
        lines = page["data"].splitlines()
        if offset > 0 and lines:
            lines = lines[1:]  # the first line is cut
        self.tail = lines[-TAIL_LINES:]
        if self.log_tail is None:
            self.log_tail = widgets.HTML()
            self.full_log = widgets.HTML()
            self.log_box = widgets.Accordion([self.full_log], selected_index=None)
            self.log_box.set_title(0, "Full log")
            self.log_box.observe(self._on_log_toggle, names="selected_index")
            self._layout()
        self.log_tail.value = render.log_html(self.tail)
        if self.log_box is not None and self.log_box.selected_index == 0:
            self._load_full_log()

    def _on_log_toggle(self, change: dict[str, Any]) -> None:
        if change["new"] == 0:
            self._act(self._load_full_log)

    def _load_full_log(self) -> None:
        with self._lock:
            while True:
                page = self.job.backend.log_page(self.job.id, self._full_offset, FULL_LOG_BYTES)
                if not page["data"]:
                    break
                self._full_text = (self._full_text + page["data"])[-FULL_LOG_BYTES:]
                self._full_offset = int(page["next_offset"])
            if self.full_log is not None:
                self.full_log.value = render.log_html(self._full_text.splitlines(), "30em")

    def _show_names(self) -> None:
        text = render.names_html(self.report, self.job.id)
        if self.names is None and text:
            self.names = widgets.HTML()
            self._layout()
        if self.names is not None:
            self.names.value = text

    # --- finishing ---------------------------------------------------------------------------

    def _collect(self, record: JobRecord) -> None:
        """Fetch what a finished job left: captured outputs, and the error as an output."""
        outputs = self.job.backend.outputs(self.job.id) if record.has_outputs else []
        self.outputs = render.tail_streams(outputs, self.job.id)
        error = render.error_output(record)
        if error is not None and not any(o.get("output_type") == "error" for o in self.outputs):
            self.outputs.append(error)
        if not self.inline and (self.outputs or self.out is not None):
            if self.out is None:
                self.out = widgets.Output()
                self._layout()
            self.out.outputs = tuple(_plain(o) for o in self.outputs)
        if self.log_tail is not None and self.outputs:
            # the prints and the traceback now show as outputs: the tail would repeat them
            self.log_tail.layout.display = "none"
        self._collected = _ending(record)

    def _complete(self, record: JobRecord) -> None:
        """Main thread, once per attempt: namespace update, then the final displays."""
        with self._lock:
            if self._completed == _ending(record):
                return
            self._completed = _ending(record)
            self._completing = True
            merged = record.status in _SENDS_NAMES and self.on_result is not None
            try:
                if merged:
                    self._set_names(self.on_result)
            finally:
                self._completing = False
            self._update_displays()
            if record.status is Status.SUCCEEDED:
                self._let_go(merged)
            elif self.on_kept is not None:
                _logged(self.on_kept)

    def _set_names(self, on_result: Callable[[Any], dict[str, Any] | None]) -> None:
        """Main thread: put the job's names into the namespace and list them: a succeeded
        job's, or those a failed cell set before its error (as a kernel keeps them)."""
        try:
            if self.record.status is Status.SUCCEEDED:
                self.report = on_result(self.job.result())
            elif (sent := self._sent_before_the_error()) is not None:
                self.report = on_result(sent)
                if self.report is not None:
                    self.report["before_error"] = True
            self._show_names()
        except Exception as exc:  # e.g. a result whose class this kernel cannot import
            log.exception("jupyter_jobs: job %s: setting its names failed", self.job.id)
            self.problem = f"the job's names could not be set: {type(exc).__name__}: {exc}"
            self._render(self.record)

    def _sent_before_the_error(self) -> dict[str, Any] | None:
        """What a failed cell sent back, if anything (a function job, or a worker that died,
        sends nothing)."""
        try:
            data = self.job.backend.result_bytes(self.job.id)
        except ResultNotReady:
            return None
        return payload.loads(data)

    def complete(self, resend: bool = False) -> None:
        """Finish now (main thread) if the job has finished and this attempt is not done yet.

        `resend` repeats the final display update even if it was sent already: sent between
        cells, it reached a live frontend but not nbclient/papermill, which only listen while a
        cell runs. From `job.wait()` it lands in the waiting cell, so saved notebooks get it.
        """
        with self._lock:
            if self._completing or self.inline:
                return
            record = self.job.refresh() if not self.record.finished else self.record
            if not record.finished:
                return
            if self._completed != _ending(record):
                self._render(record)
                self._refresh_tail(record, force=True)
                self._collect(record)
                self._complete(record)
            elif resend and self._resent != _ending(record):
                self._update_displays()
            self._resent = _ending(record)

    def finish_if_main(self, _job: Any = None) -> None:
        """A done callback of the handle: settled on the main thread (a `wait()` or `result()`
        there), the job's namespace update is applied now, so the cell's names are there after
        it; settled by the poller's thread, the poller's update applies it between cells."""
        if threading.current_thread() is threading.main_thread():
            self.complete(resend=True)

    def finish_here(self) -> None:
        """`%%job --wait`: the job is done; put its outputs into the running cell itself.

        Its result (a succeeded cell's last value) or its error is the cell's own, which the
        magic shows as the cell's end (`execute_result`, or the cell fails): not here.
        """
        record = self.job.record  # fetched again only if the long poll settled it
        with self._lock:
            self._render(record)
            self._refresh_tail(record, force=True)
            self._collect(record)
            own = "error" if record.status is Status.FAILED else "execute_result"
            for output in self.outputs:
                if output.get("output_type") != own:
                    publish_output(output)
            self._complete(record)

    def stop_inline(self) -> None:
        """The `--wait` was interrupted: let the poller finish the job's view later."""
        with self._lock:
            self.inline = False
            record = self.record
        if record.finished:
            self.observe(record)
        else:
            self.job.backend.poller.watch(self.job.id, self)

    # --- the button --------------------------------------------------------------------------

    def _on_action(self) -> None:
        if Action.RETRY in self.record.actions:
            self._retry()
        elif Action.CANCEL in self.record.actions:
            self.job.cancel()
            self._render(self.job.record)

    def _on_release(self) -> None:
        if Action.RELEASE in self.record.actions:
            self._render(self.job.backend.release(self.job.id))

    def bring_names(self, on_result: Callable[[Any], dict[str, Any] | None]) -> None:
        """`%job attach`/`retry` (main thread): the job's names come into this kernel by
        `on_result`, now if its run has ended in success, else when it does (a widget made by
        `%%job` in this kernel keeps its own snapshot of the submit for that)."""
        with self._lock:
            if self.on_result is None:
                self.on_result = on_result
            ended = self._completed == _ending(self.record)
            if ended and self.record.status is Status.SUCCEEDED:
                self._set_names(on_result)
                self._update_displays()
                self._let_go(merged=True)

    def _let_go(self, merged: bool) -> None:
        """A succeeded run is over: from now on nothing here may keep its result alive, so
        that `del` frees it as it would inline (the namespace is its home now).

        A succeeded job never runs again, so `on_result` and `on_kept` go (the submit's
        snapshot holds the objects its names were bound to then). The handle the names came
        from (`merged`) forgets the value: its `result()` fetches it again. And the widget
        follows a handle of its own from now on, not one its user may have called `result()`
        on. A `--wait` cell's result is the cell's own, whose last value the magic shows after
        this: it is let go once the cell has ended.
        """
        if self.inline:
            after_cell(self._release, self.job, merged)
        else:
            self._release(self.job, merged)

    def _release(self, job: RemoteJob, merged: bool) -> None:
        with self._lock:
            if job is not self.job:  # run again meanwhile (a retry): its own end lets go
                return
            self.on_result = self.on_kept = None
            if merged:
                job.forget_result()
            self.job = job.backend.handle(self.record)
            if self.inline:  # published as the cell's own outputs, never shown here
                self.outputs = []

    def _retry(self) -> None:
        self._restart(self.job.retry())
        self.job.backend.poller.watch(self.job.id, self)

    def adopt(self, job: RemoteJob) -> None:
        """Another handle of this job (`%job retry`/`attach`, `jj.get`): if the job was run
        again since this widget finished (a retry from anywhere), follow the new run."""
        with self._lock:
            if job is self.job or not self.record.finished:
                return
            fresh = job.record
            if not fresh.finished or _ending(fresh) != _ending(self.record):
                self._restart(job)

    def _restart(self, job: RemoteJob) -> None:
        """Follow `job`, run again: clear what the last run left. It runs in the background
        now, even if the first run was a `--wait` cell's."""
        self.job, self.inline = job, False
        self.outputs, self.report, self.problem = [], None, ""
        self._collected = None
        if self.out is not None:
            self.out.outputs = ()
        if self.log_tail is not None:
            self.log_tail.layout.display = ""
        self._show_names()
        self._render(job.record)

    def _act(self, action: Callable[[], Any]) -> None:
        """Run a button's action; a refusal (already finished, server gone) shows in the widget."""
        try:
            with self._lock:
                action()
        except JobsError as exc:
            with self._lock:
                self.problem = exc.message
                self._render(self.record)


def _plain(output: dict[str, Any]) -> dict[str, Any]:
    """nbformat allows multi-line strings as lists; the Output widget wants strings."""
    fixed = dict(output)
    if "text" in fixed:
        fixed["text"] = _text(fixed["text"])
    if "data" in fixed:
        fixed["data"] = {k: _text(v) for k, v in fixed["data"].items()}
    if fixed.get("output_type") == "execute_result":
        fixed.pop("execution_count", None)
        fixed["output_type"] = "display_data"
    if "data" in fixed:
        fixed.setdefault("metadata", {})
    return fixed


def _text(value: Any) -> Any:
    return "".join(value) if isinstance(value, list) else value


def publish_output(output: dict[str, Any]) -> None:
    """Emit one nbformat output as an output of the running cell."""
    output = _plain(output)
    kind = output.get("output_type")
    if kind == "stream":
        stream = sys.stderr if output.get("name") == "stderr" else sys.stdout
        stream.write(output.get("text", ""))
        stream.flush()
    elif kind == "error":
        publish_error(output.get("ename", "Error"), output.get("evalue", ""), output["traceback"])
    else:
        publish_display_data(output.get("data", {}), output.get("metadata", {}))


def publish_error(ename: str, evalue: str, traceback: list[str]) -> None:
    """An `error` output (red traceback) in the running cell, without failing the cell.

    `_showtraceback` is IPython's documented hook for where a shell shows tracebacks (ipykernel
    sends them as `error` messages); the cell itself still ends normally.
    """
    from IPython import get_ipython

    shell = get_ipython()
    stb = traceback or [f"{ename}: {evalue}"]
    if shell is None:
        sys.stderr.write("\n".join(stb) + "\n")
        return
    remote_type = type(ename.rsplit(".", 1)[-1] or "Error", (Exception,), {})
    shell._showtraceback(remote_type, evalue, stb)
