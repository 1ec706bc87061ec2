"""The rules for putting a cell job's names back: nothing the user rebound is overwritten."""

from __future__ import annotations

import gc
import weakref

import dill
import numpy as np
import pandas as pd

from jupyter_jobs import payload
from jupyter_jobs.kernel.namespace import KEEP_BYTES, Snapshot, merge


def result(values: dict, unsent: dict | None = None) -> dict:
    return {"values": values, "assigned": list(values), "changed": [], "unsent": unsent or {}}


def test_names_untouched_since_submit_are_set():
    data = [1, 2]
    ns = {"data": data}
    snap = Snapshot.take(ns, ["data", "total"])
    report = merge(ns, snap, result({"data": [1, 2, 3], "total": 6}))
    assert ns == {"data": [1, 2, 3], "total": 6}
    assert report.set == ["data", "total"]
    assert report.kept == {}


def test_a_reassigned_name_keeps_the_users_value():
    ns = {"x": [0]}
    snap = Snapshot.take(ns, ["x"])
    ns["x"] = [0]  # equal but a new object: the user ran `x = [0]` again
    report = merge(ns, snap, result({"x": "job"}))
    assert ns["x"] == [0] and ns["x"] != "job"
    assert report.kept == {"x": "was reassigned since submit"}
    assert report.set == []


def test_a_name_created_or_deleted_since_submit_is_left_alone():
    ns = {"gone": 1}
    snap = Snapshot.take(ns, ["gone", "fresh"])
    del ns["gone"]
    ns["fresh"] = "mine"
    report = merge(ns, snap, result({"gone": 2, "fresh": "job"}))
    assert ns == {"fresh": "mine"}
    assert report.kept == {
        "gone": "was deleted since submit",
        "fresh": "was created since submit",
    }


def test_names_nobody_predicted_are_set_only_where_nothing_is_bound():
    ns = {"present": 1}
    snap = Snapshot.take(ns, [])
    report = merge(ns, snap, result({"present": 2, "absent": 3}))
    assert ns == {"present": 1, "absent": 3}
    assert report.set == ["absent"]
    assert "present" in report.kept


def test_return_selects_names_and_reports_the_ones_never_assigned():
    ns: dict = {}
    snap = Snapshot.take(ns, ["a", "b"])
    report = merge(
        ns,
        snap,
        result({"a": 1, "b": 2}, unsent={"c": "cannot pickle", "d": "cannot pickle"}),
        wanted=["a", "c", "zzz"],
    )
    assert ns == {"a": 1}
    assert report.set == ["a"]
    assert report.unsent == {"c": "cannot pickle"}
    assert report.missing == ["zzz"]


def test_unsent_names_are_reported_with_their_reason():
    ns: dict = {}
    snap = Snapshot.take(ns, ["conn"])
    report = merge(ns, snap, result({}, unsent={"conn": "sqlite3.Connection cannot be sent"}))
    assert "conn" not in ns
    assert report.unsent == {"conn": "sqlite3.Connection cannot be sent"}
    assert report.to_json()["unsent"] == {"conn": "sqlite3.Connection cannot be sent"}
    assert not report.empty


def test_a_name_already_bound_to_the_jobs_very_object_is_no_conflict():
    import json

    ns: dict = {}
    snap = Snapshot.take(ns, ["json"])
    ns["json"] = json  # the user imported it too; the job sends back the same module
    report = merge(ns, snap, result({"json": json}))
    assert report.set == ["json"] and report.kept == {}


def test_imports_and_loop_variables_are_set_and_reported_as_no_results():
    import json
    import os.path

    ns: dict = {}
    snap = Snapshot.take(ns, ["json", "i", "total", "join", "f"])

    def f() -> None: ...

    f.__module__ = "__main__"  # as a function the cell defined comes back
    values = {"json": json, "i": 9, "total": 45, "join": os.path.join, "f": f}
    report = merge(ns, snap, result(values), incidental={"i": "loop variable"})
    assert report.set == ["json", "i", "total", "join", "f"]
    assert report.incidental == {"json": "import", "i": "loop variable", "join": "import"}
    assert ns["i"] == 9 and ns["json"] is json


def test_attach_sets_only_the_names_free_in_this_kernel():
    ns = {"x": 1}
    snap = Snapshot.take(ns, [], moment="attach")
    ns["fresh"] = 3
    report = merge(ns, snap, result({"x": "job", "fresh": "job", "new": "job"}))
    assert report.kept == {"x": "was already bound at attach", "fresh": "was created since attach"}
    assert report.set == ["new"]
    assert ns == {"x": 1, "fresh": 3, "new": "job"}


def _back(value: dict) -> dict:
    """A job's result as the kernel receives it: pickled by the worker, loaded here."""
    return dill.loads(payload.dumps(value, together=value.get("values", {}).values()))


def test_a_list_changed_in_place_stays_the_object_every_alias_holds():
    items = [1, 2, 3]
    ns = {"items": items, "same": items, "nested": {"values": items}}
    snap = Snapshot.take(ns, ["items"])
    moved = _back({"values": {"items": [1, 2, 3, 4]}, "mutated": ["items"]})
    report = merge(ns, snap, moved)
    assert ns["items"] is items and ns["same"] is items and ns["nested"]["values"] is items
    assert items == [1, 2, 3, 4] and report.set == ["items"] and report.separated == {}


