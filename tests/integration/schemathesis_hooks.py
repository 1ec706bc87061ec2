"""Schemathesis hooks for test_server_openapi (loaded through SCHEMATHESIS_HOOKS).

A long poll (`wait=` on /results and /result) on a held job waits its whole time, up to 300 s:
valid, but it would only make the run slow. Valid waits are shortened; invalid ones are left as
they are, for the server to refuse. Schedules' timing rules are below.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

import schemathesis
from croniter import croniter

SHORT_WAIT = 0.2
ZONES = zoneinfo.available_timezones()


@schemathesis.hook
def map_query(ctx: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    wait = (query or {}).get("wait")
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > SHORT_WAIT:
        query["wait"] = SHORT_WAIT
    if query is not None and ctx.operation.path.endswith("/schedules/preview"):
        _fix_timing(query, fill=True)
    return query


# Schedules: a cron expression, a timezone and "exactly one of cron/every" have rules OpenAPI
# cannot state (openapi.yaml states their shape; the server's 400 names the rule). A generated
# value of the right shape that breaks such a rule is replaced by a valid one, so that
# schema-valid cases reach the schedule logic; values of the wrong shape are left for the
# server to refuse. A notebook path becomes the notebook the test put in the server's root, a
# typed target's job type the type the test registered (its schema takes any parameters).
NOTEBOOK = "scheduled.ipynb"
JOB_TYPE = "scheduled_type"
CRON_SHAPE = re.compile(r"\S+( \S+){4}")
ZONE_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")


def _is_every(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 60


def _fix_timing(data: dict[str, Any], fill: bool) -> None:
    cron, zone = data.get("cron"), data.get("timezone")
    if isinstance(cron, str) and CRON_SHAPE.fullmatch(cron) and not croniter.is_valid(cron):
        data["cron"] = "0 8 * * 1-5"
    if isinstance(cron, str) and CRON_SHAPE.fullmatch(cron) and _never(data["cron"]):
        data["cron"] = "0 8 * * 1-5"
    if isinstance(zone, str) and ZONE_SHAPE.fullmatch(zone) and zone not in ZONES:
        data["timezone"] = "UTC"
    if isinstance(data.get("cron"), str) and _is_every(data.get("every")):
        del data["every"]  # both: keep the cron
    if fill and data.get("cron") is None and data.get("every") is None:
        data["every"] = 3600
    if not fill:  # a PATCH: a null alone would leave the schedule with neither
        for key in ("cron", "every"):
            if key in data and data[key] is None:
                del data[key]


def _never(cron: str) -> bool:
    try:
        croniter(cron).get_next(float)
    except Exception:
        return True
    return False


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    if not ctx.operation.path.startswith("/jobs/api/schedules") or not isinstance(body, dict):
        return body
    _fix_timing(body, fill=ctx.operation.method.upper() == "POST")
    target = body.get("target")
    if isinstance(target, dict) and isinstance(target.get("path"), str) and target["path"]:
        target["path"] = NOTEBOOK
    if isinstance(target, dict) and target.get("kind") == "typed" and "type" in target:
        target["type"] = JOB_TYPE
    return body
