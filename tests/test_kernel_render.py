"""The widget's texts and the static view a saved notebook keeps: escaped, and telling the truth."""

from __future__ import annotations

from jupyter_jobs.kernel import render
from jupyter_jobs.models import Job, JobError, Kind, Progress, Status

EVIL = "<script>alert('x')</script>"


def record(**fields) -> Job:
    base = {"id": 7, "name": "train", "kind": Kind.CELL, "owner": "nb", "status": Status.RUNNING}
    return Job(**{**base, **fields})


def test_job_text_is_escaped_everywhere_it_goes_into_html():
    r = record(name=EVIL, progress=Progress(1, 2, EVIL))
    assert EVIL not in render.header_html(r)
    assert "&lt;script&gt;" in render.header_html(r)
    assert EVIL not in render.log_html([EVIL, "\x1b[31mred\x1b[0m"])
    assert "\x1b" not in render.log_html(["\x1b[31mred\x1b[0m"])
    report = {"set": [EVIL], "kept": {EVIL: EVIL}, "unsent": {EVIL: EVIL}}
    report["separated"] = {EVIL: EVIL}
    names = render.names_html(report, 7)
    assert EVIL not in names and names.count("&lt;script&gt;") == 8
    bundle = render.static_bundle(r, log_lines=[EVIL])
    assert EVIL not in bundle["text/html"]


def test_names_separated_from_a_changed_array_are_named_in_text_and_html():
    report = {"set": ["x2"], "separated": {"half": "still views 'x2' as it was before the job"}}
    assert "half separated: still views 'x2'" in render.names_text(report, 3)[1]
    assert "<code>half</code> separated" in render.names_html(report, 3)


def test_the_error_becomes_an_error_output_like_a_cells():
    err = JobError("ZeroDivisionError", "division by zero", "Traceback\n  line 1\nZeroDivision")
    output = render.error_output(record(status=Status.FAILED, error=err))
    assert output == {
        "output_type": "error",
        "ename": "ZeroDivisionError",
        "evalue": "division by zero",
        "traceback": ["Traceback", "  line 1", "ZeroDivision"],
    }
    assert render.error_output(record()) is None


def test_the_static_view_holds_final_status_names_and_outputs():
    r = record(status=Status.SUCCEEDED, started_at=1.0, finished_at=2.0)
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": ["hello ", "<world>\n"]},
        {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=\n"}, "metadata": {}},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}},
    ]
    bundle = render.static_bundle(r, outputs=outputs, report={"set": ["total"]})
    html, text = bundle["text/html"], bundle["text/plain"]
    assert "succeeded" in html and "succeeded" in text
    assert "hello &lt;world&gt;" in html
    assert '<img src="data:image/png;base64,iVBORw0KGgo="/>' in html
    assert "Set: <code>total</code>" in html
    assert text.splitlines()[1:] == ["Set: total", "hello <world>", "42"]


def test_outputs_render_as_html_by_their_richest_safe_type():
    stderr = {"output_type": "stream", "name": "stderr", "text": "warn"}
    assert "color:#c62828" in render.output_html(stderr)
    error = {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["\x1b[31mE: v"]}
    assert render.output_html(error).endswith(">E: v</pre>")
    table = {"output_type": "display_data", "data": {"text/html": "<table></table>"}}
    assert render.output_html(table) == "<table></table>"
    plain = {"output_type": "display_data", "data": {"text/plain": "<1>"}}
    assert "&lt;1&gt;" in render.output_html(plain)


def test_the_set_line_lists_results_and_summarises_imports_and_loop_variables():
    names = ["model", "time", "jupyter_jobs", "score", "i"]
    incidental = {"time": "import", "jupyter_jobs": "import", "i": "loop variable"}
    report = {"set": names, "incidental": incidental}
    assert render.names_text(report, 7) == [
        "Set: model, score (and 3 more: imports time, jupyter_jobs; loop variable i)"
    ]
    assert render.names_html(report, 7).startswith(
        "Set: <code>model</code>, <code>score</code> (and 3 more: imports <code>time</code>"
    )
    only = {"set": ["os"], "incidental": {"os": "import"}}
    assert render.names_text(only, 7) == ["Set: no results, only import os"]
    assert render.names_text({"set": ["a", "b"]}, 7) == ["Set: a, b"]


def test_a_long_print_shows_its_tail_after_a_note_on_where_the_rest_is():
    text = "".join(f"line {i}\n" for i in range(1, 3001))
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": text},
        {"output_type": "display_data", "data": {"text/plain": "kept"}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": "short\n"},
    ]
    cut = render.tail_streams(outputs, 12)
    lines = cut[0]["text"].splitlines()
    assert lines[0] == '[... 2,970 earlier lines: see "Full log" or %job logs 12]'
    assert lines[1:] == [f"line {i}" for i in range(2971, 3001)]
    assert cut[1:] == outputs[1:]
    wide = render.tail_streams([{"output_type": "stream", "text": "x" * 10**6}], 12)[0]["text"]
    assert len(wide) < render.STREAM_TAIL_CHARS + 100
    assert wide.startswith('[... the start of a long line: see "Full log" or %job logs 12]\n')
