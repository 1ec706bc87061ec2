"""Who is submitting: the notebook a kernel belongs to, which becomes the owner of its jobs,
and the kernel process itself, which its cell jobs name.

`%jobs` and `jj.jobs()` show "this notebook's jobs" by this owner, and the sidebar groups by it.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from traitlets.config import MultipleInstanceError


def owner(user_ns: Mapping[str, Any] | None = None) -> str:
    """The notebook path when known, else `kernel:<kernel id>` (else `process:<host>:<pid>`).

    A kernel started by Jupyter for a notebook gets `JPY_SESSION_NAME` (the notebook's path);
    ipykernel copies it to `__session__`, which VS Code sets too.
    """
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        return name
    session = (user_ns or {}).get("__session__")
    if isinstance(session, str) and session:
        return session
    kid = kernel_id()
    if kid:
        return f"kernel:{kid}"
    return f"process:{socket.gethostname()}:{os.getpid()}"


@functools.cache
def kernel_id() -> str | None:
    """The id in this kernel's connection file name (`kernel-<id>.json`), None outside a kernel.

    Cached: it never changes in a process, and a script's every submit asks for it.
    """
    try:
        from ipykernel.connect import get_connection_file

        path = Path(get_connection_file())
    except (ImportError, RuntimeError, AttributeError, MultipleInstanceError):
        # Not inside an ipykernel. In a terminal IPython the application singleton is
        # IPython's own: ipykernel sees "an app" and asking it for a kernel app fails.
        return None
    stem = path.stem
    return stem[len("kernel-") :] if stem.startswith("kernel-") else stem


#: This kernel process, as its cell jobs name it: a worker that ran one of its cells may run its
#: next ones (the executor keeps it for them). A restarted kernel is another process.
PROCESS = uuid.uuid4().hex
