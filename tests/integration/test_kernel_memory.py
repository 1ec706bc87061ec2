"""A cell job's results live in the notebook's namespace only: `del` frees them, as inline.

Real kernels against a real `jupyter server`. The kernel's RSS is read inside the kernel
(psutil, after `gc.collect()`). The cells make NumPy arrays of SIZE, above the largest size
glibc's malloc may serve from its heap (its mmap threshold grows with the blocks freed, up to
32 MiB): each array, and each buffer its bytes pass through, is a mapping of its own, given back
to the system when freed, so the RSS says whether anything still holds one.
"""

from __future__ import annotations

from typing import Any

from test_widget import kernel  # noqa: F401  (the fixture: a real kernel, its widgets' state)

MIB = 2**20
SIZE = 40 * MIB
#: The goal: after `del`, the kernel is back within this of where it was.
SLACK = 20 * MIB
CELLS = 20
SETUP = """\
import gc, psutil, numpy as np
from IPython.display import display
import jupyter_jobs.kernel as jj

def _rss():
    gc.collect()
    return psutil.Process().memory_info().rss
"""


def make(value: float, name: str = "b") -> str:
    return f"{name} = np.full({SIZE // 8}, {float(value)})"


def printed(k: Any, code: str) -> str:
    """What the cell `code` printed."""
    msgs = k.execute(code)
    return "".join(m["text"] for m in k.mine(msgs, "stream")).strip()


def rss(k: Any) -> int:
    return int(printed(k, "print(_rss())"))


def warmed_up(k: Any) -> int:
    """The baseline: numpy, the job machinery and a worker already used once, as in any
    notebook after its first cells."""
    k.execute(SETUP)
    k.execute(make(0))
    k.execute("%%job --wait\n" + make(0))
    k.execute("del b")
    return rss(k)


def mb(values: list[int]) -> str:
    return ", ".join(f"{v / MIB:.0f}" for v in values)


def test_twenty_wait_cells_results_are_freed_by_del(kernel):  # noqa: F811
    base = warmed_up(kernel)
    above = []
    for i in range(1, CELLS + 1):
        kernel.execute("%%job --wait\n" + make(i))
        kernel.execute(f"assert b[0] == {i}\ndel b")
        above.append(rss(kernel) - base)
    assert max(above) < SLACK, f"kernel RSS above the baseline after each `del b`, MB: {mb(above)}"


def test_sent_and_rebound_names_background_cells_attach_and_failed_cells_keep_nothing(
    kernel,  # noqa: F811
):
    """The payload and the submit's snapshot of a name the cell reads or rebinds, a background
    cell and its `--out` handle (whose `result()` still answers, fetched again), `%job attach`
    and a failed cell's names."""
    base = warmed_up(kernel)

    kernel.execute(make(1, "a"))
    kernel.execute("%%job --wait\nc = a + 1")
    kernel.execute("assert c[0] == 2\ndel a, c")
    assert rss(kernel) - base < SLACK, "the variable sent to the job is kept"

    kernel.execute("%%job --wait\n" + make(1))
    kernel.execute("%%job --wait\n" + make(2))  # submitted while `b` held the first array
    assert printed(kernel, "print(b[0])") == "2.0"
    assert rss(kernel) - base < SIZE + SLACK, "the array `b` was bound to at submit is kept"

    kernel.execute("%%job --out job\n" + make(3))  # in the background
    kernel.execute("job.wait();")  # on the main thread: the names are there after it
    job_id = printed(kernel, "assert b[0] == 3\ndel b\nprint(job.id)")
    assert rss(kernel) - base < SLACK, "the handle bound by --out keeps the cell's result"
    assert printed(kernel, "print(job.result()['values']['b'][0])") == "3.0"
    kernel.execute("del job")
    assert rss(kernel) - base < SLACK

    kernel.execute(f"%job attach {job_id}")
    kernel.execute("assert b[0] == 3\ndel b")
    assert rss(kernel) - base < SLACK, "an attach keeps what it brought"

    failing = "%%job --wait\n" + make(4) + "\nraise ValueError('after b')"
    kernel.execute(failing, reply="error")
    kernel.execute("assert b[0] == 4\ndel b")
    assert rss(kernel) - base < SLACK, "a failed cell keeps what it set before its error"


def test_a_background_cell_s_names_set_between_cells_are_freed_by_del(kernel):  # noqa: F811
    base = warmed_up(kernel)
    kernel.execute("%%job\n" + make(5))
    kernel.pump_until(lambda: printed(kernel, "print('b' in globals())") == "True", "b set")
    kernel.execute("assert b[0] == 5\ndel b")
    assert rss(kernel) - base < SLACK


def test_a_displayed_function_job_s_result_goes_with_its_handle(kernel):  # noqa: F811
    """The widget of a handle the user displayed does not keep the handle's result alive once
    the user lets go of the handle (the widget lets go of it when the job has finished)."""
    base = warmed_up(kernel)
    kernel.execute(f"job = jj.submit(np.full, {SIZE // 8}, 6.0)\ndisplay(job)")
    assert printed(kernel, "print(job.result()[0])") == "6.0"
    kernel.execute("del job")
    kernel.pump_until(lambda: rss(kernel) - base < SLACK, "the result freed with its handle")


def test_a_wait_cell_s_last_value_stays_in_the_output_history_as_inline(kernel):  # noqa: F811
    """`Out[n]` and `_` keep a cell's value: a `--wait` cell's as an inline cell's, no more."""
    base = warmed_up(kernel)
    kernel.execute(f"np.full({SIZE // 8}, 7.0)")
    inline = rss(kernel) - base
    kernel.execute(f"%%job --wait\nnp.full({SIZE // 8}, 8.0)")
    job = rss(kernel) - base - inline
    assert printed(kernel, "print(_[0], Out[len(Out) and max(Out)][0])") == "8.0 8.0"
    assert inline > SIZE - SLACK, "inline, the output history keeps the value"
    assert abs(job - inline) < SLACK, f"inline keeps {inline / MIB:.0f} MB, the job {job / MIB:.0f}"
