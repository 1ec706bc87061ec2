"""Fidelity of `%%job --wait` (issue 11): the share of cells that show the same thing run as a
job as run plainly, per category and per notebook, and every difference.

Run on demand: `python benchmarks/fidelity.py [--notebook NAME ...]` (NAME: a notebook of
tests/fidelity/notebooks/, without `.ipynb`; all of them by default). The harness,
`tests/fidelity/notebook_fidelity.py`, is the one `tests/fidelity/test_fidelity.py` uses; it
starts one real `jupyter server` with the extension and runs each notebook twice plainly and once
as `%%job --wait` cells, with nbclient. Exit status 1 below the test's threshold.

Measured on main at 0c21a16 (2 shared cores, about 3 minutes): 32.4%, 106 of 327 cells the
same. With issue 11's work (2026-12-04): 98.8%, 331 of 335 the same, no unstable cell; the four
that differ are listed in the README ("A `%%job` cell behaves like the same cell run inline").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fidelity"))

import notebook_fidelity as fidelity  # noqa: E402  (the test suite's harness)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", action="append", default=[], metavar="NAME")
    args = parser.parse_args()
    paths = [fidelity.NOTEBOOKS / f"{name}.ipynb" for name in args.notebook]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    with (
        tempfile.TemporaryDirectory(prefix="fidelity-") as tmp,
        fidelity.fidelity_server(Path(tmp)) as server,
    ):
        report = fidelity.run_suite(server, Path(tmp) / "runs", paths)
    print(report.summary(), end="\n\n")
    print(report.table("category"), end="\n\n")
    print(report.table("notebook"), end="\n\n")
    print(report.kinds(), end="\n\n")
    print("Differing cells (plain != job):")
    print(report.differences() or "none")
    if report.unstable:
        print("\nUnstable cells (the two plain runs differ; left out):")
        for c in report.unstable:
            print(f"{c.where}: {c.plain.difference(c.again)}")
    return 0 if report.share >= fidelity.THRESHOLD else 1


if __name__ == "__main__":
    sys.exit(main())
