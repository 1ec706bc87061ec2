"""NumPy views of a variable that travels too go as views of it, not as copies.

Pickle sends every array by value, so `window = base[1:4]` arrives as an array of its own: in
the job (or back in the notebook) `window.base is base` is False and a write through one no
longer shows through the other, which is not what the same cell does inline. When a view and the
array that owns its memory travel in one pickle, the view goes as (owner, offset, shape, strides)
and is rebuilt on the owner's buffer, so both are one memory again. The owner goes along only if
it travels anyway or is no bigger than its views together (a reshape, a transpose): a small
slice of a big array is not worth the big array, and goes as a copy, as before.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

View = tuple[Any, int, tuple[int, ...], tuple[int, ...], Any, bool]


def find(values: Iterable[Any]) -> dict[int, View]:
    """The views among `values` that can travel as views: `id(view) -> rebuild's arguments`."""
    np = sys.modules.get("numpy")
    if np is None:
        return {}
    arrays = [v for v in values if type(v) is np.ndarray]
    top = {id(a) for a in arrays}
    groups: dict[int, tuple[Any, list[Any]]] = {}
    for array in arrays:
        owner = _owner(array, np)
        if owner is not None:
            groups.setdefault(id(owner), (owner, []))[1].append(array)
    found: dict[int, View] = {}
    for owner, views in groups.values():
        shared = id(owner) in top or len(views) > 1
        small = owner.nbytes <= sum(v.nbytes for v in views)
        if not (shared and (id(owner) in top or small)):
            continue
        start = owner.__array_interface__["data"][0]
        for view in views:
            offset = view.__array_interface__["data"][0] - start
            found[id(view)] = (
                owner, offset, view.shape, view.strides, view.dtype, bool(view.flags.writeable)
            )  # fmt: skip
    return found


def _owner(array: Any, np: Any) -> Any:
    """The contiguous plain array `array` views (None if it owns its data or views another kind
    of buffer). An array over another kind of buffer (a file mapped by buffers.py,
    `np.frombuffer`) counts as the owner of its views, as NumPy's `base` says."""
    base = array.base
    if type(base) is not np.ndarray or isinstance(base.base, np.ndarray):
        return None
    if not (base.flags.c_contiguous or base.flags.f_contiguous):
        return None
    return base


def rebuild(
    owner: Any, offset: int, shape: tuple[int, ...], strides: tuple[int, ...], dtype: Any,
    writeable: bool,
) -> Any:  # fmt: skip
    """The view again, on `owner`'s memory (unpickling calls this)."""
    import numpy as np

    view = np.ndarray(shape, dtype, buffer=owner, offset=offset, strides=strides)
    if not writeable:
        view.flags.writeable = False
    return view
