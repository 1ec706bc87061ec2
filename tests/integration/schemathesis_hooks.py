"""Schemathesis hooks for test_server_openapi (loaded through SCHEMATHESIS_HOOKS).

A long poll (`wait=` on /results and /result) on a held job waits its whole time, up to 300 s:
valid, but it would only make the run slow. Valid waits are shortened; invalid ones are left as
they are, for the server to refuse.
"""

from __future__ import annotations

from typing import Any

import schemathesis

SHORT_WAIT = 0.2


@schemathesis.hook
def map_query(ctx: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    wait = (query or {}).get("wait")
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > SHORT_WAIT:
        query["wait"] = SHORT_WAIT
    return query
