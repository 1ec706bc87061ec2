"""Big arrays beside the pickle (buffers.py): sent as their own memory, read into their own."""

from __future__ import annotations

import hashlib
import io
import json
import struct

import dill
import numpy as np
import pytest

from jupyter_jobs import buffers
from jupyter_jobs.payload import dumps, dumps_framed, loads

BIG = buffers.THRESHOLD // 8  # float64 elements in an array that goes beside


def through(data: bytes | buffers.Framed) -> object:
    """What the other side loads after reading `data` from a stream."""
    joined = bytes(data)
    return loads(buffers.receive(io.BytesIO(joined), len(joined)))


def test_big_arrays_travel_beside_the_pickle_and_arrive_owning_their_memory():
    readonly = np.arange(BIG, dtype=np.int64)
    readonly.flags.writeable = False
    sent = {
        "c": np.random.default_rng(0).random((BIG // 4, 4)),
        "fortran": np.asfortranarray(np.arange(2 * BIG, dtype=np.float32).reshape(-1, 8)),
        "readonly": readonly,
        "dates": np.arange(BIG).astype("M8[s]"),
        "big_endian": np.arange(2 * BIG, dtype=">i4"),
        "small": np.arange(3),
        "objects": np.array([object()] * BIG),
    }
    framed = dumps_framed(sent)
    assert isinstance(framed, buffers.Framed)
    # the five big plain arrays go beside, as their own memory: never copied into the pickle
    assert len(framed.arrays) == 5 and len(framed.parts[1]) < 20_000
    views = [part for part in framed.parts if isinstance(part, memoryview)]
    assert all(
        np.shares_memory(np.asarray(v), a) for v, a in zip(views, framed.arrays, strict=True)
    )
    at = 0  # each array's bytes start aligned, so that one mapped from a file is aligned too
    for part in framed.parts:
        assert at % buffers.ALIGN == 0 or not isinstance(part, memoryview)
        at += len(part)
    back = through(framed)
    for name in ("c", "fortran", "readonly", "dates", "big_endian", "small"):
        assert np.array_equal(back[name], sent[name]), name
        assert back[name].dtype == sent[name].dtype and back[name].base is None, name
        assert back[name].flags.f_contiguous == sent[name].flags.f_contiguous, name
        assert back[name].flags.writeable == sent[name].flags.writeable, name
    assert len(back["objects"]) == BIG


def test_views_of_an_array_sent_along_stay_views_of_it():
    base = np.zeros(BIG)
    sent = {"base": base, "window": base[1:4], "reversed": base[::-1]}
    back = through(dumps_framed(sent, together=sent.values()))
    assert back["window"].base is back["base"] and back["reversed"].base is back["base"]
    back["window"][:] = 7
    assert back["base"][1] == 7 and back["reversed"][-2] == 7


def test_a_pickle_without_big_arrays_is_the_plain_pickle_it_was():
    value = {"n": 1, "small": np.arange(10), "text": "x" * 100_000}
    assert dumps_framed(value) == dumps(value)
    assert loads(dumps(value))["text"] == value["text"]


def test_a_reference_to_an_array_beside_needs_the_loader_that_has_it():
    framed = dumps_framed({"big": np.zeros(BIG)})
    with pytest.raises(buffers.FramingError, match=r"load it with jupyter_jobs\.payload\.loads"):
        dill.loads(framed.parts[1])


def test_a_framed_pickle_is_read_exactly_and_its_arrays_hashed_as_they_arrive():
    big = np.arange(BIG * 3, dtype=np.float64)
    joined = bytes(dumps_framed({"big": big}))
    stream = io.BytesIO(joined + b"the next frame")
    received = buffers.receive(stream, len(joined), hashed=True)
    assert stream.read() == b"the next frame"
    (arr,) = received.arrays
    assert received.origins == {id(arr): buffers.Digest(hashlib.sha256(big.tobytes()).digest())}
    assert loads(received)["big"] is arr  # loaded once: its own arrays, as read
    again = loads(received)["big"]  # loaded again: copies, the first objects keep theirs
    assert again is not arr and np.array_equal(again, big)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda head: head[:-2] + b"}}", "header cannot be read"),
        (lambda head: head.replace(b'"<f8"', b'"<x9"'), "unknown dtype"),
        (lambda head: head.replace(b'"C"', b'"Q"'), "cannot hold"),
        (lambda head: head.replace(b"[8192]", b"[8193]"), "add up to"),
    ],
)
def test_a_damaged_framed_pickle_is_an_error_after_all_its_bytes_are_read(damage, message):
    joined = bytes(dumps_framed({"big": np.zeros(BIG)}))
    at = len(buffers.MAGIC) + 4
    (length,) = struct.unpack("!I", joined[len(buffers.MAGIC) : at])
    header = damage(joined[at : at + length])
    assert json.loads(joined[at : at + length])  # (the header is JSON, damaged here)
    bad = buffers.MAGIC + struct.pack("!I", len(header)) + header + joined[at + length :]
    stream = io.BytesIO(bad + b"next")
    with pytest.raises(buffers.FramingError, match=message):
        buffers.receive(stream, len(bad))
    assert stream.read() == b"next"  # the stream stays in step


def test_plain_bytes_are_received_as_they_are():
    stream = io.BytesIO(b"\x80plain pickle or JSON" + b"next")
    assert buffers.receive(stream, 21) == bytearray(b"\x80plain pickle or JSON")
    assert stream.read() == b"next"


def test_a_framed_file_is_mapped_copy_on_write_and_each_array_knows_its_region(tmp_path):
    base = np.arange(BIG * 2, dtype=np.float64)
    sent = {"base": base, "window": base[10:20], "f": np.asfortranarray(np.ones((BIG // 8, 8)))}
    framed = dumps_framed(sent, together=sent.values())
    path = tmp_path / "payload"
    path.write_bytes(bytes(framed))
    received = buffers.map_file(str(path), len(framed))
    back = loads(received)
    mapped = back["base"]
    assert back["window"].base is mapped and np.array_equal(mapped, base)
    assert mapped.flags.writeable and mapped.flags.aligned and back["f"].flags.f_contiguous
    region = received.origins[id(mapped)]
    assert region.matches(mapped)
    back["window"][0] = -1  # written: a copy of that page, the file stays as it was
    assert not region.matches(mapped) and mapped[10] == -1
    assert path.read_bytes() == bytes(framed)
    assert region.matches(base)  # another object with the same bytes
    plain = tmp_path / "plain"
    plain.write_bytes(dumps({"n": 1}))
    assert loads(buffers.map_file(str(plain), plain.stat().st_size)) == {"n": 1}
