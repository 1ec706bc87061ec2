"""The README's second command, checked: `jupyter lab NOTEBOOK` serves JupyterLab with both halves
of jupyter_jobs from the current environment.

Starts the command as a user would (plus a port, a token and no browser), waits for it with a
deadline, then asks it for what a browser would need: the jobs REST API (the server extension is
loaded and its consumer runs), the page for the notebook, and the sidebar's code listed in that
page's config and served. Always stops the server it started. Run by `.ci/check_install.sh`.

    python .ci/check_lab.py notebooks/getting-started.ipynb
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

LABEXTENSION = "jupyter-jobs"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str) -> tuple[int, bytes]:
    """Status and body of an authenticated GET; (0, b"") while nothing listens yet."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_ready(server: subprocess.Popen[bytes], base: str, token: str) -> None:
    """Until the jobs API answers 200; fails if the server exits or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"jupyter lab exited with code {server.returncode} before it served")
        status, _ = get(base + "jobs/api/capabilities", token)
        if status == 200:
            return
        time.sleep(0.5)
    raise SystemExit(f"jupyter lab did not answer {base}jobs/api/capabilities in {START_TIMEOUT}s")


def page_config(html: str) -> dict[str, Any]:
    found = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S
    )
    if found is None:
        raise SystemExit("the JupyterLab page has no jupyter-config-data")
    return json.loads(found.group(1))


def check_lab(base: str, token: str, notebook: str) -> None:
    """The notebook's page lists the sidebar's code, and that code is served."""
    status, body = get(f"{base}lab/tree/{notebook}", token)
    if status != 200:
        raise SystemExit(f"GET lab/tree/{notebook}: HTTP {status}")
    extensions = page_config(body.decode())["federated_extensions"]
    ours = [e for e in extensions if e["name"] == LABEXTENSION]
    if not ours:
        names = [e["name"] for e in extensions]
        raise SystemExit(f"{LABEXTENSION} is not among JupyterLab's extensions: {names}")
    entry = f"{base}lab/extensions/{LABEXTENSION}/{ours[0]['load']}"
    status, _ = get(entry, token)
    if status != 200:
        raise SystemExit(f"GET {entry}: HTTP {status}")


def main(notebook: str) -> None:
    port, token = free_port(), secrets.token_hex(16)
    command = [
        "jupyter",
        "lab",
        notebook,
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # as the README says to add as root
    server = subprocess.Popen(command)
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_ready(server, base, token)
        check_lab(base, token, notebook)
    finally:
        server.terminate()
        try:
            server.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(f"jupyter lab {notebook}: served, with the jobs API and the {LABEXTENSION} sidebar")


if __name__ == "__main__":
    main(sys.argv[1])
