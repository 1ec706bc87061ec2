"""Payloads built in the client: which names a cell reads and binds, and errors that name names."""

from __future__ import annotations

import json
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import threading
import xml.etree.ElementTree

import dill
import pytest

from jupyter_jobs.errors import PayloadError
from jupyter_jobs.payload import (
    assigned_names,
    cell_payload,
    dumps,
    function_payload,
    load_payload,
    read_names,
)


def double(x: int) -> int:
    return 2 * x


# -- names a cell reads -----------------------------------------------------------------------


def test_read_names_at_any_depth():
    code = (
        "def f(a):\n"
        "    return [g(b) for b in rows if b > limit]\n"
        "obj.attr.method()\n"
        "counter += 1\n"
        "del old\n"
        "lambda: inside\n"
    )
    names = set(read_names(code))
    assert {"g", "rows", "limit", "obj", "counter", "old", "inside"} <= names
    assert "b" in names  # locals too: only names found in the namespace travel


def test_read_names_through_ipython_syntax():
    code = (
        "%time result = compute(x)\n"
        "!echo $path {count + 1}\n"
        "listing = !ls {folder}\n"
        "%timeit helper(y)\n"
    )
    names = set(read_names(code))
    assert {"compute", "x", "path", "count", "folder", "helper", "y"} <= names
    assert {"body_var"} <= set(read_names("%%capture captured\nprint(body_var)\n"))
    # A line magic's options come before its code.
    assert {"f", "x"} <= set(read_names("%timeit -n 10 -r 3 f(x)\n"))
    assert {"g", "y"} <= set(read_names("%prun -l 5 -s cumulative g(y)\n"))


def test_cell_ships_only_what_it_reads_and_what_exists():
    namespace = {"data": [1, 2], "unused": 3, "limit": 10, "conn": sqlite3.connect(":memory:")}
    data, info = cell_payload("total = sum(d for d in data if d < limit)", namespace)
    assert info.names == ["data", "limit"]
    assert info.assigned == ["total"]
    payload = load_payload(data)
    assert payload["variables"] == {"data": [1, 2], "limit": 10}
    assert payload["code"] == "total = sum(d for d in data if d < limit)"


def test_cell_skips_ipython_internals_builtins_and_excluded_names():
    namespace = {
        "In": ["", "x = 1"],
        "Out": {1: 2},
        "_": 2,
        "__": 1,
        "_5": 2,
        "_i3": "x",
        "_ih": [],
        "get_ipython": lambda: None,
        "exit": object(),
        "len": len,
        "_private": "mine",
        "secret": "skip me",
    }
    code = "print(In, Out, _, __, _5, _i3, _ih, get_ipython, exit, len, _private, secret)"
    _, info = cell_payload(code, namespace, exclude=["secret"])
    assert info.names == ["_private"]


def test_shadowed_builtin_travels():
    _, info = cell_payload("print(list)", {"list": [1, 2]})
    assert info.names == ["list"]


def test_modules_travel_by_name_with_aliases_and_submodules():
    import numpy as np

    namespace = {"np": np, "os": os, "xml": xml, "path_mod": os.path}
    data, info = cell_payload(
        "np.zeros(2)\nos.getcwd()\nxml.etree.ElementTree.fromstring('<a/>')\npath_mod.join('a')",
        namespace,
    )
    assert info.names == []
    assert info.modules["np"] == "numpy"
    assert info.modules["os"] == "os"
    assert info.modules["path_mod"] == os.path.__name__
    assert info.modules["xml.etree.ElementTree"] == "xml.etree.ElementTree"
    assert load_payload(data)["modules"] == info.modules


