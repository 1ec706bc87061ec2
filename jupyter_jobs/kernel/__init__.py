"""What runs in the user's kernel: the HTTP client, the `jj.*` API, the magics and the widget.

Nothing here touches the store: a kernel talks to the Jupyter server over its REST API only, so
a notebook behaves the same whether the server runs next door or on another machine.
"""

from .api import cancel, delete, get, jobs, map, release, retry, submit
from .magics import load_ipython_extension

__all__ = [
    "cancel",
    "delete",
    "get",
    "jobs",
    "load_ipython_extension",
    "map",
    "release",
    "retry",
    "submit",
]
