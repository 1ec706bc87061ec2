"""Schemathesis hooks for test_server_openapi (loaded through SCHEMATHESIS_HOOKS).

A long poll (`wait=` on /results and /result) on a held job waits its whole time, up to 300 s:
valid, but it would only make the run slow. Valid waits are shortened; invalid ones are left as
they are, for the server to refuse. Schedules' timing rules, and stored functions' names, are
below.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import zoneinfo
from typing import Any

import schemathesis
from croniter import croniter

from jupyter_jobs.schedules import MAX_EVERY, MIN_EVERY

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
    """A valid `every` (a value out of its bounds stays, for the server to refuse)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and MIN_EVERY <= value <= MAX_EVERY


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


# Functions stored once: bytes must come under their own sha256, and a batch's `functions` must
# each be named by an item, rules OpenAPI cannot state (the server's 400 names them). A
# generated upload, or batch function, of the right shape is named by its bytes' sha256 (and one
# no item names is dropped), so that schema-valid cases are stored; other shapes are left for
# the server to refuse.
SHA256 = re.compile(r"[0-9a-f]{64}")


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    """(A case hook: every phase applies it, the coverage phase no body hook.)"""
    if ctx.operation.path == "/jobs/api/jobs/batch" and isinstance(case.body, dict):
        _name_functions_by_their_bytes(case.body)
    name = (case.path_parameters or {}).get("sha256")
    upload = ctx.operation.path.startswith("/jobs/api/functions/") and case.method == "PUT"
    if upload and isinstance(name, str) and SHA256.fullmatch(name):
        data = getattr(case.body, "data", case.body)  # a binary body comes wrapped
        data = data.encode() if isinstance(data, str) else data
        data = data if isinstance(data, bytes) else b""  # none: an empty body is sent
        case.path_parameters["sha256"] = hashlib.sha256(data).hexdigest()
    return case


def _name_functions_by_their_bytes(body: dict[str, Any]) -> None:
    functions, items = body.get("functions"), body.get("items")
    if not isinstance(functions, dict) or not isinstance(items, list):
        return
    renamed: dict[str, Any] = {}
    for name, text in functions.items():
        try:
            data = base64.b64decode(text, validate=True)
        except (TypeError, ValueError, binascii.Error):
            return
        if not SHA256.fullmatch(name) or not data:  # not valid: the server refuses it
            return
        renamed[hashlib.sha256(data).hexdigest()] = text
    naming = [
        item
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("function"), str)
        and SHA256.fullmatch(item["function"])
    ]
    for item, digest in zip(naming, renamed, strict=False):
        item["function"] = digest
    named = {item["function"] for item in naming}
    body["functions"] = {k: v for k, v in renamed.items() if k in named}
