"""Enum classes a notebook defines travel by value, as its other classes do.

dill cannot send an `Enum` subclass of `__main__` by value (its members refer back to it, which
dill's class pickling does not survive) and falls back to a reference by name, which the worker
cannot resolve: `Can't get attribute 'Colour' on <module '__main__'>`. So such a class travels as
what its class statement said: its metaclass, bases, members with their values, and the methods
and attributes written in its body; the receiver runs the class statement again
(`metaclass(name, bases, classdict)`), and members arrive as `Colour(2)`, the class's own.
A class whose custom `__new__` makes a member's value from other arguments cannot be made
again from that value: it fails to arrive with an error that says so.
"""

from __future__ import annotations

import enum
import types
from typing import Any

Reduced = tuple[Any, tuple[Any, ...]]


def reduce(cls: Any) -> Reduced | None:
    """How to send `cls` if it is an Enum class of the notebook, else None."""
    if not isinstance(cls, enum.EnumMeta) or cls.__module__ != "__main__":
        return None
    members = [(name, member.value) for name, member in cls.__members__.items()]
    body = {
        _HOOKS.get(key, key): value
        for key, value in vars(cls).items()
        if key not in cls.__members__ and _written(key, value)
    }
    return rebuild, (type(cls), cls.__name__, cls.__qualname__, cls.__bases__, members, body)


#: The hooks a class statement may define, by the name EnumMeta keeps them under.
_HOOKS = {"_new_member_": "__new__"}
_SUNDER_HOOKS = {"_generate_next_value_", "_missing_", "_new_member_"}


def _written(key: str, value: Any) -> bool:
    """Whether `key` of an Enum class's dict came from its class statement, not from EnumMeta
    (which adds `_sunder_` bookkeeping and dunders of its own, none of them notebook code)."""
    sunder = key.startswith("_") and key.endswith("_") and not key.startswith("__")
    if sunder and key not in _SUNDER_HOOKS:
        return False
    if key.startswith("__") or sunder:
        fn = getattr(value, "__func__", value)
        return isinstance(fn, types.FunctionType) and fn.__module__ == "__main__"
    return True


def rebuild(
    metaclass: type,
    name: str,
    qualname: str,
    bases: tuple[type, ...],
    members: list[tuple[str, Any]],
    body: dict[str, Any],
) -> Any:
    """The class statement again (unpickling calls this)."""
    classdict = metaclass.__prepare__(name, bases)
    early = {"_generate_next_value_", "_missing_"}  # must precede the members
    for key in early & body.keys():
        classdict[key] = body[key]
    for key, value in members:
        classdict[key] = value
    for key, value in body.items():
        if key not in early:
            classdict[key] = value
    classdict["__module__"] = "__main__"
    classdict["__qualname__"] = qualname
    try:
        return metaclass(name, bases, classdict)
    except Exception as exc:
        raise TypeError(
            f"the Enum {qualname} defined in the notebook cannot be made again from its members' "
            f"values ({type(exc).__name__}: {exc}); define it in a module next to the notebook"
        ) from exc
