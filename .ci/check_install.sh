#!/usr/bin/env bash
# The README's first command on a fresh machine: in a fresh virtualenv and a clean copy of this
# tree (tracked and new files, nothing ignored: no node_modules, no built labextension),
#   pip install ".[lab,examples]" && jupyter lab notebooks/getting-started.ipynb
# must build and install everything, change no tracked file, give working `jupyter lab` and
# `jupyter notebook` with both halves of the extension enabled, and run every example notebook
# with nothing more than a test runner added. Then the sdist built from that tree must install
# with no npm on PATH (it carries the built labextension), and its wheel hold what it should.
# Any failure exits non-zero. Run by .ci/run; alone: bash .ci/check_install.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1

work=$(mktemp -d "${TMPDIR:-/tmp}/jupyter_jobs-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/src venv=$work/venv dist=$work/dist
mkdir -p "$src" "$dist"

# Only the install under test: nothing from the caller's Python or Jupyter setup leaks in.
unset PYTHONPATH PYTHONHOME JUPYTER_PATH JUPYTER_CONFIG_PATH JUPYTER_TOKEN \
    JUPYTER_JOBS_URL JUPYTER_JOBS_TOKEN JUPYTER_JOBS_DB
export JUPYTER_CONFIG_DIR=$work/home/config JUPYTER_DATA_DIR=$work/home/data \
    JUPYTER_RUNTIME_DIR=$work/home/runtime

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'check_install: %s\n' "$*" >&2; exit 1; }
plain() { sed 's/\x1b\[[0-9;]*m//g'; }  # without the listings' colours

# Both halves enabled and valid in the environment on PATH.
check_extensions() {
    local server lab
    server=$(jupyter server extension list 2>&1 | plain)
    lab=$(jupyter labextension list 2>&1 | plain)
    grep -Eq '^ *jupyter_jobs enabled$' <<<"$server" || fail "server extension not enabled: $server"
    grep -Eq '^ *jupyter_jobs [0-9.]+ OK$' <<<"$server" || fail "server extension invalid: $server"
    grep -Eq '^ *jupyter-jobs v[0-9.]+ enabled OK \(python, jupyter_jobs\)$' <<<"$lab" ||
        fail "labextension not installed and enabled: $lab"
    echo "jupyter_jobs: server extension and labextension enabled"
}

step "a clean copy of the tree, as git would check it out"
git -C "$repo" ls-files -z --cached --others --exclude-standard |
    (cd "$repo" && tar -c --null --ignore-failed-read -T -) | tar -x -C "$src"
# Its own index, to see afterwards what the install changed.
git -C "$src" init -q && git -C "$src" add -A

step "a fresh virtualenv"
"${PYTHON:-python3}" -m venv "$venv"
export VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH
hash -r

step "pip install \".[lab,examples]\"  (the README's first command)"
(cd "$src" && pip install -q ".[lab,examples]")
changed=$(git -C "$src" diff --name-only; git -C "$src" ls-files --others --exclude-standard)
[ -z "$changed" ] || fail "the install changed files of the tree: $changed"
shared=$venv/share/jupyter/labextensions/jupyter-jobs
[ -z "$(find "$shared" -name '*.orig')" ] || fail "stray files installed: $(find "$shared" -name '*.orig')"
python - <<'EOF'
from importlib.metadata import distribution

dist = distribution("jupyter_jobs")
assert dist.metadata["License-Expression"] == "BSD-3-Clause", dist.metadata["License-Expression"]
assert any(f.name == "LICENSE" for f in dist.files), "no LICENSE in the installed metadata"
EOF

step "jupyter lab and jupyter notebook, with both halves of the extension"
jupyter lab --version
jupyter notebook --version
check_extensions
(cd "$src" && python "$repo/.ci/check_lab.py" notebooks/getting-started.ipynb)

step "every example notebook runs after that install alone (plus a test runner)"
pip install -q "pytest>=8" pytest-timeout "pytest-asyncio>=0.23"
# pytest exits non-zero, 5 included (nothing collected), and that fails this script.
(cd "$src" && pytest -p no:cacheprovider -q -ra tests/integration/test_notebooks.py)

step "the sdist installs without npm"
pip install -q build
python -m build -q --sdist --outdir "$dist" "$src"
sdist=$(echo "$dist"/*.tar.gz)
# PATH holds the venv alone: no node, no npm (the build would fail if it tried to run them).
env PATH="$venv/bin" /bin/sh -c '! command -v npm >/dev/null' || fail "npm is still on PATH"
env PATH="$venv/bin" pip wheel -q --no-deps --wheel-dir "$dist" "$sdist"
wheel=$(echo "$dist"/*.whl)
python - "$wheel" <<'EOF'
import sys
import zipfile
from pathlib import Path

names = zipfile.ZipFile(sys.argv[1]).namelist()
name_version = "-".join(Path(sys.argv[1]).name.split("-")[:2])
data = f"{name_version}.data/data/"
shared = data + "share/jupyter/labextensions/jupyter-jobs/"
needed = [
    shared + "package.json",
    shared + "install.json",
    shared + "static/style.js",
    shared + "schemas/jupyter-jobs/plugin.json",
    data + "etc/jupyter/jupyter_server_config.d/jupyter_jobs.json",
    f"{name_version}.dist-info/licenses/LICENSE",
]
missing = [n for n in needed if n not in names]
stray = [n for n in names if n.endswith(".orig")]
assert not missing and not stray, f"wheel: missing {missing}, stray {stray}"
assert any(n.startswith(shared + "static/remoteEntry.") for n in names), "wheel: no remoteEntry"
EOF
pip install -q --force-reinstall --no-deps "$wheel"
check_extensions

step "install checks passed"
