"""Fixtures shared by every test: real store files in a temp dir, bounded waits."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import typed_package


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh database path in a private temp dir."""
    return tmp_path / "jobs" / "jobs.db"


@pytest.fixture
def queue(db_path: Path) -> Iterator[object]:
    """A JobQueue on a fresh database with a 2-worker consumer running in this process."""
    from jupyter_jobs import JobQueue

    q = JobQueue(db_path)
    q.start_consumer(max_workers=2, progress_interval=0.2, kill_grace=2.0)
    yield q
    q.close()


TESTS_DIR = Path(__file__).parent


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Never touch the real ~/.local/share/jupyter; let workers import `jobfuncs`.

    Job functions live in tests/jobfuncs.py because dill sends functions of importable modules by
    reference: the worker processes must be able to import that module too.
    """
    base = tmp_path_factory.mktemp("jupyter")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(base / "runtime"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(base / "config"))
    monkeypatch.delenv("JUPYTER_JOBS_DB", raising=False)
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS_DIR), path) if p))


class _ConsumerErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(self.format(record))


@pytest.fixture(autouse=True)
def _consumer_logs_no_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """An in-process consumer that fails a tick logs it and carries on a second later, so a
    test would still pass, only slower: fail it instead. A test that breaks something on
    purpose says so with the `expect_consumer_errors` mark."""
    if request.node.get_closest_marker("expect_consumer_errors"):
        yield
        return
    handler = _ConsumerErrors()
    logger = logging.getLogger("jupyter_jobs.consumer")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, "the consumer logged errors:\n" + "\n".join(handler.messages)


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test package of job types (`typed_package`) on this process's path and its
    workers'."""
    site = typed_package.install(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", typed_package.pythonpath(site))
    return site
