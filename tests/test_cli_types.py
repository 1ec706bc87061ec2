"""`jupyter jobs types` and `jupyter jobs run-type` on a real store, with the installed types of
a package in a temporary folder, a type registered through `JobQueue`, and a consumer serving
the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_jobs import cli
from jupyter_jobs.store import Store

import jobfuncs

pytestmark = pytest.mark.usefixtures("installed")


def run(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--db", str(db)])
    out, err = capsys.readouterr()
    return code, out, err


def test_types_lists_installed_and_registered_types_and_shows_one(queue, db_path, capsys):
    queue.register_type(jobfuncs.add, "adder", description="Adds two numbers.")
    code, out, _ = run(capsys, db_path, "types")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert lines["train"].split()[1:4] == ["installed", "yes", "Train"]
    assert lines["adder"].split()[1:3] == ["registered", "-"]
    assert "cannot be loaded: job type 'broken'" in lines["broken"]
    code, out, _ = run(capsys, db_path, "types", "train")
    assert code == 0 and "entry point: mltypes:train" in out and '"maximum": 50' in out
    code, out, _ = run(capsys, db_path, "types", "--json")
    names = [t["name"] for t in json.loads(out)["types"]]
    assert names == sorted(names) and {"adder", "train"} <= set(names)
    code, out, _ = run(capsys, db_path, "types", "adder", "--delete")
    assert (code, out) == (0, "deleted adder\n")
    code, _, err = run(capsys, db_path, "types", "adder", "--json")
    assert code == 2 and json.loads(err)["type"] == "JobTypeNotFound"


def test_run_type_takes_parameters_as_run_does_and_waits(queue, db_path, capsys):
    code, out, _ = run(
        capsys, db_path, "run-type", "train", "-p", "epochs", "4", "-p", "model", "tree", "--wait"
    )
    assert code == 0
    assert out.splitlines()[0].endswith("'train': succeeded")
    assert out.splitlines()[1] == 'summary: {"accuracy": 0.8, "epochs": 4}'
    code, out, _ = run(capsys, db_path, "show", out.split()[1])
    assert 'type      train {"epochs": 4, "model": "tree"}' in out
    code, _, err = run(capsys, db_path, "run-type", "train", "-p", "epochs", "x", "--json")
    error = json.loads(err)
    assert code == 1 and error["detail"]["parameters"] == {
        "parameters.epochs": "'x' is not of type 'integer'"
    }
    code, out, _ = run(capsys, db_path, "run-type", "crash", "-p", "message", "no", "--wait")
    assert code == 1 and "no" in out


def test_schedule_add_takes_a_type_with_parameters_and_a_channel(db_path, capsys, tmp_path):
    Store(db_path).close()
    code, out, err = run(
        capsys, db_path, "schedule", "add", "--type", "train", "-p", "epochs", "4",
        "--every", "3600", "--channel", "nightly", "--retries", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    assert made["target"] == {"kind": "typed", "type": "train", "parameters": {"epochs": 4}}
    assert made["job"] == {"retries": 1, "channel": "nightly"} and made["name"] == "train"
    code, out, _ = run(capsys, db_path, "schedule", "show", str(made["id"]))
    assert "target:   job type train" in out and "channel:  nightly" in out
    # refused by name, at once, before anything is stored
    code, _, err = run(
        capsys, db_path, "schedule", "add", "--type", "train", "-p", "epochs", "0",
        "--every", "3600", "--json",
    )  # fmt: skip
    assert code == 1 and json.loads(err)["detail"]["parameters"] == {
        "parameters.epochs": "0 is less than the minimum of 1"
    }
    notebook = tmp_path / "n.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    for argv, message in [
        (["--every", "3600"], "a NOTEBOOK or --type TYPE"),
        ([str(notebook), "--type", "train", "--every", "3600"], "a NOTEBOOK or --type TYPE"),
        (["--type", "train", "--kernel", "python3", "--every", "3600"], "--kernel is for"),
        (["--type", "trian", "--every", "3600"], "no job type named 'trian'"),
    ]:
        code, out, err = run(capsys, db_path, "schedule", "add", *argv)
        assert code != 0 and message in err and "Traceback" not in err, err
    code, out, _ = run(capsys, db_path, "schedule", "list", "--json")
    assert [s["id"] for s in json.loads(out)["schedules"]] == [made["id"]]


def test_list_takes_a_type(queue, db_path, capsys):
    train = queue.submit_typed("train", {"epochs": 1}, hold=True)
    queue.submit_typed("explain", hold=True)
    queue.submit(jobfuncs.add, 1, 2, hold=True)
    code, out, _ = run(capsys, db_path, "list", "--type", "train", "--json")
    listed = json.loads(out)
    assert code == 0 and [j["id"] for j in listed["jobs"]] == [train.id]
    assert listed["counts"]["pending"] == 1
    code, out, _ = run(capsys, db_path, "list", "--type", "train")
    assert code == 0 and "train" in out and "explain" not in out
