"""The rules for putting a cell job's names back: nothing the user rebound is overwritten."""

from __future__ import annotations

from jupyter_jobs.kernel.namespace import Snapshot, merge


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
