"""Turn a function call or a notebook cell into payload bytes for a worker.

Runs in the client (the user's kernel), never in the server. Cells ship only the variables they
read (found by walking the AST, IPython syntax included), modules travel by name, and anything
dill cannot serialize is named in the error, every culprit at once, so the user fixes the cell in
one go instead of one variable per attempt.

Payload shapes (DESIGN.md): function jobs `{"fn", "args", "kwargs"}`; cell jobs `{"code",
"variables", "modules", "execution_count", "first_line"}` where `modules` maps an alias to a
module name. A dotted alias ("xml.etree") is a submodule the cell reaches through attributes:
imported, not bound. `execution_count` is the notebook cell's number (None outside a notebook)
and `first_line` the cell's line the code starts on (2 under `%%job`): the worker labels the
cell's tracebacks with them, `Cell In[7], line 3`, as the kernel would.

Payloads (and a worker's results, runner.py) are `dumps_framed`: big NumPy arrays go beside the
pickle as their own memory (buffers.py) instead of being copied into it; `loads` takes either
form.

A function job from `Jobs.submit` or `map` pickles its function and its `{"args", "kwargs"}`
apart (`function_bytes`, `call_bytes`), so that the function is stored once (`shared.py`).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import io
import pickle
import re
import types
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dill

from . import array_views, buffers, history, notebook_enums, notebook_main
from .errors import PayloadError

#: Names IPython puts into a namespace; shipping them would drag the kernel's history along.
IPYTHON_NAMES = frozenset(
    {
        "In",
        "Out",
        "get_ipython",
        "exit",
        "quit",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_ih",
        "_oh",
        "_dh",
        "_exit_code",
        "__builtins__",
        "__builtin__",
        "__name__",
        "__doc__",
        "__spec__",
        "__loader__",
        "__package__",
        "__session__",
    }
)
_IPYTHON_NUMBERED = re.compile(r"_i?\d+$")

#: Magics whose argument is Python run in the user's namespace: (reads names, binds names).
_CODE_MAGICS = {"time": True, "prun": True, "capture": True, "timeit": False}
_EXPANSION = re.compile(r"\$([A-Za-z_]\w*)|\{([^{}]+)\}")
_MISSING = object()


@dataclass
class CellInfo:
    """What a cell payload carries, for the widget and the kernel magic to show."""

    names: list[str] = field(default_factory=list)
    modules: dict[str, str] = field(default_factory=dict)
    assigned: list[str] = field(default_factory=list)
    #: Assigned names that are not results: bound only by imports or as `for` targets.
    incidental: dict[str, str] = field(default_factory=dict)


def describe_type(obj: Any) -> str:
    """`sqlite3.Connection`, `generator`: the type as a user would write it."""
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class _Pickler(dill.Pickler):
    """dill, except that every module but `__main__` travels by name.

    dill pickles a module that lives outside `sys.prefix` by value (its whole namespace), which
    breaks for the modules users care about most: their own package next to the notebook, an
    editable install, this package in a checkout. The worker imports those by name like any other
    (it runs in the notebook's directory, with the notebook's interpreter).
    """

    dispatch = dill.Pickler.dispatch.copy()
    by_reference: dict[int, str] = {}
    views: dict[int, array_views.View] = {}
    beside: buffers.Collector | None = None

    def reducer_override(self, obj: Any) -> Any:
        view = self.views.get(id(obj))
        if view is not None:
            return array_views.rebuild, view
        if self.beside is not None and (reduced := self.beside.reduce(obj)) is not None:
            return reduced
        qualname = self.by_reference.get(id(obj))
        if qualname is None:
            return notebook_enums.reduce(obj) or NotImplemented
        return notebook_main.from_main, (qualname,)


def _save_module(pickler: dill.Pickler, module: types.ModuleType) -> None:
    if module.__name__ == "__main__":
        dill.Pickler.dispatch[types.ModuleType](pickler, module)
    else:
        pickler.save_reduce(importlib.import_module, (module.__name__,), obj=module)


_Pickler.dispatch[types.ModuleType] = _save_module


def _refuse_file(pickler: dill.Pickler, file: io.IOBase) -> None:
    # dill would reopen the file by its name and mode in the worker: a file opened for writing
    # would be truncated there, the user's data lost. A file is this process's handle.
    state = "closed" if file.closed else "open"
    raise pickle.PicklingError(
        f"a file handle ({state}, {getattr(file, 'name', '?')!r}) is this process's own: "
        "open the file in the job instead"
    )


for _file_type in (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter, io.BufferedRandom,
                   io.FileIO):  # fmt: skip
    _Pickler.dispatch[_file_type] = _refuse_file


class _NeedsDill(Exception):
    """Raised by `_ByName` for what only dill can send."""


class _ByName(pickle.Pickler):
    """The C pickler, for the common payload that dill would send exactly the same way.

    A function or class from an importable module travels by name with either pickler, and
    dill's pure-Python pickler costs ~100 µs even for `noop()`: a tenth of a short job's whole
    cost. Whatever dill sends by value (anything of `__main__`, lambdas, closures, modules)
    makes this pickler give up, and `dumps` then uses dill.
    """

    views: dict[int, array_views.View] = {}
    beside: buffers.Collector | None = None

    def reducer_override(self, obj: Any) -> Any:
        view = self.views.get(id(obj))
        if view is not None:
            return array_views.rebuild, view
        if self.beside is not None and (reduced := self.beside.reduce(obj)) is not None:
            return reduced
        # Functions, classes and wrappers that pickle by name (functools.cache, lru_cache)
        # defined in `__main__` exist only in this process: dill sends them by value.
        if getattr(obj, "__module__", None) == "__main__" and hasattr(obj, "__qualname__"):
            raise _NeedsDill
        return NotImplemented


def dumps(obj: Any, by_reference: Collection[type] = (), together: Iterable[Any] = ()) -> bytes:
    """Pickle `obj` by name where possible, else with dill (recurse=True, so a function by
    value brings only the globals it really uses). `by_reference`: notebook classes to send as
    the receiving notebook's own (see notebook_main.py), not by value. `together`: variables
    sent in `obj` whose NumPy views of one another stay views (see array_views.py)."""
    return _dump(obj, by_reference, together, None)


def dumps_framed(
    obj: Any, by_reference: Collection[type] = (), together: Iterable[Any] = ()
) -> bytes | buffers.Framed:
    """`dumps`, with big arrays beside the pickle, not copied into it (buffers.py): what
    travels between a kernel and a worker. Plain pickle bytes when there is no big array."""
    beside = buffers.Collector()
    return beside.framed(_dump(obj, by_reference, together, beside))


def _dump(
    obj: Any,
    by_reference: Collection[type],
    together: Iterable[Any],
    beside: buffers.Collector | None,
) -> bytes:
    views = array_views.find(together)
    buffer = io.BytesIO()
    try:
        fast = _ByName(buffer, dill.settings["protocol"])
        fast.views, fast.beside = views, beside
        fast.dump(obj)
        return buffer.getvalue()
    except Exception:  # dill takes what the C pickler refuses, or says why it cannot
        buffer = io.BytesIO()
        if beside is not None:
            beside.clear()  # what the C pickler put aside is not in dill's pickle
    pickler = _Pickler(buffer, recurse=True)
    pickler.by_reference = {id(cls): cls.__qualname__ for cls in by_reference}
    pickler.views, pickler.beside = views, beside
    pickler.dump(obj)
    return buffer.getvalue()


def _why_not(obj: Any) -> str | None:
    try:
        dumps_framed(obj)  # big arrays are not copied to be tried
    except Exception as exc:
        return f"{exc}" or type(exc).__name__
    return None


def _culprits(items: Iterable[tuple[str, Any]]) -> list[str]:
    """One sentence per part that dill refuses, so the user can fix all of them at once."""
    problems = []
    for label, value in items:
        reason = _why_not(value)
        if reason is not None:
            problems.append(f"{label} ({describe_type(value)}) cannot be sent to the job: {reason}")
    return problems


def function_payload(
    fn: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
) -> bytes | buffers.Framed:
    """The payload for `fn(*args, **kwargs)` as one pickle, its big arrays beside it
    (buffers.py): a schedule's target. `Jobs.submit` and `map` send the function apart
    (`function_bytes`, `call_bytes`, `shared.py`). PayloadError names each part dill cannot
    take."""
    _check_callable(fn)
    kwargs = dict(kwargs or {})
    try:
        return dumps_framed({"fn": fn, "args": tuple(args), "kwargs": kwargs})
    except Exception as exc:
        raise _call_error(fn, args, kwargs, exc) from exc


def function_bytes(fn: Any) -> bytes:
    """The function of a function job, pickled on its own (stored once: `shared.py`)."""
    _check_callable(fn)
    try:
        return dumps(fn)
    except Exception as exc:
        raise _call_error(fn, (), {}, exc) from exc


def call_bytes(fn: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes | buffers.Framed:
    """The arguments of one call of `fn`, pickled without the function: `{"args", "kwargs"}`,
    their big arrays beside the pickle (buffers.py)."""
    try:
        return dumps_framed({"args": tuple(args), "kwargs": dict(kwargs)})
    except Exception as exc:
        raise _call_error(fn, args, kwargs, exc, with_function=False) from exc


def _check_callable(fn: Any) -> None:
    if not callable(fn):
        raise PayloadError(f"a function job needs a callable, got {describe_type(fn)}")


def _call_error(
    fn: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    exc: Exception,
    with_function: bool = True,
) -> PayloadError:
    """A PayloadError naming every part of the call dill refuses, at once."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    items = [(f"the function '{name}'", fn)] if with_function else []
    items += [(f"argument {i}", value) for i, value in enumerate(args)]
    items += [(f"keyword argument '{key}'", value) for key, value in kwargs.items()]
    problems = _culprits(items) or [f"the call cannot be sent: {exc}"]
    return PayloadError("; ".join(problems), {"problems": problems})


