"""The random generators' states: read and set only for modules imported, never importing one."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import dill
import numpy as np
import pytest

from jupyter_jobs import rng


@pytest.fixture(autouse=True)
def _keep_this_process_states() -> Iterator[None]:
    kept = rng.capture()
    yield
    rng.restore(kept)


def draws() -> tuple[float, float]:
    return random.random(), float(np.random.rand())


def test_restoring_a_capture_repeats_the_draws_that_followed_it():
    random.seed(1)
    np.random.seed(0)
    state = rng.capture()
    first = draws()
    draws()
    assert rng.restore(state) == ["random", "numpy.random"]
    assert draws() == first


def test_the_kernel_side_neither_imports_nor_sets_a_module_it_has_not_imported():
    script = textwrap.dedent(
        """
        import sys
        import dill
        from jupyter_jobs import rng
        print(sorted(rng.capture()), "numpy" in sys.modules)
        sent = dill.loads(sys.stdin.buffer.read())
        print(rng.restore(sent), "numpy" in sys.modules)
        print(rng.restore({"no.such": 1}, import_missing=True))
        """
    )
    sent = dill.dumps(rng.capture())  # numpy's state included: this process imported it
    lines = run_python(script, stdin=sent).splitlines()
    assert lines == ["['random'] False", "['random'] False", "[]"]


def test_the_worker_side_imports_a_module_whose_state_it_was_sent():
    np.random.seed(5)
    expected = float(np.random.rand())
    np.random.seed(5)
    state = rng.capture()["numpy.random"]
    script = textwrap.dedent(
        """
        import sys
        import dill
        from jupyter_jobs import rng
        print(rng.restore(dill.loads(sys.stdin.buffer.read()), import_missing=True))
        import numpy
        print(repr(float(numpy.random.rand())))
        """
    )
    out = run_python(script, stdin=dill.dumps({"numpy.random": state})).splitlines()
    assert out == ["['numpy.random']", repr(expected)]


def run_python(code: str, stdin: bytes = b"") -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], input=stdin, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


class _Tensor(list):
    """What `torch.get_rng_state()` returns, as far as `rng` uses it (`tolist()`)."""

    def tolist(self) -> list[int]:
        return list(self)


def test_torch_state_travels_as_bytes(monkeypatch):
    """A stand-in for torch (not installed here): its generator state is a uint8 tensor."""
    calls = []
    torch = type(sys)("torch")
    torch.uint8 = "uint8"
    torch.get_rng_state = lambda: _Tensor([1, 2, 255])
    torch.tensor = lambda values, dtype: (dtype, values)
    torch.set_rng_state = calls.append
    monkeypatch.setitem(sys.modules, "torch", torch)
    state = rng.capture()["torch"]
    assert state == bytes([1, 2, 255])
    assert rng.restore({"torch": state}) == ["torch"]
    assert calls == [("uint8", [1, 2, 255])]
