"""The doorbell with real unix sockets and real processes."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import jupyter_jobs
from jupyter_jobs.doorbell import Doorbell

from waiting import wait_until

REPO = Path(jupyter_jobs.__file__).resolve().parent.parent

LISTENER = """
import sys
from jupyter_jobs.doorbell import Doorbell
with Doorbell(sys.argv[1]).listen() as listener:
    print("ready", flush=True)
    for _ in range(2):
        print("woken" if listener.wait(60) else "timeout", flush=True)
"""


@pytest.fixture
def bell(tmp_path: Path):
    b = Doorbell(tmp_path / "bells")
    yield b
    b.close()


@pytest.fixture
def ringer(bell: Doorbell):
    """Another doorbell on the folder, as another store has: a doorbell skips its own listeners."""
    b = Doorbell(bell.directory)
    yield b
    b.close()


def test_ring_without_listeners_is_a_no_op(bell: Doorbell) -> None:
    assert bell.ring() == 0
    assert stat.S_IMODE(bell.directory.stat().st_mode) == 0o700


def test_a_ring_wakes_a_listener_once(bell: Doorbell, ringer: Doorbell) -> None:
    with bell.listen() as listener:
        assert listener.wait(0) is False
        assert ringer.ring() == 1
        assert ringer.ring() == 1
        assert listener.wait(10) is True
        assert listener.wait(0) is False  # wait consumed both pending rings
        ringer.ring()
        assert listener.drain() == 1
        assert listener.drain() == 0


def test_every_listener_is_woken(bell: Doorbell, ringer: Doorbell) -> None:
    listeners = [bell.listen() for _ in range(3)]
    assert ringer.ring() == 3
    assert all(listener.wait(10) for listener in listeners)
    for listener in listeners:
        listener.close()
    assert list(bell.socket_dir.iterdir()) == []


def test_close_removes_the_socket_and_is_idempotent(bell: Doorbell) -> None:
    listener = bell.listen()
    assert listener.path.exists()
    assert stat.S_ISSOCK(listener.path.stat().st_mode)
    assert stat.S_IMODE(listener.path.stat().st_mode) == 0o600
    listener.close()
    listener.close()
    assert not listener.path.exists()
    with pytest.raises(ValueError):
        listener.fileno()


def test_sockets_of_dead_listeners_are_removed(bell: Doorbell, ringer: Doorbell) -> None:
    assert bell.socket_dir is not None
    stale = bell.socket_dir / "12345-dead.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(stale))
    sock.close()  # the file stays, nobody receives: like a listener killed with -9
    with bell.listen() as alive:
        assert ringer.ring() == 1
        assert not stale.exists()
        assert alive.wait(10)


def test_a_full_buffer_does_not_block_the_ringer(bell: Doorbell, ringer: Doorbell) -> None:
    with bell.listen() as listener:
        for _ in range(5000):
            assert ringer.ring() == 1
        assert listener.wait(10)
        assert listener.wait(0) is False


def test_long_folder_paths_work(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "bells"
    bell, ringer = Doorbell(deep), Doorbell(deep)
    assert bell.socket_dir == ringer.socket_dir != deep  # a short folder both find
    assert bell.socket_dir is not None and bell.socket_dir.stat().st_mode & 0o777 == 0o700
    with bell.listen() as listener:
        assert listener.path is not None and len(os.fsencode(listener.path)) < 100
        assert listener.path.exists()
        assert ringer.ring() == 1
        assert listener.wait(10)
    bell.close()
    ringer.close()


def test_a_ring_wakes_a_listener_in_another_process(bell: Doorbell) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER, str(bell.directory)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert bell.ring() == 1
        assert proc.stdout.readline().strip() == "woken"
        assert bell.ring() == 1
        assert proc.stdout.readline().strip() == "woken"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    wait_until(lambda: not list(bell.socket_dir.iterdir()), timeout=10)
    assert bell.ring() == 0


def test_a_doorbell_never_rings_its_own_listeners(tmp_path):
    mine = Doorbell(tmp_path / "bells")
    other = Doorbell(tmp_path / "bells")
    with mine.listen() as listener:
        assert mine.ring() == 0  # its store's subscription tells that listener already
        assert listener.drain() == 0
        assert other.ring() == 1
        assert listener.wait(5) is True


async def test_a_listener_on_the_loop_calls_back_after_rings_until_closed(bell, ringer):
    import asyncio

    loop = asyncio.get_running_loop()
    listener = bell.listen()
    rung = asyncio.Event()
    listener.on_loop(loop, rung.set)
    ringer.ring()
    await asyncio.wait_for(rung.wait(), 30)
    fd = listener.fileno()
    listener.close()
    assert not loop.remove_reader(fd)  # close() took it off the loop already
