"""Task functions for the peers, importable by Huey's consumer and Dask's workers by name."""

from __future__ import annotations

import os

try:
    from huey import SqliteHuey
except ImportError:  # only the Huey rows need it
    SqliteHuey = None

MB = 2**20


def noop() -> None:
    return None


def noop_item(_: object) -> None:
    return None


def blob() -> bytes:
    return b"x" * MB


if SqliteHuey is not None and os.environ.get("BENCH_HUEY_DB"):
    # store_none: our no-op returns None, and Huey drops None results by default.
    huey = SqliteHuey(filename=os.environ["BENCH_HUEY_DB"], results=True, store_none=True)
    huey_noop = huey.task()(noop)
    huey_noop_item = huey.task()(noop_item)
    huey_blob = huey.task()(blob)
