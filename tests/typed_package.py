"""A package of job types, installed into a temporary folder the way pip would install it: the
module and a `.dist-info` whose `entry_points.txt` declares the `jupyter_jobs.types` group, so
`importlib.metadata` finds the types once the folder is on `sys.path` (or PYTHONPATH, for
servers and workers).

    folder = typed_package.install(tmp_path)
    monkeypatch.syspath_prepend(str(folder))                       # this process
    monkeypatch.setenv("PYTHONPATH", typed_package.pythonpath(folder))   # workers

Each process that imports the module appends its pid to the file named by $MLTYPES_IMPORTS.
Types: `train` (a schema, progress, a log line, a JSON result and a summary), `explain` (a
result that is not JSON: a tuple and a set travel as a pickle), `crash` (raises), `noisy` (its
summarize fails: the job still succeeds), and `broken` (its module does not exist).
"""

from __future__ import annotations

import os
from pathlib import Path

MODULE = "mltypes"

SOURCE = '''\
"""Job types of a small ML app (a test package)."""

import os

import jupyter_jobs

if os.environ.get("MLTYPES_IMPORTS"):  # who imports it: the server must never
    with open(os.environ["MLTYPES_IMPORTS"], "a") as imports:
        imports.write(f"{os.getpid()}\\n")

TRAIN_SCHEMA = {
    "type": "object",
    "properties": {
        "epochs": {"type": "integer", "minimum": 1, "maximum": 50, "default": 3},
        "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.1},
        "model": {"type": "string", "enum": ["linear", "tree"], "default": "linear"},
    },
    "required": ["epochs"],
    "additionalProperties": False,
}


def summarize_training(job):
    return {"accuracy": job.result["accuracy"], "epochs": job.parameters["epochs"]}


@jupyter_jobs.job_type(
    schema=TRAIN_SCHEMA, summarize=summarize_training, description="Train a model."
)
def train(epochs, lr=0.1, model="linear"):
    for epoch in range(1, epochs + 1):
        jupyter_jobs.progress(epoch, epochs, f"epoch {epoch}")
    print(f"trained a {model} model for {epochs} epochs", flush=True)
    return {"accuracy": round(1 - 1 / (epochs + 1), 4), "lr": lr, "model": model}


def explain(rows: int = 2):
    """Feature importances (a tuple and a set: not JSON)."""
    return (rows, {"a", "b"})


def crash(message: str):
    raise ValueError(message)


def bad_summary(job):
    return {1, 2, 3}


@jupyter_jobs.job_type(summarize=bad_summary)
def noisy():
    return "done"
'''

ENTRY_POINTS = f"""\
[jupyter_jobs.types]
train = {MODULE}:train
explain = {MODULE}:explain
crash = {MODULE}:crash
noisy = {MODULE}:noisy
broken = {MODULE}_missing:run
"""

METADATA = f"""\
Metadata-Version: 2.1
Name: {MODULE}
Version: 1.0
"""


def install(base: Path) -> Path:
    """Write the package under `base/site`; returns that folder (put it on the path)."""
    site = base / "site"
    (site / MODULE).mkdir(parents=True)
    (site / MODULE / "__init__.py").write_text(SOURCE)
    info = site / f"{MODULE}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(METADATA)
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def pythonpath(site: Path) -> str:
    """PYTHONPATH with `site` first, the rest as it is now."""
    return os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
