"""Measuring another checkout beside this one: a benchmark script runs itself again in a child
process that imports jupyter_jobs from that checkout, and prints both side by side."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any


def results_in(checkout: str, script: str, *args: str) -> Any:
    """What `script *args --json` prints, run with `checkout` first on the import path (the
    script's own folder stays first, so helpers such as this one come from here)."""
    out = subprocess.run(
        [sys.executable, script, *args, "--json"],
        env={**os.environ, "PYTHONPATH": checkout},
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return json.loads(out)


def print_columns(runs: dict[str, dict[str, float]], digits: int = 3, width: int = 36) -> None:
    """One line per measure of the first run, one column per run ("-" where a run lacks it)."""
    print(f"{'':<{width}}" + "".join(f"{label:>12}" for label in runs))
    for name in next(iter(runs.values())):
        cells = "".join(
            f"{runs[label][name]:>12.{digits}f}" if name in runs[label] else f"{'-':>12}"
            for label in runs
        )
        print(f"{name:<{width}}{cells}")


def jobs_arguments(description: str) -> argparse.Namespace:
    """`--jobs N`, `--main CHECKOUT` and `--json` (what the child run prints)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--main", help="a checkout to compare with (its jupyter_jobs)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args()


def runs_by_jobs(
    script: str, run: Callable[[int], dict[str, float]], args: argparse.Namespace
) -> dict[str, dict[str, float]] | None:
    """`run(args.jobs)` here, then in `args.main` if given, by label; None for a child run
    (`--json`), which has printed its results for its parent."""
    found = {"this": run(args.jobs)}
    if args.json:
        print(json.dumps(found["this"]))
        return None
    if args.main:
        found["main"] = results_in(args.main, script, "--jobs", str(args.jobs))
    return found