def test_every_unpicklable_variable_is_named_with_its_reason():
    server = socket.socket()
    namespace = {
        "conn": sqlite3.connect(":memory:"),
        "rows": (i for i in range(3)),
        "server": server,
        "fine": [1, 2],
        "lock": threading.Lock(),  # dill can send locks: not a culprit
    }
    try:
        with pytest.raises(PayloadError) as caught:
            cell_payload("print(conn, rows, server, fine, lock)", namespace)
    finally:
        server.close()
    message = str(caught.value)
    assert (
        "variable 'conn' (sqlite3.Connection) cannot be sent to the job: "
        "cannot pickle 'sqlite3.Connection' object" in message
    )
    assert "variable 'rows' (generator) cannot be sent to the job" in message
    assert "variable 'server' (socket.socket) cannot be sent to the job" in message
    assert "fine" not in message and "lock" not in message
    assert len(caught.value.detail["problems"]) == 3


def test_a_file_handle_is_never_sent_so_a_file_open_for_writing_is_never_truncated(tmp_path):
    path = tmp_path / "notes.txt"
    handle = open(path, "w")  # noqa: SIM115  (the handle is the point)
    handle.write("kept\n")
    handle.flush()
    with pytest.raises(PayloadError) as caught:
        cell_payload("handle.write('more')", {"handle": handle})
    assert "variable 'handle' (_io.TextIOWrapper) cannot be sent" in str(caught.value)
    assert "open the file in the job instead" in str(caught.value)
    handle.close()
    # a closed handle of an earlier `with open(...) as handle` is left behind, nested it is refused
    _, info = cell_payload(
        "with open('notes.txt') as handle:\n    lines = list(handle)", {"handle": handle}
    )
    assert info.names == []
    with pytest.raises(PayloadError, match="a file handle \\(closed"):
        function_payload(print, ([handle],))
    assert path.read_text() == "kept\n"


def test_syntax_error_is_a_payload_error_with_the_line():
    with pytest.raises(PayloadError, match="syntax error on line 2"):
        cell_payload("x = 1\ny = (", {})


# -- names a cell binds -----------------------------------------------------------------------

ASSIGNED_CASES = [
    ("x = 1", ["x"]),
    ("a, (b, *c) = 1, (2, 3, 4)", ["a", "b", "c"]),
    ("a = b = 0", ["a", "b"]),
    ("n += 1", ["n"]),
    ("w: int = 3", ["w"]),
    ("v: int", ["v"]),
    ("import numpy as np, os.path", ["np", "os"]),
    ("import a.b.c", ["a"]),
    ("from m import x as y, z", ["y", "z"]),
    ("from m import *", []),
    ("def f():\n    local = 1", ["f"]),
    ("async def g():\n    pass", ["g"]),
    ("class K:\n    attr = 1", ["K"]),
    ("for i, (j, k) in pairs:\n    inner = i", ["i", "j", "k", "inner"]),
    ("with open(p) as fh, lock as (l1, l2):\n    body = 1", ["fh", "l1", "l2", "body"]),
    ("try:\n    t = 1\nexcept ValueError as err:\n    e2 = 2", ["t", "err", "e2"]),
    ("if (found := check()):\n    pass", ["found"]),
    ("[(last := v) for v in values]", ["last"]),
    ("del x", []),
    ("x[0] = 5\nobj.attr = 1", []),
    ("lambda: (hidden := 1)", []),
    ("def f():\n    global counter\n    counter = 1", ["f", "counter"]),
    ("listing = !ls", ["listing"]),
    ("%time timed = 6 * 7", ["timed"]),
    ("%timeit not_bound = 1", []),
    ("%%capture out\nprinted = 1", ["printed", "out"]),
    (
        "match cmd:\n    case [first, *rest]:\n        pass\n    case {'k': v, **others}:\n"
        "        pass\n    case Point(x=px) as whole:\n        pass",
        ["first", "rest", "v", "others", "px", "whole"],
    ),
    ("while cond:\n    loop_var = 1\nelse:\n    after = 2", ["loop_var", "after"]),
]


@pytest.mark.parametrize(("code", "expected"), ASSIGNED_CASES)
def test_assigned_names(code, expected):
    assert sorted(assigned_names(code)) == sorted(expected)


def test_assigned_names_keep_the_order_of_first_binding():
    assert assigned_names("b = 1\na = 2\nb = 3\nimport c") == ["b", "a", "c"]


