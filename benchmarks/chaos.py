"""Chaos run: many short jobs through random kill -9s of workers, consumers and a Jupyter server.

Run on demand (not a test):
`python benchmarks/chaos.py [--jobs 1000] [--kills 26] [--server-kills 2] [--seed 1]`.
The suite runs the short version (tests/test_engine_robustness.py); this one is the long run
behind the README's reliability claims. It prints how many jobs ended how, whether any attempt's
code completed twice or a succeeded job lacks the run that succeeded, and how soon the jobs of a
killed consumer were labelled after the next one started.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = str(REPO / "tests")
sys.path.insert(0, TESTS)
# The jobs are the suite's `jobfuncs`: the consumers' workers import them from there too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))

from consumers import kill_loop  # noqa: E402  (the suite's kill loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=26)
    parser.add_argument("--server-kills", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jupyter_jobs-chaos-") as tmp:
        db, folder = Path(tmp) / "jobs.db", Path(tmp)
        report = kill_loop(db, folder, args.jobs, args.kills, args.seed, args.server_kills)
    ended = Counter(r.status.value for r in report.not_succeeded)
    ended["succeeded"] = args.jobs - len(report.not_succeeded)
    labels = report.label_seconds or [float("nan")]
    rows = [
        ("jobs", args.jobs),
        ("kill -9 of a worker", report.kills["worker"]),
        ("kill -9 of the consumer", report.kills["consumer"]),
        ("kill -9 of a Jupyter server (restarted)", report.kills["server"]),
        *((f"ended {status}", n) for status, n in sorted(ended.items())),
        ("lost (never ended)", args.jobs - sum(ended.values())),
        ("attempts whose code completed twice", len(report.attempts_completed_twice)),
        ("succeeded without their run", len(report.succeeded_without_their_run)),
        ("labelled after restart, median s", f"{statistics.median(labels):.2f}"),
        ("labelled after restart, max s", f"{max(labels):.2f}"),
        ("wall time s", f"{report.seconds:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
