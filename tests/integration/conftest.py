"""Fixtures that start real Jupyter servers; the machinery lives in `servers.py`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers import TEST_CONFIG, JupyterHome, RunningServer, ServerFactory


@pytest.fixture
def jupyter_server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """`start(home=None, app="server"|"lab"|"notebook", config=None, args=(), env=None,
    ready=True, replacing=None)`.

    Starts a server (in a fresh JupyterHome unless given one) and waits until it is ready;
    `replacing` a stopped one, on its port with its token. Every server it started is stopped
    at teardown.
    """
    started: list[RunningServer] = []

    def start(
        home: JupyterHome | None = None,
        app: str = "server",
        config: dict[str, Any] | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        ready: bool = True,
        replacing: RunningServer | None = None,
    ) -> RunningServer:
        home = home or JupyterHome.create(tmp_path / f"home{len(started)}")
        server = RunningServer(home, app, config, args, env, replacing)
        started.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in started:
        server.close()
    for server in started:
        server.assert_consumer_never_failed()


#: Small and quick: two workers, progress every 0.2 s, kills after 2 s.


@pytest.fixture
def jupyter_server(jupyter_server_factory: ServerFactory) -> RunningServer:
    """A ready `jupyter server` with jupyter_jobs (TEST_CONFIG), for this test alone."""
    return jupyter_server_factory(config=TEST_CONFIG)


@pytest.fixture(scope="module")
def shared_jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One ready `jupyter server` (TEST_CONFIG) for a whole test module: cheaper, for tests
    that do not need the queue to themselves."""
    server = RunningServer(
        JupyterHome.create(tmp_path_factory.mktemp("shared")), config=TEST_CONFIG
    )
    try:
        yield server.wait_ready()
    finally:
        server.close()
    server.assert_consumer_never_failed()


@pytest.fixture
def jupyter_lab(jupyter_server_factory: ServerFactory) -> RunningServer:
    """The same as `jupyter_server`, started as `jupyter lab` (JupyterLab UI at `url + "lab"`)."""
    return jupyter_server_factory(app="lab", config=TEST_CONFIG)