def _parse(code: str) -> ast.Module:
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(code)
    try:
        return ast.parse(python)
    except SyntaxError as exc:
        raise PayloadError(
            f"the cell has a syntax error on line {exc.lineno}: {exc.msg}",
            {"line": exc.lineno, "text": exc.text},
        ) from None


def _magic_call(node: ast.AST) -> tuple[str, list[str]] | None:
    """`get_ipython().<method>(<constant strings>)` -> (method, the strings)."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
    ):
        return None
    strings = [
        a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
    ]
    return node.func.attr, strings


def _quiet_parse(code: str, mode: str = "exec") -> ast.AST | None:
    try:
        return ast.parse(code.strip(), mode=mode)
    except SyntaxError:
        return None


def _magic_code(line: str) -> ast.AST | None:
    """The code of a line magic such as `%timeit -n 10 f(x)`: the longest end of the line,
    after its options, that parses as Python."""
    words = line.split(" ")
    for start in range(len(words)):
        tree = _quiet_parse(" ".join(words[start:]))
        if tree is not None:
            return tree
    return None


def _embedded(node: ast.AST) -> tuple[list[ast.AST], list[ast.AST]]:
    """Code hidden in strings by IPython's transforms: (trees that read names, trees that bind).

    `%time x = f(y)`, `%%capture` bodies and `!echo $y {z}` all use the user's namespace, so
    their names count like the cell's own.
    """
    call = _magic_call(node)
    if call is None:
        return [], []
    method, strings = call
    reads: list[ast.AST] = []
    binds: list[ast.AST] = []
    expand = []
    if method == "run_line_magic" and len(strings) == 2:
        magic, line = strings
        binding = _CODE_MAGICS.get(magic)
        tree = _magic_code(line) if binding is not None else None
        if tree is not None:
            reads.append(tree)
            if binding:
                binds.append(tree)
        expand.append(line)
    elif method == "run_cell_magic" and len(strings) == 3:
        magic, line, body = strings
        binding = _CODE_MAGICS.get(magic)
        tree = _quiet_parse(body) if binding is not None else None
        if tree is not None:
            reads.append(tree)
            if binding:
                binds.append(tree)
        if magic == "capture" and line.split() and line.split()[-1].isidentifier():
            binds.append(ast.parse(f"{line.split()[-1]} = None"))
        expand.append(line)
    elif method in ("system", "getoutput"):
        expand.extend(strings)
    for text in expand:
        for match in _EXPANSION.finditer(text):
            tree = _quiet_parse(match.group(1) or match.group(2), "eval")
            if tree is not None:
                reads.append(tree)
    return reads, binds


def _read_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    for node in ast.walk(tree):
        yield node
        for sub in _embedded(node)[0]:
            yield from _read_nodes(sub)


def read_names(code: str) -> list[str]:
    """Every name the cell may read, at any depth (functions and comprehensions included)."""
    return _read_names(_parse(code))


def _read_names(tree: ast.AST) -> list[str]:
    names: dict[str, None] = {}
    for node in _read_nodes(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Load, ast.Del)):
            names[node.id] = None
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
    return list(names)


def _target_names(target: ast.AST) -> Iterable[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _bindings(node: ast.AST, top: bool) -> Iterable[tuple[str, ast.AST]]:
    """Names `node` binds at module level, each with the node that binds it; `top` is False
    inside a function or class body."""
    if top:
        yield from ((name, node) for name in _own_bindings(node))
    if isinstance(node, ast.Global) and not top:
        yield from ((name, node) for name in node.names)
    if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name) and top:
        yield node.target.id, node
    for sub in _embedded(node)[1]:
        yield from _bindings(sub, top)
    inner = top and not isinstance(node, _SCOPES)
    for child in ast.iter_child_nodes(node):
        yield from _bindings(child, inner)


def _own_bindings(node: ast.AST) -> Iterable[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name
    elif isinstance(node, ast.Assign):
        for target in node.targets:
            yield from _target_names(target)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
        yield from _target_names(node.target)
    elif isinstance(node, ast.withitem) and node.optional_vars is not None:
        yield from _target_names(node.optional_vars)
    elif isinstance(node, ast.ExceptHandler) and node.name:
        yield node.name
    elif isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.asname or alias.name.split(".")[0]
    elif isinstance(node, ast.ImportFrom):
        yield from (alias.asname or alias.name for alias in node.names if alias.name != "*")
    elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
        yield node.name
    elif isinstance(node, ast.MatchMapping) and node.rest:
        yield node.rest


def assigned_names(code: str) -> list[str]:
    """Names the cell binds in the notebook's namespace, in order of first binding.

    Assignments of every form, imports, def, class, for/with/except targets and walrus at module
    level (comprehension walrus included: it binds in the enclosing scope); `global` names of
    functions the cell defines. `del` does not bind.
    """
    return _assigned_names(_parse(code))


def _assigned_names(tree: ast.Module) -> list[str]:
    names: dict[str, None] = {}
    for statement in tree.body:
        for name, _ in _bindings(statement, True):
            names[name] = None
    return list(names)


#: Bindings that give a name without making it a result of the cell.
_INCIDENTAL: dict[type[ast.AST], str] = {
    ast.Import: "import",
    ast.ImportFrom: "import",
    ast.For: "loop variable",
    ast.AsyncFor: "loop variable",
}


def _incidental_names(tree: ast.Module) -> dict[str, str]:
    """Names the cell binds only by imports or only as `for` targets, with that kind: what a
    reader would not call the cell's results (`import time`, `for i in ...`)."""
    kinds: dict[str, set[str | None]] = {}
    for statement in tree.body:
        for name, node in _bindings(statement, True):
            kinds.setdefault(name, set()).add(_INCIDENTAL.get(type(node)))
    return {
        name: kind
        for name, found in kinds.items()
        if len(found) == 1 and (kind := next(iter(found)))
    }


