"""`%%job` cells with big variables, in a real kernel against a real `jupyter server`.

Big NumPy arrays travel beside the pickle and through files (buffers.py, bodies.py), and the
worker tells what a cell changed from hashes (changes.py): these check that the notebook sees
what it saw before, changes in place included, and that errors still name the variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_widget import Kernel

from servers import TEST_CONFIG

#: 16 MB arrays: far over every threshold (arrays beside at 64 KiB, files at 1 MiB).
SIZE = 2_000_000


def start_kernel(server: Any, tmp_path: Path) -> Kernel:
    """A kernel as the server would launch it: it inherits JUPYTER_JOBS_URL and the token."""
    env = dict(server.env, JUPYTER_JOBS_URL=server.url, JUPYTER_JOBS_TOKEN=server.token)
    work = tmp_path / "notebook-dir"
    work.mkdir()
    kernel = Kernel(env, work)
    kernel.execute("%load_ext jupyter_jobs.kernel\nimport numpy as np")
    return kernel


@pytest.fixture
def kernel(jupyter_server: Any, tmp_path: Path) -> Iterator[Kernel]:
    k = start_kernel(jupyter_server, tmp_path)
    yield k
    k.close()


def printed(kernel: Kernel, code: str) -> str:
    return kernel.output_text(kernel.execute(code))


def test_changes_in_place_come_back_into_the_notebooks_own_objects(kernel):
    kernel.execute(
        f"big = np.zeros({SIZE})\nview = big[:5]\nitems = [1]\nsame_items = items\n"
        f"untouched = np.ones({SIZE})\nframe = __import__('pandas').DataFrame({{'v': big}})"
    )
    kernel.execute(
        "%%job --wait --out job\nbig[0] = 7\nitems.append(2)\ndoubled = untouched * 2\n"
        "total = float(frame['v'].sum())"
    )
    # the array and the list changed in the job are the notebook's own, changed: the view of
    # the array and the other name of the list see it; untouched ones are not sent back
    assert printed(kernel, "print(view[0], items is same_items, same_items)") == "7.0 True [1, 2]\n"
    assert printed(kernel, "print(float(doubled.sum()), total, doubled.flags.owndata)") == (
        f"{2.0 * SIZE} 0.0 True\n"
    )
    assert printed(kernel, "print(sorted(job.result()['values']))") == (
        "['big', 'doubled', 'items', 'total']\n"
    )


def test_a_variable_that_cannot_be_sent_is_named_and_a_big_one_that_can_is_not(kernel):
    kernel.execute(f"big = np.zeros({SIZE})\nnumbers = (i for i in range(3))")
    kernel.execute("%%job --wait\ntotal = big.sum() + next(numbers)", reply="error")
    assert kernel.reply["ename"] == "UsageError"
    message = kernel.reply["evalue"]
    assert "variable 'numbers' (generator) cannot be sent to the job" in message
    assert "'big'" not in message


def test_a_payload_over_the_servers_limit_is_refused_before_it_is_sent(
    jupyter_server_factory: Any, tmp_path: Path
):
    config = {"JobsApp": {**TEST_CONFIG["JobsApp"], "max_payload_size": 2**20}}
    kernel = start_kernel(jupyter_server_factory(config=config), tmp_path)
    try:
        kernel.execute(f"big = np.zeros({SIZE})")
        kernel.execute("%%job --wait\ntotal = big.sum()", reply="error")
        message = kernel.reply["evalue"]
        assert kernel.reply["ename"] == "UsageError" and "PayloadTooLarge" in message
        assert "'total = big.sum()'" in message and f"limit of {2**20} bytes" in message
        assert printed(kernel, "print(big.shape)") == f"({SIZE},)\n"  # nothing changed here
    finally:
        kernel.close()
