"""The global random number generators' state, carried between the kernel and a cell job.

A seeded notebook must draw the same numbers whether a cell runs inline or as a `%%job`, and go
on from where the job left off: the kernel sends the state of `random`, `numpy.random` and
`torch` (its CPU generator) with the cell, the worker sets it before the cell runs and sends the
state back with the cell's names, and the kernel sets it again.

Only generators of modules already imported are read or set: checking must not import numpy or
torch (seconds of import for a cell that never draws). The worker is the exception: it imports a
module whose state the kernel sent, because the cell may use it without importing it again.
Generators the code creates itself (`numpy.random.default_rng(0)`) are values, and travel as such.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def _numpy_state(random: Any) -> tuple[Any, ...]:
    name, keys, position, has_gauss, gauss = random.get_state(legacy=True)
    return (name, keys.tolist(), int(position), int(has_gauss), float(gauss))


def _torch_state(torch: Any) -> bytes:
    return bytes(torch.get_rng_state().tolist())


def _set_torch_state(torch: Any, state: bytes) -> None:
    torch.set_rng_state(torch.tensor(list(state), dtype=torch.uint8))


#: Module name -> (read the global state, set it); the module is the first argument. States are
#: plain Python values, so that loading one imports nothing (numpy's keys are a list of ints,
#: torch's state bytes).
_GENERATORS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], None]]] = {
    "random": (lambda m: m.getstate(), lambda m, s: m.setstate(s)),
    "numpy.random": (_numpy_state, lambda m, s: m.set_state(s)),
    "torch": (_torch_state, _set_torch_state),
}


def capture() -> dict[str, Any]:
    """The global generators' states, of the modules this process has imported."""
    return {
        name: read(sys.modules[name])
        for name, (read, _) in _GENERATORS.items()
        if name in sys.modules
    }


def restore(states: dict[str, Any] | None, *, import_missing: bool = False) -> list[str]:
    """Set the generators' states from `capture()`'s dict; returns the module names set.

    A module not imported here is skipped, unless `import_missing` (the worker, which must
    draw as the kernel would); one that cannot be imported, or an unknown name, is skipped.
    """
    done = []
    for name, state in (states or {}).items():
        if name not in _GENERATORS:
            continue
        module = sys.modules.get(name)
        if module is None and import_missing:
            try:
                module = importlib.import_module(name)
            except Exception:
                continue  # the cell cannot use it either: it fails there, with its own error
        if module is not None:
            _GENERATORS[name][1](module, state)
            done.append(name)
    return done