def test_names_bound_only_by_imports_or_loops_are_incidental():
    code = (
        "import time, os.path\nfrom math import pi\nbest = None\n"
        "for i in range(3):\n    for j, best in pairs:\n        score = i\n"
        "import numpy as best_lib\nbest_lib = 1\n"
    )
    _, info = cell_payload(code, {"pairs": []})
    assert info.incidental == {
        "time": "import",
        "os": "import",
        "pi": "import",
        "i": "loop variable",
        "j": "loop variable",
    }


# -- function payloads ------------------------------------------------------------------------


def test_function_payload_round_trip():
    data = function_payload(double, (21,), {})
    loaded = load_payload(data)
    assert loaded["fn"](*loaded["args"], **loaded["kwargs"]) == 42


def test_an_importable_function_travels_by_name_through_the_c_pickler():
    data = dumps({"fn": double, "args": (1,)})
    assert b"dill" not in data  # nothing of dill's reconstructors: plain pickle by name
    assert pickle.loads(data)["fn"] is double


def test_what_lives_in_main_travels_by_value_through_dill(monkeypatch):
    """As in a kernel, whose `__main__` holds the notebook's functions and classes: the worker
    has another `__main__`, so by name they would not load there."""
    namespace = {"__name__": "__main__"}
    exec("class Point:\n    x = 3\ndef triple(p):\n    return 3 * p.x", namespace)
    fn, cls = namespace["triple"], namespace["Point"]
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "triple", fn, raising=False)
    monkeypatch.setattr(main, "Point", cls, raising=False)
    data = dumps({"fn": fn, "args": (cls(),)})
    monkeypatch.delattr(main, "triple")
    monkeypatch.delattr(main, "Point")
    loaded = dill.loads(data)
    assert loaded["fn"](*loaded["args"]) == 9


def test_a_cached_function_of_main_travels_by_value(monkeypatch):
    """`functools.cache` wraps a notebook function in an object that pickles by name."""
    namespace = {"__name__": "__main__"}
    exec("import functools\n@functools.cache\ndef square(n):\n    return n * n", namespace)
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "square", namespace["square"], raising=False)
    data = dumps({"fn": namespace["square"], "args": (7,)})
    monkeypatch.delattr(main, "square")  # the worker's __main__ has no `square`
    loaded = dill.loads(data)
    assert loaded["fn"](*loaded["args"]) == 49


def test_function_payload_takes_only_referenced_globals():
    big = list(range(100_000))
    namespace = {"big": big, "factor": 3}
    exec("def scale(x):\n    return x * factor", namespace)
    data = function_payload(namespace["scale"], (2,), {})
    assert len(data) < 5_000  # `big` stayed home
    loaded = dill.loads(data)
    assert loaded["fn"](*loaded["args"]) == 6


def test_function_payload_names_the_bad_arguments():
    server = socket.socket()
    try:
        with pytest.raises(PayloadError) as caught:
            function_payload(double, (1, (i for i in range(2))), {"sock": server, "ok": 1})
    finally:
        server.close()
    message = str(caught.value)
    assert "argument 1 (generator) cannot be sent to the job" in message
    assert "keyword argument 'sock' (socket.socket) cannot be sent to the job" in message
    assert "argument 0" not in message and "'ok'" not in message


def test_function_payload_names_an_unpicklable_function():
    lock = threading.Lock()
    gen = (i for i in range(2))

    def closure() -> object:
        return gen, lock

    with pytest.raises(PayloadError, match=r"the function '.*closure' .* cannot be sent"):
        function_payload(closure, (), {})


def test_function_payload_needs_a_callable():
    with pytest.raises(PayloadError, match="needs a callable"):
        function_payload(42, (), {})


def test_load_payload_refuses_non_dicts():
    with pytest.raises(TypeError, match="not a dict"):
        load_payload(dill.dumps([1, 2]))


