"""Putting a cell job's names back into the notebook, without overwriting anything silently.

At submit time the magic takes a `Snapshot`: for each name the job may send back, the object the
name was bound to (or that it was unbound). When the job succeeds, `merge` sets a name only if it
still holds that same object: a name the user reassigned, deleted or created meanwhile keeps the
user's value, and the report says where the job's value is instead. Identity, not equality, is
the test, because "the user did something to this name since" is what must not be lost: ids
alone would not do, since a freed object's id is soon another object's.

The snapshot must not keep a variable alive that the user deleted (inline, `del` frees it): it
holds a weak reference to each object that allows one (an array, a DataFrame, an instance: dead
means the name holds something else now). Other objects (lists, dicts, numbers) it holds while
the job may still send its names; once a run ended without success, the snapshot waits for a
Retry that may never come, so it keeps only those that are small plain data (`release`). For the
others, a Retry cannot tell a reassignment from the job's value, and keeps the user's.

The report also says which names are not results (imports, loop variables), so the widget can
list what the user would call results and summarise the rest: all of them are set alike.
"""

from __future__ import annotations

import sys
import types
import weakref
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .. import notebook_main
from . import in_place

_UNBOUND = object()
#: What a snapshot's weak reference gives once its object is gone: the name was rebound since.
_GONE = object()
#: What a released snapshot holds of a big object that allows no weak reference.
_FORGOTTEN = object()
#: A released snapshot keeps an object that allows no weak reference only up to this size (its
#: own bytes and those of the plain values it contains).
KEEP_BYTES = 64 * 2**10
_PLAIN = (int, float, complex, bool, str, bytes, type(None))
_CONTAINERS = (tuple, list, set, frozenset, dict)


class _Weak(weakref.ref):
    """A snapshot's weak reference (its own type: a user's `weakref.ref` value is data)."""

    __slots__ = ()


@dataclass(eq=False)
class Snapshot:
    """The names a job may send back, each with its object at submit time (or `_UNBOUND`).

    `moment` names when it was taken, for the report: "submit" (the `%%job` cell), or "attach"
    (`%job attach`: no name is tracked, so every name bound then keeps the user's value).
    """

    held: dict[str, Any]  # by name: `_Weak`, the object itself, `_UNBOUND` or `_FORGOTTEN`
    present: frozenset[str]  # every name bound when taken (for names nobody predicted)
    moment: str = "submit"
    released: bool = False

    @classmethod
    def take(
        cls, ns: MutableMapping[str, Any], names: Iterable[str], moment: str = "submit"
    ) -> Snapshot:
        snapshot = cls({}, frozenset(ns), moment)
        for name in names:
            snapshot._hold(name, ns.get(name, _UNBOUND))
        return snapshot

    def __contains__(self, name: str) -> bool:
        return name in self.held

    def before(self, name: str) -> Any:
        """What `name` held when taken: the object, `_UNBOUND`, `_GONE` (its object was freed
        since, so the name holds something else) or `_FORGOTTEN` (see `release`)."""
        held = self.held.get(name, _UNBOUND)
        if type(held) is _Weak:
            obj = held()
            return _GONE if obj is None else obj
        return held

    def _hold(self, name: str, obj: Any) -> None:
        if obj is _UNBOUND or obj is _GONE or obj is _FORGOTTEN:
            self.held[name] = obj
            return
        try:
            self.held[name] = _Weak(obj)
        except TypeError:  # no weak reference to it (a list, a dict, a number)
            forget = self.released and not _small(obj)
            self.held[name] = _FORGOTTEN if forget else obj

    def release(self) -> None:
        """The run ended without success: keep for a Retry no object that allows no weak
        reference and is more than small plain data, so no variable the user deletes stays
        alive here (the names are tracked by weak references only, as far as they can be)."""
        self.released = True
        for name in list(self.held):
            self._hold(name, self.before(name))

    def bound(self, ns: Mapping[str, Any]) -> dict[str, Any]:
        """What this snapshot's names hold in `ns` now (for `follow`)."""
        return {n: ns.get(n, _UNBOUND) for n in self.held}

    def follow(
        self, ns: Mapping[str, Any], before: Mapping[str, Any], names: Iterable[str]
    ) -> None:
        """A cell job this one runs after (`--after`) just set `names` in `ns`; `before` is
        what they held until then (`bound`). Its names are no user's change: where this
        snapshot had the object it replaced, it takes the new one, so this job's own values
        for them are not "reassigned since submit" when they come back."""
        for name in names:
            if name in self.held and self.before(name) is before.get(name, _UNBOUND):
                self._hold(name, ns.get(name, _UNBOUND))


def _small(obj: Any) -> bool:
    """Whether `obj` is plain data (numbers, strings, bytes, and the built-in containers of
    them) of at most KEEP_BYTES: then all it keeps alive is itself."""
    np = sys.modules.get("numpy")
    scalars = (np.number, np.bool_) if np is not None else ()
    room, todo = KEEP_BYTES, [obj]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind not in _PLAIN and kind not in _CONTAINERS and not isinstance(item, scalars):
            return False
        room -= sys.getsizeof(item)
        if room < 0:
            return False
        if kind is dict:
            todo.extend(item.items())
        elif kind in _CONTAINERS:
            todo.extend(item)
    return True


