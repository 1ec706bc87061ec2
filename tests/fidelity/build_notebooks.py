"""Build the fidelity notebooks from their sources: `python tests/fidelity/build_notebooks.py`.

Each `sources/NAME.cells` holds one notebook's code cells, each after a line
`# %% CATEGORY` that names the item of issue 11 the cell exercises (`setup` for the first
cell, `ordinary` for the realistic cells that exercise nothing in particular), optionally
followed by the cell's `%%job` options in the jobs run (`# %% chains --out load_job`; the
default is `--wait`): chained cells run in the background and `--after` each other. Plain text
files, not `.py`: they hold magics, `!` commands and deliberate syntax errors. The built
notebooks are checked in (`notebooks/NAME.ipynb`); `test_fidelity.py` checks they match.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
NOTEBOOKS = HERE / "notebooks"
MARKER = re.compile(r"^# %% (\w+)(?: (--.+))?$")


def parse(text: str) -> list[tuple[str, str | None, str]]:
    """(category, `%%job` options or None, source) of each cell, in order."""
    cells: list[tuple[str, str | None, list[str]]] = []
    for line in text.splitlines():
        found = MARKER.match(line)
        if found:
            cells.append((found.group(1), found.group(2), []))
        elif cells:
            cells[-1][2].append(line)
        elif line.strip():
            raise ValueError(f"text before the first '# %% CATEGORY' line: {line!r}")
    return [(category, job, "\n".join(lines).strip("\n")) for category, job, lines in cells]


def build(source: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for category, job, code in parse(source.read_text()):
        fidelity = {"category": category} if job is None else {"category": category, "job": job}
        cell = nbformat.v4.new_code_cell(code, metadata={"fidelity": fidelity})
        cell.pop("id", None)  # stable files: no random cell ids
        nb.cells.append(cell)
    nb.nbformat_minor = 4  # the last minor version without mandatory cell ids
    return nb


def sources() -> list[Path]:
    return sorted(SOURCES.glob("*.cells"))


def main() -> None:
    NOTEBOOKS.mkdir(exist_ok=True)
    for source in sources():
        target = NOTEBOOKS / f"{source.stem}.ipynb"
        nbformat.write(build(source), target)
        print(f"{target.relative_to(HERE)}: {len(build(source).cells)} cells")


if __name__ == "__main__":
    main()