def test_a_local_module_travels_by_name_not_by_value(tmp_path, monkeypatch):
    """dill would copy a module living outside sys.prefix by value, and choke on its globals."""
    (tmp_path / "mylocalmod.py").write_text(
        "import struct\nPACK = struct.Struct('i')\nMARK = 'only-in-the-module'\n"
        "def double(x):\n    return 2 * x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import mylocalmod

    def uses_it(x):
        return mylocalmod.double(x) + mylocalmod.PACK.size

    data = dumps(uses_it)
    assert b"only-in-the-module" not in data  # the module's namespace is not inside
    assert dill.loads(data)(3) == 10


def test_variables_named_only_inside_strings_are_sent_when_they_can_be():
    namespace = {
        "df": 1,
        "thr": 2,
        "x": 3,
        "df1": 4,
        "rows": (i for i in range(3)),  # a guess that cannot be sent is left behind
        "json": json,  # a module named in a string is not a variable
    }
    code = (
        "r = df.query('v > @thr')\n"
        "z = numexpr.evaluate('x > 0.5')\n"
        "w = eval('df1')\n"
        "print('rows of json')\n"
    )
    _, info = cell_payload(code, namespace)
    assert info.names == ["df", "thr", "x", "df1"]
    assert info.modules == {}


def test_numpy_views_of_a_variable_sent_along_stay_views_of_it() -> None:
    import numpy as np

    base = np.zeros(6)
    grid = np.arange(9.0).reshape(3, 3)  # itself a view of an unnamed array of its size
    big = np.zeros(1000)
    sent = {
        "base": base, "window": base[1:4], "reversed": base[::-1], "grid": grid, "t": grid.T,
        "diag": np.diagonal(grid), "slice_of_big": big[:2],
    }  # fmt: skip
    back = dill.loads(dumps(sent, together=sent.values()))
    assert back["window"].base is back["base"] and back["reversed"].base is back["base"]
    back["window"][:] = 7
    assert back["base"].tolist() == [0, 7, 7, 7, 0, 0] and back["reversed"][4] == 7
    back["t"][0, 1] = 100
    assert back["grid"][1, 0] == 100 and not back["diag"].flags.writeable
    assert back["slice_of_big"].base is None  # a copy: the big array is not worth sending
    assert dill.loads(dumps(sent))["window"].base is None  # only when asked


def test_an_enum_class_of_the_notebook_arrives_with_its_members_and_methods(tmp_path) -> None:
    # dill alone sends such a class by name, which the worker cannot find in its __main__
    script = tmp_path / "notebook.py"
    script.write_text(
        "import enum, sys\n"
        "from jupyter_jobs.payload import dumps\n"
        "class Colour(enum.Enum):\n"
        "    RED = 1\n"
        "    GREEN = 2\n"
        "    CRIMSON = 1\n"
        "    def warm(self):\n"
        "        return self is Colour.RED\n"
        "class Level(enum.IntEnum):\n"
        "    LOW = enum.auto()\n"
        "    HIGH = enum.auto()\n"
        "class Coordinate(bytes, enum.Enum):\n"
        "    def __new__(cls, value, label):\n"
        "        obj = bytes.__new__(cls, [value])\n"
        "        obj._value_, obj.label = value, label\n"
        "        return obj\n"
        "    PX = (0, 'P.X')\n"
        "sent = {'favourite': Colour.GREEN, 'Colour': Colour, 'h': Level.HIGH}\n"
        "if sys.argv[1:] == ['coordinate']:\n"
        "    sent = {'c': Coordinate.PX}\n"
        "sys.stdout.buffer.write(dumps(sent))\n"
    )
    data = subprocess.run([sys.executable, str(script)], capture_output=True, check=True).stdout
    sent = dill.loads(data)
    colour = sent["Colour"]
    assert sent["favourite"] is colour.GREEN and colour.CRIMSON is colour.RED
    assert colour.RED.warm() and not colour.GREEN.warm()
    assert [m.name for m in colour] == ["RED", "GREEN"] and colour.__module__ == "__main__"
    assert sent["h"] + 1 == 3 and type(sent["h"]).__name__ == "Level"
    run = [sys.executable, str(script), "coordinate"]
    data = subprocess.run(run, capture_output=True, check=True).stdout
    with pytest.raises(TypeError, match="Coordinate defined in the notebook cannot be made again"):
        dill.loads(data)