@dataclass
class MergeReport:
    """What `merge` did, for the widget: names set, names kept (with why), names not sent."""

    set: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    unsent: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # asked for with --return, never assigned
    incidental: dict[str, str] = field(default_factory=dict)  # set names that are no results
    separated: dict[str, str] = field(default_factory=dict)  # views left with the old memory

    @property
    def empty(self) -> bool:
        return not (self.set or self.kept or self.unsent or self.missing)

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.set,
            "kept": self.kept,
            "unsent": self.unsent,
            "missing": self.missing,
            "incidental": self.incidental,
            "separated": self.separated,
        }


def merge(
    ns: MutableMapping[str, Any],
    snapshot: Snapshot,
    result: dict[str, Any],
    wanted: list[str] | None = None,
    incidental: Mapping[str, str] | None = None,
) -> MergeReport:
    """Apply a cell job's result (`{"values", "assigned", "changed", "unsent", "mutated"}`).

    A name the cell changed in place (`mutated`) keeps its object here, changed the same way
    (see in_place.py), so the names, views and containers sharing it see the change as inline.

    `wanted` is `--return`'s list (None: everything the job sent back). `incidental` names what
    the cell bound only by imports or loops (from its code, when this kernel has it); modules,
    and functions and classes of other modules, count as imports by their value alone.
    """
    # the notebook's functions and classes read the notebook's globals, not the job's copies
    values: dict[str, Any] = result.get("values", {})
    if isinstance(ns, dict):  # a kernel's namespace (functions need a real dict as globals)
        values = notebook_main.rebind(values, ns, fill=False)
    unsent: dict[str, str] = dict(result.get("unsent", {}))
    report = MergeReport()
    names = list(values) if wanted is None else [n for n in wanted if n in values]
    if wanted is not None:
        report.missing = [n for n in wanted if n not in values and n not in unsent]
        unsent = {n: why for n, why in unsent.items() if n in wanted}
    report.unsent = unsent
    # Objects the cell changed in place (not bound anew) that the name still holds here.
    mutated = set(result.get("mutated", ()))
    own = {n: ns[n] for n in names if n in mutated and n in ns and ns[n] is snapshot.before(n)}
    stand_in = {id(values[n]): obj for n, obj in own.items()}

    def swap(obj: Any) -> Any:
        return stand_in.get(id(obj), obj)

    for name in names:
        # the same object either way (a module both imported): nothing is overwritten
        same = ns.get(name, _UNBOUND) is values[name]
        why = None if same else _conflict(ns, snapshot, name)
        if why:
            report.kept[name] = why
            continue
        report.set.append(name)
        kind = (incidental or {}).get(name) or _imported(values[name])
        if kind:
            report.incidental[name] = kind
        if name in own:
            if in_place.update(own[name], values[name], swap):
                continue  # one object still: other names, views, containers see the change
            report.separated.update(_rebind_aliases(ns, own[name], values[name], name))
        ns[name] = values[name]
    return report


def _rebind_aliases(ns: MutableMapping[str, Any], old: Any, new: Any, name: str) -> dict[str, str]:
    """`old` could not take the job's change: the names bound to it take `new` with `name`,
    and the NumPy views of it, which cannot, are returned as separated (name -> why)."""
    separated = {}
    np = sys.modules.get("numpy")
    array = np is not None and isinstance(old, np.ndarray)
    for other, value in list(ns.items()):
        if other == name or other.startswith("_"):
            continue
        if value is old:
            ns[other] = new
        elif array and isinstance(value, np.ndarray) and np.may_share_memory(value, old):
            separated[other] = f"still views '{name}' as it was before the job"
    return separated


def _imported(value: Any) -> str | None:
    """`import` for what only an import binds: a module, or a function or class of a module
    (the cell's own functions and classes come back as `__main__`'s); None for data."""
    if isinstance(value, types.ModuleType):
        return "import"
    named = isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType))
    if named and getattr(value, "__module__", None) not in (None, "__main__"):
        return "import"
    return None


def _conflict(ns: MutableMapping[str, Any], snapshot: Snapshot, name: str) -> str | None:
    """Why `name` must keep the user's value, or None if the job's value may go in."""
    now, moment = ns.get(name, _UNBOUND), snapshot.moment
    if name not in snapshot:
        if name in snapshot.present:
            return f"was already bound at {moment}"
        return None if now is _UNBOUND else f"was created since {moment}"
    before = snapshot.before(name)
    if now is before:
        return None
    if now is _UNBOUND:
        return f"was deleted since {moment}"
    if before is _UNBOUND:
        return f"was created since {moment}"
    if before is _FORGOTTEN:
        return f"may have been reassigned since {moment} (too big to follow after its run ended)"
    return f"was reassigned since {moment}"
