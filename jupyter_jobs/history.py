"""The kernel's output and input history that a cell reads: `_`, `__`, `Out[2]`, `_i2`, `In`.

Inline, `_ * 2` doubles the last result and `Out[2] + 1` reads cell 2's; a job cell must see
the same values, so the kernel sends the history names the cell reads with it, and the worker
puts them where IPython keeps them. Only what the cell reads travels (the whole `Out` dict can
hold every DataFrame the notebook showed), and only entries that can be pickled: an `Out` entry
that cannot is left out (`sendable`), and reading it fails in the job as a missing entry would.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: The last three results and inputs, which IPython shifts after each cell.
_SHIFTED = ("_", "__", "___", "_i", "_ii", "_iii")
#: `_7` (cell 7's result), `_i7` (its input).
_NUMBERED = re.compile(r"_i?\d+$")
#: The whole histories: `Out`/`_oh` (results by cell), `In`/`_ih` (inputs, a list).
_WHOLE = ("Out", "_oh", "In", "_ih")


def is_history_name(name: str) -> bool:
    """Whether `name` is one of IPython's history names."""
    return name in _SHIFTED or name in _WHOLE or bool(_NUMBERED.match(name))


def capture(names: Iterable[str], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The history values among `names` (the names a cell reads) in the kernel's namespace."""
    return {name: namespace[name] for name in names if is_history_name(name) and name in namespace}


def sendable(found: Mapping[str, Any], can_send: Callable[[Any], bool]) -> dict[str, Any]:
    """`found` without what `can_send` refuses: whole values, or single entries of `Out`."""
    kept: dict[str, Any] = {}
    for name, value in found.items():
        if isinstance(value, dict):  # Out / _oh: the entries that can travel
            kept[name] = {k: v for k, v in value.items() if can_send(v)}
        elif can_send(value):
            kept[name] = value
    return kept


def restore(shell: Any, history: Mapping[str, Any] | None) -> None:
    """Put the kernel's history values into the worker's IPython `shell` where IPython keeps
    them: `Out` and `In` are the history manager's own containers, filled in place so that
    `Out is _oh` stays true; `_`, `__`, `___` are also the display hook's, which shifts them."""
    ns = shell.user_ns
    for name, value in (history or {}).items():
        if name in ("Out", "_oh"):
            ns["_oh"].update(value)
        elif name in ("In", "_ih"):
            ns["_ih"][:] = value
        else:
            ns[name] = value
            if name in ("_", "__", "___"):
                setattr(shell.displayhook, name, value)
