"""Who owns a kernel's jobs: the notebook path when known, else the kernel, else the process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from jupyter_jobs.kernel.session import kernel_id, owner


def test_the_session_name_from_the_server_wins(monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/analysis.ipynb")
    assert owner({"__session__": "other.ipynb"}) == "/home/me/analysis.ipynb"


def test_the_session_in_the_namespace_is_next(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert owner({"__session__": "/work/vscode.ipynb"}) == "/work/vscode.ipynb"
    assert owner({"__session__": ""}) != ""


def test_outside_a_kernel_the_process_is_the_owner(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert kernel_id() is None
    assert owner() == f"process:{socket.gethostname()}:{os.getpid()}"


def test_in_a_terminal_ipython_the_process_is_the_owner():
    # TerminalIPythonApp is the application singleton there; ipykernel mistakes it for a
    # kernel's app and refuses it (MultipleInstanceError). A fresh process: the singleton
    # must not leak into this one.
    script = (
        "import os, socket\n"
        "from IPython.terminal.ipapp import TerminalIPythonApp\n"
        "from jupyter_jobs.kernel.session import kernel_id, owner\n"
        "TerminalIPythonApp.instance()\n"
        "assert kernel_id() is None\n"
        "print(owner() == f'process:{socket.gethostname()}:{os.getpid()}')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
