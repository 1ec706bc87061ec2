"""`jupyter jobs schedule ...` on a real store file: add, list, show, pause, resume, rm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_jobs import cli
from jupyter_jobs.store import Store


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


def test_an_unknown_schedule_is_exit_2(db_path, capsysbinary):
    Store(db_path).close()
    code, _, err = run(capsysbinary, db_path, "schedule", "show", "42")
    assert code == 2 and "no schedule with id 42" in err
