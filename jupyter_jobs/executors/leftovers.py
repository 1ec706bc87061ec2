"""What the local executor's jobs run, written down, so that the next start ends what a killed
server left behind.

A worker ends its job's processes when its server dies (runner.py watches its parent), but a
worker killed together with its server (the OOM killer, a container's stop) cannot. So each
executor keeps one file, named after its own process (pid and create time), listing every
process it has seen in its workers' trees with its create time; at start, an executor ends the
processes listed by files whose owner is gone, and only those whose pid still belongs to the
process that was seen (`oslayer.process_alive` with its create time): a recycled pid is never
killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import psutil

from .. import oslayer
from ..workspace import write_private

log = logging.getLogger(__name__)


def own_file(folder: Path) -> Path:
    """This process's file in `folder`: `<pid>-<create time>.json`."""
    started = oslayer.process_start_time(os.getpid()) or 0.0
    return folder / f"{os.getpid()}-{started:.3f}.json"


def record(path: Path, processes: list[psutil.Process]) -> None:
    """Write the processes (pid, create time) to `path`, replacing what it held."""
    seen = []
    for process in processes:
        with contextlib.suppress(psutil.Error, OSError):
            seen.append([process.pid, process.create_time()])
    oslayer.make_private_dir(path.parent)
    fresh = path.with_name(path.name + ".tmp")
    write_private(fresh, json.dumps(seen).encode())
    os.replace(fresh, path)


def end_left_over(folder: Path) -> int:
    """End the processes recorded by executors that are gone; returns how many were ended."""
    ended = 0
    with contextlib.suppress(FileNotFoundError):
        for path in folder.glob("*-*.json"):
            pid, _, started = path.stem.partition("-")
            with contextlib.suppress(ValueError):
                if oslayer.process_alive(int(pid), float(started)):
                    continue  # a live executor's: its own business
            ended += _end_listed(path)
            path.unlink(missing_ok=True)
    return ended


def _end_listed(path: Path) -> int:
    try:
        listed = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("jupyter_jobs: cannot read the process list %s: %s", path, exc)
        return 0
    ended = 0
    for pid, started in listed:
        # Only a process whose create time can be read and is the one recorded ("cannot tell"
        # means alive to process_alive, hence the first check).
        if oslayer.process_start_time(pid) is None or not oslayer.process_alive(pid, started):
            continue
        with contextlib.suppress(psutil.Error, OSError):
            psutil.Process(pid).kill()
            ended += 1
    if ended:
        log.warning("jupyter_jobs: ended %d processes a killed server's jobs left running", ended)
    return ended
