"""`%%job`, `%jobs` and `%job ...`: run a cell in the background and follow jobs from a notebook.

`%%job` ships the cell's code and the variables it reads, submits it with this kernel's
interpreter and working directory, and shows the widget. When the job succeeds the names the
cell assigned (or `--return`'s) and the shipped variables it changed come back into the
namespace, except names the user rebound meanwhile (see `namespace.py`). `%job attach ID` and
`%job retry ID` bring a cell job's names into any kernel (the one restarted since the submit,
another notebook): the names free there, never one the user has bound. Mistakes the user can
fix (bad options, a variable that cannot be sent, no server) are `UsageError`s: one clear line,
no traceback through IPython's internals.
"""

from __future__ import annotations

import argparse
import html
import os
import shlex
import traceback
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from IPython.utils.process import arg_split

from .. import display_options, figures, options, rng, wording
from ..errors import (
    IllegalTransition,
    InvalidRequest,
    JobNotFound,
    PayloadTooLarge,
    ServerUnavailable,
)
from ..models import Kind, Status
from ..payload import cell_payload, read_names
from . import api, render, session
from .handle import RemoteJob
from .namespace import Snapshot, merge
from .widget import JobWidget, widget_for

SUBCOMMANDS = ("show", "logs", "cancel", "retry", "release", "result", "attach")
LINE_USAGE = "%job show|logs|cancel|retry|release|result|attach ID"


@magic_arguments()
@argument("--return", dest="return_", metavar="NAMES", help="comma-separated names to send back")
@argument("--no-return", action="store_true", help="send no names back")
@argument("--out", metavar="VAR", help="bind the Job handle to VAR")
@argument("--wait", action="store_true", help="block until the job is done")
def _cell_options(line: str) -> None:
    """%%job [options]: run this cell as a background job.

    The submit options come from `jupyter_jobs.options.OPTIONS` (as `jj.submit`'s)."""


options.add_arguments(_cell_options.parser)
_cell_options.parser.prog = "%%job"
_cell_options.__doc__ = _cell_options.parser.format_help()


@dataclass
class CellOptions:
    """`%%job`'s options, checked: what `parse_cell_options` returns."""

    #: The submit options given on the line (`OPTIONS`' names); the others keep their defaults.
    submit: dict[str, Any]
    return_names: list[str] | None
    no_return: bool
    out: str | None
    wait: bool

    @property
    def after(self) -> list[int]:
        return self.submit.get("after") or []


def parse_cell_options(line: str) -> CellOptions:
    """Parse `%%job`'s line; UsageError names the bad option."""
    try:  # POSIX quoting, so that `--name "my job"` is `my job` (IPython keeps the quotes)
        argv = arg_split(line, posix=True)
    except ValueError as exc:
        raise UsageError(f"%%job: {exc}") from None
    args = vars(_cell_options.parser.parse_args(argv))
    if args["return_"] is not None and args["no_return"]:
        raise UsageError("%%job: --return and --no-return exclude each other")
    return_names = _names(args["return_"], "--return") if args["return_"] is not None else None
    if args["out"] is not None and not args["out"].isidentifier():
        raise UsageError(f"%%job: --out needs a variable name, got {args['out']!r}")
    given = options.given(args)
    return CellOptions(
        submit=given,
        return_names=return_names,
        no_return=args["no_return"],
        out=args["out"],
        wait=args["wait"],
    )


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not n.isidentifier()]
    if bad or not names:
        raise UsageError(f"%%job: {option} takes comma-separated names, got {text!r}")
    return names


def default_name(cell: str) -> str:
    """The cell's first line of code past its imports: what a user recognises in a list."""
    lines = [raw.strip() for raw in cell.splitlines()]
    code = [line for line in lines if line and not line.startswith("#")]
    body = [line for line in code if not line.startswith(("import ", "from "))]
    line = (body or code or ["cell"])[0]
    return line if len(line) <= 60 else line[:57] + "..."


def cell_number(shell: Any) -> int:
    """The running cell's number, `n` of `In[n]`: IPython 9 counts the cell before running it,
    IPython 8 after, so the shell's `execution_count` is one apart between them; the running
    cell's result object knows its own."""
    running = getattr(shell.displayhook, "exec_result", None)
    count = getattr(running, "execution_count", None)
    return count if isinstance(count, int) else shell.execution_count


