"""A job's state as HTML and text: the widget's header, and the static view a saved notebook keeps.

Pure functions of a record (plus outputs, log lines and the namespace report), so the live widget
and the kernel-free rendering cannot drift apart. The words themselves (status, durations,
progress) come from `jupyter_jobs.wording`, which the CLI and `%jobs` use too. Every piece of
job-provided text (names, messages, logs, tracebacks) is escaped here, in one place.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..models import Job as JobRecord
from ..models import Status
from ..wording import progress_text, status_word, timing

COLOURS = {
    Status.PENDING: "#8a8a8a",
    Status.QUEUED: "#6d6d6d",
    Status.RUNNING: "#1565c0",
    Status.SUCCEEDED: "#2e7d32",
    Status.FAILED: "#c62828",
    Status.CANCELLED: "#e65100",
}
#: ipywidgets' progress bar styles by status.
BAR_STYLES = {
    Status.RUNNING: "info",
    Status.SUCCEEDED: "success",
    Status.FAILED: "danger",
    Status.CANCELLED: "warning",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: A finished job's prints show their tail, as the log does while it runs: a loop that printed
#: 3,000 lines must not land whole in the cell (nor in the saved notebook). The full log stays
#: one click away (the widget's "Full log", `%job logs ID`).
STREAM_TAIL_LINES = 30
STREAM_TAIL_CHARS = 16 * 2**10


def strip_ansi(text: str) -> str:
    """Tracebacks from IPython carry colour codes; HTML and plain text want them gone."""
    return _ANSI.sub("", text)


def header_html(record: JobRecord, now: float | None = None) -> str:
    colour = COLOURS[record.status]
    return (
        f"<b>{html.escape(record.name)}</b> "
        f'<span style="color:{colour};font-weight:bold">&#9679; '
        f"{html.escape(status_word(record))}</span> "
        f'<span style="color:#757575">{html.escape(timing(record, now))}</span>'
    )


def log_html(lines: Sequence[str], max_height: str = "12em") -> str:
    text = html.escape(strip_ansi("\n".join(lines)))
    return (
        f'<pre style="margin:0;max-height:{max_height};overflow:auto;font-size:12px;'
        f'background:#f7f7f7;padding:4px">{text}</pre>'
    )


def set_line(report: dict[str, Any], name: Callable[[str], str] = str) -> str:
    """`Set: model, score (and 3 more: imports time, jupyter_jobs; loop variable i)`: the
    results first, then the names that are no results (imports, loop variables) summarised.
    `Set before the error:` for a failed cell's. `name` formats one name (`<code>` in HTML)."""
    label = "Set before the error" if report.get("before_error") else "Set"
    incidental: dict[str, str] = report.get("incidental") or {}
    results = [name(n) for n in report["set"] if n not in incidental]
    kinds: dict[str, list[str]] = {}
    for n in report["set"]:
        if n in incidental:
            kinds.setdefault(incidental[n], []).append(name(n))
    rest = "; ".join(
        f"{kind}{'s' if len(names) > 1 else ''} {', '.join(names)}" for kind, names in kinds.items()
    )
    if not rest:
        return f"{label}: " + ", ".join(results)
    if not results:
        return f"{label}: no results, only {rest}"
    more = len(report["set"]) - len(results)
    return f"{label}: {', '.join(results)} (and {more} more: {rest})"


def names_html(report: dict[str, Any] | None, job_id: int) -> str:
    """What the job put into the namespace, what it left alone and why, what it could not send."""
    if not report:
        return ""
    rows = []
    if report.get("set"):
        rows.append(set_line(report, lambda n: f"<code>{html.escape(n)}</code>"))
    for name, why in report.get("kept", {}).items():
        n = html.escape(name)
        rows.append(
            f"<code>{n}</code> {html.escape(why)}; kept yours; job value in "
            f"<code>jj.get({job_id}).result()['values']['{n}']</code>"
        )
    for name, why in report.get("unsent", {}).items():
        rows.append(f"<code>{html.escape(name)}</code> not sent back: {html.escape(why)}")
    for name, why in report.get("separated", {}).items():
        rows.append(f"<code>{html.escape(name)}</code> separated: {html.escape(why)}")
    if report.get("missing"):
        names = ", ".join(f"<code>{html.escape(n)}</code>" for n in report["missing"])
        rows.append(f"Not assigned by the cell: {names}")
    return "<br>".join(rows)