def test_a_container_changed_with_its_element_keeps_holding_the_notebooks_element():
    items = [1]
    nested = {"values": items}
    ns = {"items": items, "nested": nested}
    snap = Snapshot.take(ns, ["items", "nested"])
    sent = dill.loads(payload.dumps(ns))  # what the worker got: one pickle, one list
    sent["nested"]["values"].append(2)
    sent["nested"]["extra"] = 0
    moved = _back({"values": sent, "mutated": ["items", "nested"]})
    merge(ns, snap, moved)
    assert ns["nested"] is nested and nested["values"] is items and items == [1, 2]
    assert nested["extra"] == 0


def test_an_array_changed_in_place_shows_through_the_notebooks_views():
    x2 = np.arange(16).reshape(4, 4)
    ns = {"x2": x2, "sub": x2[:2, :2]}
    snap = Snapshot.take(ns, ["x2"])
    changed = x2.copy()
    changed[0, 0] = 99
    merge(ns, snap, _back({"values": {"x2": changed}, "mutated": ["x2"]}))
    assert ns["x2"] is x2 and ns["sub"][0, 0] == 99


def test_a_view_changed_alone_writes_through_to_the_array_it_views():
    x2 = np.arange(16).reshape(4, 4)
    sub = x2[:2, :2]
    ns = {"x2": x2, "sub": sub}
    snap = Snapshot.take(ns, ["sub"])
    changed = sub.copy()
    changed[1, 1] = -5
    merge(ns, snap, _back({"values": {"sub": changed}, "mutated": ["sub"]}))
    assert ns["sub"] is sub and x2[1, 1] == -5


def test_objects_take_the_jobs_state_pandas_and_plain_classes_alike():
    class Model:
        def __init__(self) -> None:
            self.fitted = False

    frame, model = pd.DataFrame({"a": [1, 2]}), Model()
    ns = {"frame": frame, "alias": frame, "model": model, "models": [model]}
    snap = Snapshot.take(ns, ["frame", "model"])
    new_frame, new_model = frame.copy(), Model()
    new_frame["b"] = new_frame["a"] * 2
    new_model.fitted = True
    result = {"values": {"frame": new_frame, "model": new_model}, "mutated": ["frame", "model"]}
    merge(ns, snap, result)
    assert ns["alias"] is frame and list(frame.columns) == ["a", "b"]
    assert ns["models"][0] is model and model.fitted


def test_a_name_bound_anew_leaves_its_aliases_with_the_old_object_as_inline():
    items = [1]
    ns = {"items": items, "same": items}
    snap = Snapshot.take(ns, ["items"])
    merge(ns, snap, {"values": {"items": [1, 2]}, "mutated": []})
    assert ns["same"] is items and items == [1] and ns["items"] == [1, 2]


def test_what_cannot_change_in_place_takes_its_aliases_along_and_names_views_left_behind():
    x2 = np.arange(4.0)
    ns = {"x2": x2, "same": x2, "half": x2[:2]}
    snap = Snapshot.take(ns, ["x2"])
    grown = np.arange(6.0)  # a shape the old array cannot take
    report = merge(ns, snap, {"values": {"x2": grown}, "mutated": ["x2"]})
    assert ns["x2"] is grown and ns["same"] is grown
    assert list(report.separated) == ["half"] and "'x2'" in report.separated["half"]


def test_a_snapshot_keeps_no_variable_alive_that_allows_a_weak_reference():
    """`del` frees an array the job was sent, as inline; the name then counts as deleted, and
    a new array the name holds (freed memory is reused: maybe at the same id) as reassigned."""
    ns = {"x": np.ones(4), "y": np.ones(4)}
    snap = Snapshot.take(ns, ["x", "y"])
    alive = weakref.ref(ns["x"])
    del ns["x"]
    ns["y"] = np.ones(4)
    gc.collect()
    assert alive() is None
    snap.release()  # as after a failed run: what it knows stays known
    report = merge(ns, snap, result({"x": "job", "y": "job"}))
    assert report.kept == {"x": "was deleted since submit", "y": "was reassigned since submit"}


def test_a_released_snapshot_forgets_big_values_without_weak_references_and_keeps_small_ones():
    """After a run that ended without success (waiting for a Retry), a dict of arrays is not
    kept alive: the Retry then cannot tell the user's change from the job's and keeps the
    user's value. Small plain values are kept, and tracked as before."""
    big = {"x": np.ones(KEEP_BYTES)}
    ns = {"big": big, "small": [1, 2], "n": 3, "data": np.ones(4)}
    snap = Snapshot.take(ns, ["big", "small", "n", "data", "new"])
    alive = weakref.ref(big["x"])
    snap.release()
    del big, ns["big"]
    gc.collect()
    assert alive() is None
    ns["big"] = {}
    report = merge(ns, snap, result({n: "job" for n in ("big", "small", "n", "data", "new")}))
    assert report.set == ["small", "n", "data", "new"]
    assert report.kept == {
        "big": "may have been reassigned since submit (too big to follow after its run ended)"
    }


def test_names_set_by_a_cell_it_ran_after_are_followed_by_a_released_snapshot():
    ns = {"a": [0]}
    snap = Snapshot.take(ns, ["a"])
    snap.release()
    before = snap.bound(ns)
    ns["a"] = np.zeros(3)  # the first cell's value came in
    snap.follow(ns, before, ["a"])
    report = merge(ns, snap, result({"a": "job"}))
    assert report.set == ["a"] and ns["a"] == "job"