@magics_class
class JobMagics(Magics):
    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        # The snapshots of cell jobs submitted `--after` a job of this kernel, by that job's
        # id, until its names come back (see `Snapshot.follow`). Weakly: a snapshot lives as
        # long as its own cell may still take names (its widget's `on_result`), whether or
        # not the job it waits on ever sends any (a function job, a cancelled cell).
        self._after: dict[int, weakref.WeakSet[Snapshot]] = {}

    @line_cell_magic
    def job(self, line: str, cell: str | None = None) -> Any:
        """%%job [options]: run the cell as a background job (options below).

        %job show|logs|cancel|retry|release|result|attach ID: look at or act on one job;
        attach and retry bring a cell job's names into this kernel (after a restart too).
        """
        if cell is None:
            return self._job_line(line)
        try:
            return self._job_cell(line, cell)
        except BaseException as exc:
            _clear_frames(exc)
            raise

    @line_magic
    def jobs(self, line: str) -> None:
        """%jobs [--all] [--status running,queued]: this notebook's jobs as a table."""
        parser = _Parser(prog="%jobs [--all] [--status S,...]", add_help=False)
        parser.add_argument("--all", action="store_true")
        parser.add_argument("--status")
        args = parser.parse_args(_words("%jobs", line))
        status = args.status.split(",") if args.status else None
        with _user_errors():
            found = api.jobs(status=status, all=args.all)
        display(jobs_table([j.record for j in found]), raw=True)

    # --- %%job -------------------------------------------------------------------------------

    def _job_cell(self, line: str, cell: str) -> None:
        opts = parse_cell_options(line)
        ns = self.shell.user_ns
        count = cell_number(self.shell)
        error = self._syntax_error(cell, count)
        if error is not None:
            raise error  # as inline, and nothing is submitted
        with _user_errors():
            # the body starts on the cell's second line, under `%%job`
            payload, info = cell_payload(
                cell,
                ns,
                execution_count=count,
                first_line=2,
                settings={
                    "rng": rng.capture(),
                    "display": display_options.capture(),
                    "figures": figures.style(),
                },
            )
            submit = dict(opts.submit)
            spec = api.make_spec(
                Kind.CELL,
                submit.pop("name", None) or default_name(cell),
                **submit,
                options={
                    "return": opts.return_names,
                    "no_return": opts.no_return,
                    "kernel": session.PROCESS,
                },
            )
            # Names from the cells it runs after are not in the kernel yet: tracked as unbound.
            later = [n for n in read_names(cell) if n not in ns] if opts.after else []
            names = dict.fromkeys([*info.assigned, *info.names, *later])
            snapshot = Snapshot.take(ns, names)
            (job,) = api.connection().submit_and_wait([(spec, payload)])
        self._after = {upstream: waiting for upstream, waiting in self._after.items() if waiting}
        for upstream in opts.after:
            self._after.setdefault(upstream, weakref.WeakSet()).add(snapshot)
        if opts.out:
            ns[opts.out] = job
        on_result = partial(self._cell_done, job.id, snapshot, opts, info.incidental, os.getcwd())
        widget = widget_for(job, on_result=on_result, on_kept=snapshot.release, inline=opts.wait)
        # The names come back by a done callback, not by waiting: it finishes the cell at once
        # when a `wait()`/`result()` on the main thread settles the handle; without one, the
        # widget's own update does, between cells.
        job.add_done_callback(widget.finish_if_main, follow=False)
        widget.show()
        if opts.wait:
            try:
                job.wait()
            except KeyboardInterrupt:
                widget.stop_inline()
                raise
            widget.finish_here()
            self._end_as_inline(widget)

    def _syntax_error(self, cell: str, count: int) -> JobCellError | None:
        """The error IPython shows for the cell's code when it does not compile, as inline
        (`Cell In[n], line k`, with `k` counted from the `%%job` line); None when it does."""
        shell = self.shell
        try:
            source = shell.transform_cell(cell)
        except Exception:
            return None  # not a syntax error: `cell_payload` names the problem
        # IPython dropped the leading blank lines, and the code starts under the `%%job` line:
        # blank lines in their place give the errors (and their messages) the cell's numbers
        blank = next((i for i, text in enumerate(cell.splitlines()) if text.strip()), 0)
        source = "\n" * (1 + blank) + source
        name = shell.compile.cache(source, count, raw_code=cell)
        try:
            shell.compile.ast_parse(source, filename=name)
        except SyntaxError as exc:  # IndentationError included
            stb = shell.SyntaxTB.structured_traceback(type(exc), exc, [])
            return job_cell_error(type(exc).__name__, str(exc), stb)
        return None

    def _cell_done(
        self,
        job_id: int,
        snapshot: Snapshot,
        opts: CellOptions,
        incidental: dict[str, str] | None,
        started_in: str,
        result: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Main thread, once the cell job ended (succeeded, or failed after setting names): its
        names come into the namespace (unless `--no-return`), then the state of the random
        generators it drew from, so the next draws go on from the job's, and its figures'
        style (`plt.style.use` in a job styles the next cell's figures, as inline). A cell that
        changed directory (`os.chdir`, `%cd`) moves the kernel too, as inline, unless the kernel
        moved itself meanwhile (from `started_in`, where the job started) or the directory is
        not on this machine (a remote worker's). The cells it ran `--after` put their names
        in first, as their cells came first; the cells waiting on it follow its names."""
        for upstream in opts.after:
            shown = api.connection().widgets.get(upstream)
            if shown is not None:
                shown.complete()
        waiting = list(self._after.pop(job_id, ()))
        ns = self.shell.user_ns
        before = [later.bound(ns) for later in waiting]
        report = None
        if not opts.no_return:
            report = merge(ns, snapshot, result, opts.return_names, incidental).to_json()
            for later, was in zip(waiting, before, strict=True):
                later.follow(ns, was, report["set"])
        rng.restore(result.get("rng"))
        figures.restore(result.get("figures"))
        moved_to = result.get("cwd")
        here = os.getcwd() == started_in
        if moved_to and moved_to != started_in and here and os.path.isdir(moved_to):
            os.chdir(moved_to)
        return report

    def _end_as_inline(self, widget: JobWidget) -> None:
        """A `--wait` cell ends as it would have inline: failed with the job's error (the
        reply is an error, so Run All stops there), or with the value of its last line as the
        cell's result (`Out[n]`, `_`)."""
        record = widget.record
        if record.status is Status.FAILED:
            error = next(o for o in widget.outputs if o.get("output_type") == "error")
            stb = error.get("traceback") or []
            raise job_cell_error(error.get("ename", "Error"), error.get("evalue", ""), stb)
        if record.status is not Status.SUCCEEDED:
            return
        try:
            result = widget.job.result()
        except Exception:  # already said in the widget (a class this kernel cannot import)
            result = {}
        if "last" in result:
            self.shell.displayhook(result["last"])
            return
        shown = [o for o in widget.outputs if o.get("output_type") == "execute_result"]
        if shown:  # a value that cannot be sent back: its rendering in the worker
            self.shell.displayhook(Rendered(shown[-1].get("data", {}), shown[-1].get("metadata")))

    def _merge(
        self,
        snapshot: Snapshot,
        wanted: list[str] | None,
        incidental: dict[str, str] | None,
        result: dict[str, Any],
    ) -> dict[str, Any]:
        return merge(self.shell.user_ns, snapshot, result, wanted, incidental).to_json()

    # --- %job SUB ID -------------------------------------------------------------------------

    def _job_line(self, line: str) -> Any:
        words = _words("%job", line)
        if len(words) != 2 or words[0] not in SUBCOMMANDS or not words[1].isdigit():
            raise UsageError(f"usage: {LINE_USAGE} (got %job {line.strip()!r})")
        sub, job_id = words[0], int(words[1])
        with _user_errors():
            job = api.get(job_id)
            if sub == "show":
                display(details(job.record), raw=True)
            elif sub == "logs":
                print(job.logs(), end="")
            elif sub == "cancel":
                job.cancel()
                print(f"job {job_id}: {wording.status_word(job.refresh())}")
            elif sub == "retry":
                self._follow(job.retry())
            elif sub == "release":
                print(f"job {job_id}: {wording.status_word(api.release(job_id).record)}")
            elif sub == "result":
                return job.result()
            else:
                self._follow(job)
        return None

    def _follow(self, job: RemoteJob) -> None:
        """Show `job`'s widget; a cell job's names come into this kernel once it has succeeded.

        This kernel may know nothing of the submit (it was restarted since, or is another
        notebook's), so no name is taken for the job's: only the names free here are set, and
        the widget says where the job's value of the others is, as for a `%%job` cell.
        """
        widget = widget_for(job)
        record = job.record
        if record.kind is Kind.CELL and not record.options.get("no_return"):
            snapshot = Snapshot.take(self.shell.user_ns, [], moment="attach")
            widget.bring_names(partial(self._merge, snapshot, record.options.get("return"), None))
        widget.show()


def _clear_frames(exc: BaseException) -> None:
    """Drop the locals of the finished frames an exception leaving `%%job` went through (and of
    those its cause and context went through), and a context it hides (`raise ... from None`).

    IPython keeps the last error (`sys.last_traceback`) until the next one: its frames would
    keep the cell's payload, its snapshot and its handle alive after the user deleted the
    variables they hold (inline, a failed cell's frame holds only the namespace). The error
    shows as before: a job's traceback is its own text, other frames keep their code and line.
    """
    todo: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        if error.__suppress_context__:  # never shown; the submit's error from its thread
            error.__context__ = None
        todo += [error.__cause__, error.__context__]


class JobCellError(Exception):
    """A `%%job` cell's error, raised in the kernel so that the cell fails as it would inline:
    the execute reply is an error named as the job's (`ValueError`), and IPython shows the
    job's traceback (`_render_traceback_` is IPython's hook for tracebacks from elsewhere)."""

    def __init__(self, evalue: str, traceback: list[str]) -> None:
        super().__init__(evalue)
        self.traceback = traceback

    def _render_traceback_(self) -> list[str]:
        return self.traceback


def job_cell_error(ename: str, evalue: str, traceback: list[str]) -> JobCellError:
    """A `JobCellError` whose class has the job's exception's name."""
    name = ename.rsplit(".", 1)[-1] or "Error"
    return type(name, (JobCellError,), {"__module__": __name__})(evalue, traceback)


class Rendered:
    """A value shown by its rendering in the worker: the cell's result when the value itself
    could not be sent back."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        self.data, self.metadata = data, metadata or {}

    def _repr_mimebundle_(self, **_: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        text = self.data.get("text/plain", "")
        return "".join(text) if isinstance(text, list) else str(text)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are UsageErrors that say what is wrong (argparse's own
    `exit_on_error=False` still exits, after printing the reason, on an unknown argument)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _words(magic: str, line: str) -> list[str]:
    """A magic's line split as a shell would; unbalanced quotes are a UsageError."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{magic}: {exc} in {line.strip()!r}") from None


#: Errors the user fixes themselves (PayloadError is an InvalidRequest): one line, no traceback.
_USER_ERRORS = (InvalidRequest, ServerUnavailable, JobNotFound, IllegalTransition, PayloadTooLarge)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except _USER_ERRORS as exc:
        raise UsageError(f"{type(exc).__name__}: {exc}") from None


def jobs_table(records: list[Any]) -> dict[str, str]:
    """text/html and text/plain tables of job records (what `%jobs` shows)."""
    if not records:
        return {"text/html": "<i>no jobs</i>", "text/plain": "no jobs"}
    head = ("id", "name", "status", "progress", "time", "owner")
    rows = [
        (
            str(r.id),
            r.name,
            wording.status_word(r),
            wording.progress_text(r),
            " · ".join(wording.timing_parts(r)),
            r.owner,
        )
        for r in records
    ]
    left = 'style="text-align:left"'
    body = "".join(
        f"<tr><td {left}>{html.escape(row[0])}</td><td {left}>{html.escape(row[1])}</td>"
        f'<td style="text-align:left;color:{render.COLOURS[r.status]}">{html.escape(row[2])}</td>'
        + "".join(f"<td {left}>{html.escape(c)}</td>" for c in row[3:])
        + "</tr>"
        for r, row in zip(records, rows, strict=True)
    )
    th = "".join(f"<th {left}>{h}</th>" for h in head)
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
    lines = [head, *rows]
    text = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )
    return {
        "text/html": f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>",
        "text/plain": text,
    }


def details(record: Any) -> dict[str, str]:
    """One job's record as an HTML table and text (what `%job show` shows)."""
    data = record.to_json()
    text = "\n".join(f"{k}: {v}" for k, v in data.items())
    rows = "".join(
        f'<tr><th style="text-align:left">{html.escape(k)}</th>'
        f'<td style="text-align:left"><pre style="margin:0">{html.escape(str(v))}</pre></td></tr>'
        for k, v in data.items()
    )
    return {"text/html": f"<table>{rows}</table>", "text/plain": text}


JobMagics.job.__doc__ = f"{JobMagics.job.__doc__}\n{_cell_options.__doc__}"


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext jupyter_jobs`: register `%%job`, `%job` and `%jobs`."""
    ipython.register_magics(JobMagics)
