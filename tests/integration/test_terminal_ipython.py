"""`%%job` and `jj.submit` in a terminal IPython (`ipython`, no kernel): the server is found as
plain Python finds it, and the job's state shows as text lines instead of a widget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from servers import RunningServer

#: Typed at a terminal IPython's prompt, line by line; two blank lines end the `%%job` cell.
SESSION = """\
%load_ext jupyter_jobs
import jupyter_jobs as jj
x = 20
%%job --wait --name doubled
print("in the job", x)
y = x * 2


print("y is", y)
print("submitted:", jj.submit(pow, 2, 10).result())
"""


def run_ipython(server: RunningServer, session: str, cwd: Path) -> subprocess.CompletedProcess:
    """A real `ipython` reading `session` from its standard input (IPython's plain prompt), with
    the server's runtime dir, so that it finds the server through its runtime file."""
    return subprocess.run(
        [sys.executable, "-m", "IPython", "--simple-prompt", "--no-banner", "--colors=NoColor"],
        input=session,
        env=server.env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_job_cells_and_submit_work_in_a_terminal_ipython(
    jupyter_server: RunningServer, tmp_path: Path
) -> None:
    done = run_ipython(jupyter_server, SESSION, tmp_path)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert "doubled succeeded #1" in output, output  # the job's state, as a text line
    assert "y is 40" in output, output  # the name came back after --wait
    assert "submitted: 1024" in output, output
    assert "in the job 20" in output, output


#: A job cell without --wait ends while the next cell (one line: each line is a cell here) runs:
#: as inline, its name must not appear in the middle of that cell, only when a later cell starts.
BETWEEN_CELLS = """\
%load_ext jupyter_jobs
import time, pathlib
gate = pathlib.Path("gate")
%%job --name gated
while not gate.exists(): time.sleep(0.02)
z = 7


watch = lambda: any([time.sleep(0.05) or "z" in globals() for _ in range(100)])
gate.touch(); print("during the cell:", watch())
import jupyter_jobs as jj
jj.get(1).wait(30); print("after wait:", z)
"""


def test_a_job_s_names_arrive_between_cells_not_during_one(
    jupyter_server: RunningServer, tmp_path: Path
) -> None:
    done = run_ipython(jupyter_server, BETWEEN_CELLS, tmp_path)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert "during the cell: False" in output, output
    assert "after wait: 7" in output, output
