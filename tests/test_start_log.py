"""The start log on real files, with owners that are real processes, alive or gone."""

from __future__ import annotations

import json
import shutil
import socket
import stat
from pathlib import Path

import pytest

from jupyter_jobs import start_log
from jupyter_jobs.start_log import Recorder, StartLog

from store_driver import by_dead_owner


def edit_owner(folder: Path, **changes) -> None:
    path = folder / start_log.OWNER
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_the_starts_of_a_gone_owner_are_known(tmp_path):
    log = by_dead_owner(tmp_path / "log", (1, 1), (2, 3))
    assert start_log.started(log.folder) == {(1, 1), (2, 3)}


def test_a_log_whose_owner_lives_is_not_trusted(tmp_path):
    log = StartLog(tmp_path / "log", "c1")
    log.create()  # owned by this very process
    assert Recorder(log.take_file(), lambda: True).begin(1, 1)
    assert start_log.started(log.folder) is None


@pytest.mark.parametrize(
    "changes",
    [{"host": "elsewhere"}, {"boot": 12.0}, {"boot": None}],
    ids=["another-host", "another-boot", "unknown-boot"],
)
def test_a_gone_owner_that_cannot_be_proven_gone_here_is_not_trusted(tmp_path, changes):
    log = by_dead_owner(tmp_path / "log", (1, 1))
    edit_owner(log.folder, **changes)
    assert start_log.started(log.folder) is None


def test_no_folder_or_no_owner_is_not_trusted(tmp_path):
    assert start_log.started(tmp_path / "missing") is None
    log = by_dead_owner(tmp_path / "log", (1, 1))
    (log.folder / start_log.OWNER).unlink()
    assert start_log.started(log.folder) is None


def test_the_folder_and_files_are_private(tmp_path):
    log = by_dead_owner(tmp_path / "log", (1, 1))
    assert stat.S_IMODE(log.folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in log.folder.iterdir()} == {0o600}
    owner = json.loads((log.folder / start_log.OWNER).read_text())
    assert owner["consumer"] == "c1" and owner["host"] == socket.gethostname()


def test_a_line_still_being_written_is_left_out(tmp_path):
    log = by_dead_owner(tmp_path / "log", (1, 1))
    (log.folder / "1").write_bytes(b"7 2\n8 1")  # its last write was cut short
    assert start_log.started(log.folder) == {(1, 1), (7, 2)}


def test_a_file_keeps_two_generations_of_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(start_log, "LIMIT", 12)  # three starts of 4 bytes ("1 1\n")
    log = by_dead_owner(tmp_path / "log")
    recorder = Recorder(log.folder / "0", lambda: True)
    for job in range(1, 9):
        recorder.begin(job, 1)
    # 1-3 went with the oldest generation; 4-6 are the old file, 7-8 the current one.
    assert start_log.started(log.folder) == {(job, 1) for job in range(4, 9)}
    assert sorted(p.name for p in log.folder.iterdir()) == ["0", "0.old", start_log.OWNER]


def test_a_gone_workers_file_is_taken_over_with_its_starts(tmp_path):
    log = by_dead_owner(tmp_path / "log")
    first, second = log.take_file(), log.take_file()
    assert first != second
    Recorder(first, lambda: True).begin(1, 1)
    log.release(first)  # its worker is gone
    again = log.take_file()
    assert again == first
    Recorder(again, lambda: True).begin(2, 1)
    assert again.read_text() == "1 1\n2 1\n"
    assert start_log.started(log.folder) == {(1, 1), (2, 1)}


def test_consumers_sharing_a_folder_keep_each_others_starts(tmp_path):
    """Two executors of one process under one consumer id, or an earlier owner's leftovers:
    creating keeps what is there, and a clean stop removes only its own files."""
    earlier = by_dead_owner(tmp_path / "log", (1, 1))
    one, two = StartLog(earlier.folder, "c1"), StartLog(earlier.folder, "c1")
    one.create()
    two.create()
    Recorder(one.take_file(), lambda: True).begin(2, 1)
    Recorder(two.take_file(), lambda: True).begin(3, 1)
    one.remove()
    kept = [p.read_text() for p in earlier.folder.iterdir() if p.name != start_log.OWNER]
    assert sorted(kept) == ["1 1\n", "3 1\n"]  # the earlier owner's and two's


def test_begin_says_whether_the_consumer_lives_after_writing_the_start(tmp_path):
    log = by_dead_owner(tmp_path / "log")
    assert not Recorder(log.take_file(), lambda: False).begin(5, 1)
    assert start_log.started(log.folder) == {(5, 1)}  # written down all the same


def test_a_start_that_cannot_be_written_raises(tmp_path):
    log = by_dead_owner(tmp_path / "log")
    shutil.rmtree(log.folder)
    with pytest.raises(OSError):
        Recorder(log.take_file(), lambda: True).begin(1, 1)


def test_sweep_removes_only_gone_owners_folders_without_claims(tmp_path):
    root = tmp_path / "starts"
    gone_idle = by_dead_owner(root / "a", consumer="idle")
    gone_holding = by_dead_owner(root / "b", consumer="holding")
    live = StartLog(root / "c", "live")
    live.create()
    start_log.sweep(root, lambda consumer: consumer == "holding")
    assert not gone_idle.folder.exists()
    assert gone_holding.folder.exists() and live.folder.exists()
    start_log.sweep(tmp_path / "missing", lambda consumer: False)  # nothing to sweep: fine