def names_text(report: dict[str, Any] | None, job_id: int) -> list[str]:
    if not report:
        return []
    lines = []
    if report.get("set"):
        lines.append(set_line(report))
    for name, why in report.get("kept", {}).items():
        lines.append(
            f"{name} {why}; kept yours; job value in jj.get({job_id}).result()['values']['{name}']"
        )
    lines += [f"{n} not sent back: {why}" for n, why in report.get("unsent", {}).items()]
    lines += [f"{n} separated: {why}" for n, why in report.get("separated", {}).items()]
    if report.get("missing"):
        lines.append("Not assigned by the cell: " + ", ".join(report["missing"]))
    return lines


def error_output(record: JobRecord) -> dict[str, Any] | None:
    """The job's error as an nbformat `error` output, so it renders like a cell's traceback."""
    err = record.error
    if err is None:
        return None
    trace = err.traceback.splitlines() if err.traceback else []
    return {"output_type": "error", "ename": err.type, "evalue": err.message, "traceback": trace}


def tail_streams(outputs: Sequence[dict[str, Any]], job_id: int) -> list[dict[str, Any]]:
    """The captured outputs with each long print cut to its last lines, after a note that says
    how many came before and where they are."""
    return [_tail_stream(o, job_id) if o.get("output_type") == "stream" else o for o in outputs]


def _tail_stream(output: dict[str, Any], job_id: int) -> dict[str, Any]:
    text = _text(output.get("text", ""))
    lines = text.splitlines(keepends=True)
    if len(lines) <= STREAM_TAIL_LINES and len(text) <= STREAM_TAIL_CHARS:
        return output
    kept = "".join(lines[-STREAM_TAIL_LINES:])[-STREAM_TAIL_CHARS:]
    hidden = text[: len(text) - len(kept)].count("\n")
    what = f"{hidden:,} earlier lines" if hidden else "the start of a long line"
    note = f'[... {what}: see "Full log" or %job logs {job_id}]\n'
    return {**output, "text": note + kept}


def output_html(output: dict[str, Any]) -> str:
    """One nbformat output as HTML for the static view (the richest safe type it has)."""
    kind = output.get("output_type")
    if kind == "stream":
        colour = "#c62828" if output.get("name") == "stderr" else "inherit"
        text = html.escape(strip_ansi(_text(output.get("text", ""))))
        return f'<pre style="margin:0;color:{colour}">{text}</pre>'
    if kind == "error":
        trace = "\n".join(output.get("traceback") or []) or (
            f"{output.get('ename')}: {output.get('evalue')}"
        )
        return f'<pre style="margin:0;color:#c62828">{html.escape(strip_ansi(trace))}</pre>'
    data = output.get("data", {})
    if "text/html" in data:
        return _text(data["text/html"])  # the job's own HTML, as trusted as its cell would be
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            b64 = _text(data[mime]).replace("\n", "")
            return f'<img src="data:{mime};base64,{b64}"/>'
    if "image/svg+xml" in data:
        return _text(data["image/svg+xml"])
    if "text/plain" in data:
        return f'<pre style="margin:0">{html.escape(_text(data["text/plain"]))}</pre>'
    return ""


def output_text(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return strip_ansi(_text(output.get("text", ""))).rstrip("\n")
    if kind == "error":
        return strip_ansi("\n".join(output.get("traceback") or [])) or (
            f"{output.get('ename')}: {output.get('evalue')}"
        )
    return _text(output.get("data", {}).get("text/plain", "")).rstrip("\n")


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def static_bundle(
    record: JobRecord,
    *,
    outputs: Sequence[dict[str, Any]] = (),
    log_lines: Sequence[str] = (),
    report: dict[str, Any] | None = None,
) -> dict[str, str]:
    """text/html + text/plain of the job's state: what a notebook shows with no kernel."""
    parts = [header_html(record)]
    if record.progress is not None:
        parts.append(html.escape(progress_text(record)))
    if names := names_html(report, record.id):
        parts.append(names)
    if log_lines:
        parts.append(
            f"<details><summary>Log (last {len(log_lines)} lines)</summary>"
            f"{log_html(log_lines)}</details>"
        )
    body = "".join(f"<div>{p}</div>" for p in parts)
    shown = "".join(f"<div>{output_html(o)}</div>" for o in outputs)
    if shown:
        body += f'<div style="margin-top:4px">{shown}</div>'
    text = [f"{record.name} {status_word(record)} {timing(record)}"]
    if record.progress is not None:
        text.append(progress_text(record))
    text += names_text(report, record.id)
    text += [t for t in (output_text(o) for o in outputs) if t]
    return {
        "text/html": f'<div class="jupyter-jobs-job">{body}</div>',
        "text/plain": "\n".join(text),
    }
