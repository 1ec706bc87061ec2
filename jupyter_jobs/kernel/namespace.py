"""Putting a cell job's names back into the notebook, without overwriting anything silently.

At submit time the magic takes a `Snapshot`: for each name the job may send back, the object the
name was bound to (or that it was unbound). When the job succeeds, `merge` sets a name only if it
still holds that same object: a name the user reassigned, deleted or created meanwhile keeps the
user's value, and the report says where the job's value is instead. Identity, not equality, is
the test, because "the user did something to this name since" is what must not be lost; the
snapshot keeps strong references so an id cannot be reused by another object meanwhile.

The report also says which names are not results (imports, loop variables), so the widget can
list what the user would call results and summarise the rest: all of them are set alike.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .. import notebook_main
from . import in_place

_UNBOUND = object()


@dataclass
class Snapshot:
    """The names a job may send back, each with its object at submit time (or `_UNBOUND`).

    `moment` names when it was taken, for the report: "submit" (the `%%job` cell), or "attach"
    (`%job attach`: no name is tracked, so every name bound then keeps the user's value).
    """

    objects: dict[str, Any]
    present: frozenset[str]  # every name bound when taken (for names nobody predicted)
    moment: str = "submit"

    @classmethod
    def take(
        cls, ns: MutableMapping[str, Any], names: Iterable[str], moment: str = "submit"
    ) -> Snapshot:
        return cls({n: ns.get(n, _UNBOUND) for n in names}, frozenset(ns), moment)

    def bound(self, ns: Mapping[str, Any]) -> dict[str, Any]:
        """What this snapshot's names hold in `ns` now (for `follow`)."""
        return {n: ns.get(n, _UNBOUND) for n in self.objects}

    def follow(
        self, ns: Mapping[str, Any], before: Mapping[str, Any], names: Iterable[str]
    ) -> None:
        """A cell job this one runs after (`--after`) just set `names` in `ns`; `before` is
        what they held until then (`bound`). Its names are no user's change: where this
        snapshot had the object it replaced, it takes the new one, so this job's own values
        for them are not "reassigned since submit" when they come back."""
        for name in names:
            if name in self.objects and self.objects[name] is before.get(name, _UNBOUND):
                self.objects[name] = ns.get(name, _UNBOUND)


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
    own = {
        n: ns[n]
        for n in names
        if n in mutated and n in ns and ns[n] is snapshot.objects.get(n, _UNBOUND)
    }
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
    if name not in snapshot.objects:
        if name in snapshot.present:
            return f"was already bound at {moment}"
        return None if now is _UNBOUND else f"was created since {moment}"
    before = snapshot.objects[name]
    if now is before:
        return None
    if now is _UNBOUND:
        return f"was deleted since {moment}"
    if before is _UNBOUND:
        return f"was created since {moment}"
    return f"was reassigned since {moment}"
