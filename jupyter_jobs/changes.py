"""Which of the variables a cell job was sent its cell changed, told without copying them.

The worker sends back the shipped variables the cell changed (`changed`, and `mutated` for
those changed in place), and the kernel applies exactly those: `items.append(4)` or
`x[0] = 99` on a shipped variable must come back, an untouched 100 MiB array must not. A
variable counts as changed when its pickle after the cell differs from its pickle before: object
equality would miss changes (NaN, `__eq__` of arrays), identity would miss every change in
place. Comparing whole pickles cost two more pickles of every shipped variable, big arrays
copied each time. Here a variable is pickled with its big arrays beside it (buffers.py), which
copies nothing big, and each array is compared with what it was as it arrived
(`buffers.Received.origins`): with the file it was mapped from, which still holds it, or with its
hash taken on arrival. So the bytes sent are hashed at most once, and a mapped array that was
only read is compared, not hashed. A value that cannot change in place (a number, a string, a
tuple of them) and is still the object it was is not pickled at all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from . import buffers
from . import payload as payloads

#: Types whose values never change in place (exact types: a subclass may carry state).
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None), range, type(...)})
#: How deep and wide a tuple or frozenset is looked into to tell that it cannot change.
_DEPTH, _WIDTH = 3, 1000


@dataclass(frozen=True)
class Sent:
    """What a variable was when the cell got it: the digest of its pickle (of the framed
    pickle's head and pickle, which say each array's dtype and shape; None if it cannot be
    pickled), and what each array beside it was."""

    pickled: bytes | None
    arrays: tuple[buffers.Origin, ...] = ()


def take(
    value: Any,
    by_reference: Collection[type] = (),
    origins: Mapping[int, buffers.Origin] | None = None,
) -> Sent:
    """`value` as it is now; its big arrays by their `origins` (how they arrived), hashed
    where they have none."""
    try:
        framed = payloads.dumps_framed(value, by_reference)
    except Exception:
        return Sent(None)  # compared only: one that cannot be pickled now or after is the same
    known = origins or {}
    arrays = tuple(
        known.get(id(arr)) or buffers.Digest(buffers.digest([buffers.raw(arr)]))
        for arr in _arrays(framed)
    )
    return Sent(buffers.digest(buffers.parts(framed)[:2]), arrays)


def same(sent: Sent, value: Any, by_reference: Collection[type] = ()) -> bool:
    """Whether `value` pickles as it did when `sent` was taken."""
    try:
        framed = payloads.dumps_framed(value, by_reference)
    except Exception:
        return sent.pickled is None
    arrays = _arrays(framed)
    return (
        len(arrays) == len(sent.arrays)
        and buffers.digest(buffers.parts(framed)[:2]) == sent.pickled
        and all(o.matches(arr) for o, arr in zip(sent.arrays, arrays, strict=True))
    )


def _arrays(framed: bytes | buffers.Framed) -> list[Any]:
    return framed.arrays if isinstance(framed, buffers.Framed) else []


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
        origins: Mapping[int, buffers.Origin] | None = None,
    ) -> None:
        """`sent`: each variable's object before the cell runs (taken now: the cell may
        change them in place); `origins`: what the arrays received were as they arrived."""
        self.sent = dict(sent)
        self._classes = by_reference
        self._before: dict[str, Sent] = {
            name: take(value, by_reference, origins or {})
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
            self._before[name] = take(old, self._classes)
        return not same(self._before[name], value, self._classes)