def _ipython_owned(name: str, value: Any) -> bool:
    if name in IPYTHON_NAMES or _IPYTHON_NUMBERED.match(name):
        return True
    # ipykernel injects helpers (its own `open`, private hooks) into the user namespace.
    owner = getattr(value, "__module__", None) or ""
    return owner.startswith(("IPython.", "ipykernel.")) and (name.startswith("_") or name == "open")


def _submodules(tree: ast.AST, namespace: Mapping[str, Any], modules: dict[str, str]) -> None:
    """Add `a.b` for every `a.b.c` attribute chain that goes through submodules of module `a`."""
    for node in ast.walk(tree):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if not (
            isinstance(node, ast.Name) and isinstance(namespace.get(node.id), types.ModuleType)
        ):
            continue
        value, path = namespace[node.id], node.id
        for attr in reversed(chain):
            value = getattr(value, attr, None)
            if not isinstance(value, types.ModuleType):
                break
            path += f".{attr}"
            modules[path] = value.__name__


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _names_in_strings(
    tree: ast.AST, namespace: Mapping[str, Any], read: Iterable[str]
) -> list[str]:
    """Variables named only inside string literals, which code reads by name at run time:
    `df.query('v > @thr')`, `pd.eval('a + b')`, `numexpr.evaluate('x > 0.5')`, `eval('df1')`.
    A word of a string is only a guess: `cell_payload` leaves behind one that cannot be sent."""
    found: list[str] = []
    seen = set(read)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        for word in _IDENTIFIER.findall(node.value[:10_000]):
            if word in seen or word not in namespace:
                continue
            seen.add(word)
            value = namespace[word]
            if isinstance(value, types.ModuleType) or _ipython_owned(word, value):
                continue
            if getattr(builtins, word, _MISSING) is value:
                continue
            found.append(word)
    return found


