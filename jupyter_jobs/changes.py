"""Which of the variables a cell job was sent its cell changed, told without copying them.

The worker sends back the shipped variables the cell changed (`changed`, and `mutated` for
those changed in place), and the kernel applies exactly those: `items.append(4)` or
`x[0] = 99` on a shipped variable must come back, an untouched 100 MiB array must not. A
variable counts as changed when its pickle after the cell differs from its pickle before: object
equality would miss changes (NaN, `__eq__` of arrays), identity would miss every change in
place. Comparing whole pickles cost two more pickles of every shipped variable, big arrays
copied each time. A fingerprint is a hash of the pickle with its big arrays beside it
(buffers.py), each array hashed where it lies in memory, so nothing big is copied; an array's
hash before the cell is the one taken as it arrived (`buffers.Received.digests`), so the sent
bytes are hashed once. A value that cannot change in place (a number, a string, a tuple of
them) and is still the object it was is not pickled at all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from . import buffers
from . import payload as payloads

#: Types whose values never change in place (exact types: a subclass may carry state).
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None), range, type(...)})
#: How deep and wide a tuple or frozenset is looked into to tell that it cannot change.
_DEPTH, _WIDTH = 3, 1000


def fingerprint(
    value: Any, by_reference: Collection[type] = (), known: Mapping[int, bytes] | None = None
) -> bytes | None:
    """A hash of `value`'s pickle, its big arrays hashed in place (`known`: digests of arrays by
    id, taken as they arrived); None when it cannot be pickled (compared only: a value that
    cannot be pickled before and after counts as unchanged)."""
    try:
        framed = payloads.dumps_framed(value, by_reference)
    except Exception:
        return None
    if not isinstance(framed, buffers.Framed):
        return buffers.digest([framed])
    head, pickled = framed.parts[:2]
    known = known or {}
    digests = [
        known.get(id(arr)) or buffers.digest([part])
        for arr, part in zip(framed.arrays, framed.parts[2:], strict=True)
    ]
    return buffers.digest([head, pickled, *digests])


def unchangeable(value: Any, depth: int = 0) -> bool:
    """Whether `value` cannot change in place: an atom, or a small tuple or frozenset of them."""
    kind = type(value)
    if kind in _ATOMS:
        return True
    if kind in (tuple, frozenset) and depth < _DEPTH and len(value) <= _WIDTH:
        return all(unchangeable(item, depth + 1) for item in value)
    return False


class Fingerprints:
    """The shipped variables as the cell got them, to tell which ones it changed."""

    def __init__(
        self,
        sent: Mapping[str, Any],
        by_reference: Collection[type],
        known: Mapping[int, bytes] | None = None,
    ) -> None:
        """`sent`: each variable's object before the cell runs (taken now: the cell may
        change them in place); `known`: the digests of the arrays as they arrived."""
        self.sent = dict(sent)
        self._classes = by_reference
        self._before: dict[str, bytes | None] = {
            name: fingerprint(value, by_reference, known)
            for name, value in self.sent.items()
            if not unchangeable(value)
        }

    def __contains__(self, name: object) -> bool:
        return name in self.sent

    def changed(self, name: str, value: Any) -> bool:
        """Whether `value`, what `name` holds now, differs from what it was sent."""
        old = self.sent[name]
        if name not in self._before:
            if value is old:
                return False  # the same object, which cannot have changed
            self._before[name] = fingerprint(old, self._classes)
        return fingerprint(value, self._classes) != self._before[name]
