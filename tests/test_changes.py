"""Which shipped variables a cell changed (changes.py), told from hashes, not from copies."""

from __future__ import annotations

import collections
import io

import numpy as np

from jupyter_jobs import buffers, changes
from jupyter_jobs.payload import dumps_framed

BIG = buffers.THRESHOLD // 8


def test_a_change_in_place_is_told_from_the_same_content_in_another_object():
    sent = {
        "array": np.zeros(BIG),
        "items": [1, 2],
        "table": {"a": [1]},
        "counts": collections.Counter("ab"),
    }
    shipped = changes.Fingerprints(sent, ())
    assert not any(shipped.changed(name, value) for name, value in sent.items())
    sent["array"][5] = 1.0
    sent["items"].append(3)
    sent["table"]["a"].append(2)
    assert shipped.changed("array", sent["array"])
    assert shipped.changed("items", sent["items"])
    assert shipped.changed("table", sent["table"])
    assert not shipped.changed("counts", collections.Counter("ab"))  # the same pickle: unchanged


def test_an_array_as_it_arrived_is_not_hashed_again(monkeypatch):
    big = np.arange(BIG * 2, dtype=np.float64)
    joined = bytes(dumps_framed({"big": big}))
    received = buffers.receive(io.BytesIO(joined), len(joined), hashed=True)
    (arr,) = received.arrays
    hashed: list[int] = []
    original = buffers.digest

    def digest(parts):
        parts = list(parts)
        hashed.extend(len(p) for p in parts)
        return original(parts)

    monkeypatch.setattr(buffers, "digest", digest)
    shipped = changes.Fingerprints({"big": arr}, (), received.origins)
    assert arr.nbytes not in hashed  # its digest from the arrival stood in
    assert not shipped.changed("big", arr)  # after the cell: hashed where it lies
    assert arr.nbytes in hashed
    arr[0] = -1
    assert shipped.changed("big", arr)


def test_an_array_mapped_from_its_file_is_compared_with_it_never_hashed(monkeypatch, tmp_path):
    joined = bytes(dumps_framed({"big": np.arange(BIG * 2, dtype=np.float64)}))
    (tmp_path / "payload").write_bytes(joined)
    received = buffers.map_file(str(tmp_path / "payload"), len(joined))
    (arr,) = received.arrays
    monkeypatch.setattr(buffers.Digest, "matches", None)  # would fail if it were used
    hashed: list[int] = []
    original = buffers.digest
    monkeypatch.setattr(buffers, "digest", lambda parts: hashed.append(1) or original(parts))
    shipped = changes.Fingerprints({"big": arr}, (), received.origins)
    assert not shipped.changed("big", arr)
    arr[-1] = 0.5
    assert shipped.changed("big", arr)
    assert len(hashed) == 3  # the small head and pickle only: once before, twice after


def test_a_value_that_cannot_change_in_place_is_not_pickled_while_it_is_the_same(monkeypatch):
    sent = {"n": 10**30, "word": "text", "pair": (1, ("a", b"b")), "items": [1]}
    shipped = changes.Fingerprints(sent, ())
    pickled: list[object] = []
    original = changes.payloads.dumps_framed

    def dumps(value, *args, **kwargs):
        pickled.append(value)
        return original(value, *args, **kwargs)

    monkeypatch.setattr(changes.payloads, "dumps_framed", dumps)
    assert not any(shipped.changed(name, sent[name]) for name in ("n", "word", "pair"))
    assert pickled == []
    assert not shipped.changed("pair", (1, ("a", b"b")))  # bound anew to an equal value
    assert shipped.changed("n", 10**30 + 1)  # bound anew (by `exec` or `globals()`)
    assert shipped.changed("items", [1, 2])


def test_only_atoms_and_small_tuples_of_them_count_as_unchangeable():
    assert all(
        map(changes.unchangeable, [1, 2.5, "s", b"b", None, True, (1, ("a",)), frozenset({1})])
    )
    assert not changes.unchangeable((1, [2]))  # holds a list, which can change
    assert not changes.unchangeable(("x",) * 2000)  # too wide to look into: compared
    assert not changes.unchangeable(np.float64(1.0))  # not an exact atom: compared


def test_a_value_that_cannot_be_pickled_counts_as_unchanged():
    numbers = (i for i in range(3))  # a generator: dill refuses it
    shipped = changes.Fingerprints({"numbers": numbers, "items": [1]}, ())
    assert changes.take(numbers).pickled is None
    next(numbers)
    assert not shipped.changed("numbers", numbers)
    assert shipped.changed("items", [1, (i for i in range(3))])  # now it cannot: a change
