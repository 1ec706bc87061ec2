"""`jupyter jobs schedule ...` on a real store file: add, list, show, pause, resume, rm."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import dill
import pytest

from jupyter_jobs import cli
from jupyter_jobs.models import Status
from jupyter_jobs.options import OPTIONS
from jupyter_jobs.payload import function_payload
from jupyter_jobs.schedules import JOB_OPTIONS, ScheduleSpec
from jupyter_jobs.store import Store

from waiting import wait_until


def run(capsysbinary: pytest.CaptureFixture[bytes], db: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--db", str(db)])
    out, err = capsysbinary.readouterr()
    return code, out.decode(), err.decode()


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    path = tmp_path / "report.ipynb"
    cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "n = 1",
            "outputs": [], "execution_count": None}  # fmt: skip
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))  # fmt: skip
    return path


def test_add_list_show_pause_resume_rm(db_path, notebook, capsysbinary):
    Store(db_path).close()
    code, out, err = run(
        capsysbinary, db_path, "schedule", "add", str(notebook), "--cron", "0 8 * * 1-5",
        "--timezone", "Europe/Paris", "-p", "n", "5", "-p", "who", "team", "--retries", "2",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    assert made["name"] == "report" and made["job"] == {"retries": 2}
    assert made["target"]["parameters"] == {"n": 5, "who": "team"}
    sid = str(made["id"])
    code, out, _ = run(capsysbinary, db_path, "schedule", "list")
    assert code == 0 and "report" in out and "08:00" in out and "next" in out
    code, out, _ = run(capsysbinary, db_path, "schedule", "show", sid)
    assert code == 0 and "cron 0 8 * * 1-5, Europe/Paris" in out and '"n": 5' in out
    code, out, _ = run(capsysbinary, db_path, "schedule", "pause", sid)
    assert code == 0 and "next run: paused" in out
    code, out, _ = run(capsysbinary, db_path, "schedule", "resume", sid, "--json")
    assert code == 0 and json.loads(out)["next_run"] is not None
    code, out, _ = run(capsysbinary, db_path, "schedule", "rm", sid)
    assert code == 0
    code, out, _ = run(capsysbinary, db_path, "schedule", "list")
    assert out == "no schedules\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "0 8 * *"], "cron"),
        (["--every", "5"], "every"),
        (["--cron", "0 8 * * *", "--timezone", "Moon/Base"], "timezone"),
        (["--cron", "0 8 * * *", "-p", "not-a-name", "1"], "target.parameters"),
    ],
)
def test_bad_input_is_refused_naming_the_field(db_path, notebook, capsysbinary, args, message):
    Store(db_path).close()
    code, out, err = run(capsysbinary, db_path, "schedule", "add", str(notebook), *args)
    assert code == 1 and out == "" and message in err and "Traceback" not in err


def test_every_job_option_a_schedule_passes_on_is_a_flag_spelled_as_in_options(
    db_path, notebook, capsysbinary
):
    flagged = [o for o in OPTIONS if o.name in JOB_OPTIONS and o.flag]
    assert {o.name for o in flagged} == {"priority", "timeout", "retries", "retry_delay", "channel"}
    values = {"priority": "7", "timeout": "30", "retries": "2", "retry_delay": "0.5",
              "channel": "nightly"}  # fmt: skip
    argv = [part for o in flagged for part in (o.flag, values[o.name])]
    Store(db_path).close()
    code, out, err = run(
        capsysbinary, db_path, "schedule", "add", str(notebook), "--every", "60", *argv, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["job"] == {"priority": 7, "timeout": 30.0, "retries": 2,
                                      "retry_delay": 0.5, "channel": "nightly"}  # fmt: skip
    code, _, err = run(
        capsysbinary, db_path, "schedule", "add", str(notebook), "--every", "60", "--retries", "x"
    )
    assert code == 2 and "--retries: invalid int value: 'x'" in err


def test_an_unknown_schedule_is_exit_2(db_path, capsysbinary):
    Store(db_path).close()
    code, _, err = run(capsysbinary, db_path, "schedule", "show", "42")
    assert code == 2 and "no schedule with id 42" in err


def test_a_standalone_consumer_fires_a_schedule(tmp_path):
    """`jupyter jobs consumer` runs the schedule's step too: a run appears and succeeds."""
    db, stderr = tmp_path / "jobs.db", tmp_path / "consumer.err"
    with Store(db) as store:
        spec = ScheduleSpec(target={"kind": "function", "name": "pow"}, every=60)
        # made 58 s ago: its first time is 2 s from now
        made = store.add_schedule(spec, "test", function_payload(pow, (2, 10)), at=time.time() - 58)
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_jobs.cli", "consumer", "--db", str(db),
             "--max-workers", "1"],
            stderr=err,
        )  # fmt: skip
    try:
        with Store(db) as store:
            run = wait_until(
                lambda: [j for j in store.schedule_runs(made.id).jobs if j.finished],
                timeout=60,
                what="the scheduled run finished",
            )[0]
            assert run.status is Status.SUCCEEDED, run.error
            assert dill.loads(store.result(run.id)) == 1024
            assert run.scheduled_time == made.next_run
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
