"""Who owns a kernel's jobs: the notebook path when known, else the kernel, else the process."""

from __future__ import annotations

import os
import socket

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
