"""A job's change to an object, made to the notebook's own object.

Inline, `items.append(4)` or `x2[0, 0] = 99` changes the one object every name, view and
container holding it sees. A job changes a copy, which comes back as a new object: binding the
name to it would leave `same_items`, `sub = x2[:2, :2]` and `{"values": items}` with the old
one. So when the job mutated an object it was sent (the worker says which: `mutated`), the new
state is loaded into the notebook's object, the way unpickling fills a fresh one: lists, dicts,
sets, deques and bytearrays by their contents, NumPy arrays by their data (same shape and
dtype), other objects by their pickled state (`__setstate__` or `__dict__`, which covers
pandas and scikit-learn objects and plain classes).
"""

from __future__ import annotations

import collections
import copyreg
import sys
import types
from collections.abc import Callable
from typing import Any

_NEVER = (type, types.FunctionType, types.ModuleType, types.MethodType)


def update(old: Any, new: Any, swap: Callable[[Any], Any]) -> bool:
    """Make `old` hold what `new` holds; False (nothing changed) when that cannot be done.

    `swap` maps an object inside `new` to the notebook's object it stands for (another name the
    job mutated), so that containers keep holding the notebook's objects."""
    kind = type(old)
    if kind is not type(new) or isinstance(old, _NEVER):
        return False
    if isinstance(old, (list, bytearray)):
        old[:] = new if kind is bytearray else [swap(item) for item in new]
        return True
    if isinstance(old, dict):
        if isinstance(old, collections.defaultdict):
            old.default_factory = new.default_factory
        old.clear()
        old.update((key, swap(value)) for key, value in new.items())
        return True
    if isinstance(old, set):
        old.clear()
        old.update(new)
        return True
    if isinstance(old, collections.deque):
        if old.maxlen != new.maxlen:
            return False
        old.clear()
        old.extend(map(swap, new))
        return True
    np = sys.modules.get("numpy")
    if np is not None and isinstance(old, np.ndarray):
        if kind is not np.ndarray or old.shape != new.shape or old.dtype != new.dtype:
            return False
        if not old.flags.writeable:
            return False
        np.copyto(old, new)
        return True
    return _set_state(old, new, swap)


def _set_state(old: Any, new: Any, swap: Callable[[Any], Any]) -> bool:
    """Load `new`'s pickled state into `old`, as pickle's BUILD would into a fresh object."""
    try:
        reduced = new.__reduce_ex__(4)
    except Exception:
        return False
    if not isinstance(reduced, tuple) or reduced[0] is not copyreg.__newobj__:
        return False  # rebuilt by its own constructor (C state): no state to load
    state = reduced[2] if len(reduced) > 2 else None
    if any(part is not None for part in reduced[3:]) or state is None:
        return False
    if hasattr(type(old), "__setstate__"):  # its own way to load a state (pandas)
        old.__setstate__(state)
        return True
    slots: dict[str, Any] = {}
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
        slots = slots or {}
    if state is not None and not hasattr(old, "__dict__"):
        return False
    if state is not None:
        old.__dict__.clear()
        old.__dict__.update((key, swap(value)) for key, value in state.items())
    for key, value in slots.items():
        setattr(old, key, swap(value))
    return True
