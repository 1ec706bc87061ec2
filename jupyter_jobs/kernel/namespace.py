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

import types
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .. import notebook_main

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


@dataclass
class MergeReport:
    """What `merge` did, for the widget: names set, names kept (with why), names not sent."""

    set: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    unsent: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # asked for with --return, never assigned
    incidental: dict[str, str] = field(default_factory=dict)  # set names that are no results

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
        }


def merge(
    ns: MutableMapping[str, Any],
    snapshot: Snapshot,
    result: dict[str, Any],
    wanted: list[str] | None = None,
    incidental: Mapping[str, str] | None = None,
) -> MergeReport:
    """Apply a cell job's result (`{"values", "assigned", "changed", "unsent"}`) to `ns`.

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
    for name in names:
        # the same object either way (a module both imported): nothing is overwritten
        same = ns.get(name, _UNBOUND) is values[name]
        why = None if same else _conflict(ns, snapshot, name)
        if why:
            report.kept[name] = why
        else:
            ns[name] = values[name]
            report.set.append(name)
            kind = (incidental or {}).get(name) or _imported(values[name])
            if kind:
                report.incidental[name] = kind
    return report


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