def cell_payload(
    code: str,
    namespace: Mapping[str, Any],
    *,
    exclude: Iterable[str] = (),
    execution_count: int | None = None,
    first_line: int = 1,
    settings: Mapping[str, Any] | None = None,
) -> tuple[bytes | buffers.Framed, CellInfo]:
    """The payload for running `code` elsewhere with the variables it reads from `namespace`
    (`execution_count` and `first_line`: where the code is in the notebook, for tracebacks;
    `settings`: the kernel's global state that is not variables, by kind: `rng`, the random
    generators' states (`rng.capture()`), `display`, its print options, `figures`, its
    matplotlib style (`figures.style()`)). The history names the code reads (`_`, `Out`)
    travel apart from its variables (see history.py)."""
    tree = _parse(code)
    skip = set(exclude)
    variables: dict[str, Any] = {}
    modules: dict[str, str] = {}
    read = _read_names(tree)
    for name in read:
        if name in skip or name not in namespace:
            continue
        value = namespace[name]
        if _ipython_owned(name, value) or getattr(builtins, name, _MISSING) is value:
            continue
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
        elif isinstance(value, io.IOBase) and value.closed:
            continue  # nothing to share (`with open(...) as fh` of an earlier cell)
        else:
            variables[name] = value
    guessed = {
        name: namespace[name]
        for name in _names_in_strings(tree, namespace, read)
        if name not in skip
    }
    past = history.capture(read, namespace)
    _submodules(tree, {alias: namespace[alias] for alias in modules}, modules)
    fields = {
        "code": code,
        "modules": modules,
        "execution_count": execution_count,
        "first_line": first_line,
        **(settings or {}),
    }
    try:
        sent = {**variables, **guessed}
        data = dumps_framed({**fields, "variables": sent, "history": past}, together=sent.values())
    except Exception as exc:
        # Names guessed from strings and history entries are optional: what cannot be sent
        # stays behind (the cell fails as it would without it); only then is each one tried.
        guessed = {name: value for name, value in guessed.items() if _why_not(value) is None}
        past = history.sendable(past, lambda value: _why_not(value) is None)
        sent = {**variables, **guessed}
        try:
            data = dumps_framed(
                {**fields, "variables": sent, "history": past}, together=sent.values()
            )
        except Exception:
            items = [(f"variable '{name}'", value) for name, value in variables.items()]
            problems = _culprits(items) or [f"the cell cannot be sent: {exc}"]
            raise PayloadError("; ".join(problems), {"problems": problems}) from exc
    info = CellInfo(
        names=[*variables, *guessed],
        modules=modules,
        assigned=_assigned_names(tree),
        incidental=_incidental_names(tree),
    )
    return data, info


def loads(data: buffers.Loadable) -> Any:
    """A pickle made by `dumps` or `dumps_framed` (a framed one with its arrays); only
    workers and the submitting kernel call this (the server never unpickles)."""
    return buffers.loads(data, dill.load)


def load_payload(data: buffers.Loadable) -> dict[str, Any]:
    """The payload dict; only the runner calls this (the server never unpickles)."""
    payload = loads(data)
    if not isinstance(payload, dict):
        raise TypeError(f"payload is a {describe_type(payload)}, not a dict")
    return payload
