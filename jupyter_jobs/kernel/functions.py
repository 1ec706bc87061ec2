"""How a kernel sends the functions its jobs share (`shared.py`): once per request, and not at
all once the server has them.

A group of jobs calling one function (a `map`, or submits of one function that the submitter
batched) goes as one `POST /jobs/batch` whose items name the function by sha256 and carry only
their arguments. The function's bytes ride once in the body's `functions`, base64; a large
one (over `UPLOAD_OVER` bytes) is asked about first (`GET /functions/{sha256}`) and, if the
server has not got it, uploaded on its own as raw bytes (`PUT`), so that megabytes go neither
as base64 nor twice. The functions the server has (as far as this connection knows) are sent
by name only; one freed meanwhile (its jobs were deleted) comes back as `FunctionNotFound`,
and the batch goes once more with its bytes. Items carry idempotency keys (`client.py`), so a
batch sent again stores each job once.

A job alone whose arguments are large goes as a multipart `POST /jobs`, as any large payload
does (its big arrays sent from their own memory, buffers.py), with a part naming its function,
which is uploaded first unless the server has it (`named`).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import errors
from ..buffers import Framed
from ..models import Job as JobRecord
from ..models import JobSpec
from ..shared import Function, Payload, SharedPayload, functions_in

if TYPE_CHECKING:
    from .client import Client

#: Functions larger than this are uploaded raw on their own (when the server lacks them).
UPLOAD_OVER = 256 * 2**10

T = TypeVar("T")


class FunctionSender:
    """Sends batches whose jobs name shared functions, over one `Client`; remembers which
    functions the server has."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._stored: set[str] = set()
        self._lock = threading.Lock()

    def store(self, items: Sequence[tuple[JobSpec, Payload]]) -> list[JobRecord]:
        """Store `items` in one batch; sent once more, with its functions' bytes, when the
        server freed one that it had."""
        functions = functions_in(payload for _, payload in items)
        for attempt in (0, 1):
            body = self._body(items, functions)
            try:
                data = self.client.json("POST", "jobs/batch", body)
            except errors.FunctionNotFound as exc:
                missing = (exc.detail or {}).get("sha256") or []
                if attempt or not self._forget(missing):
                    raise
                continue
            with self._lock:
                self._stored.update(f.sha256 for f in functions)
            return [JobRecord.from_json(j) for j in data["jobs"]]
        raise AssertionError("unreachable")

    def named(self, function: Function, send: Callable[[], T]) -> T:
        """`send()` a request that names `function` by its sha256 alone, once the server has
        it (uploaded first unless it had it already); once more, uploaded again, if the server
        freed it meanwhile."""
        for attempt in (0, 1):
            if not self._known(function.sha256):
                self._upload(function)
            try:
                return send()
            except errors.FunctionNotFound:
                if attempt or not self._forget([function.sha256]):
                    raise
        raise AssertionError("unreachable")

    def _body(
        self, items: Sequence[tuple[JobSpec, Payload]], functions: list[Function]
    ) -> dict[str, Any]:
        inline = {}
        for function in functions:
            if self._known(function.sha256) or function.data is None:
                continue
            if len(function.data) > UPLOAD_OVER:
                self._upload(function)
            else:
                inline[function.sha256] = _b64(function.data)
        body: dict[str, Any] = {"items": [_item(spec, payload) for spec, payload in items]}
        if inline:
            body["functions"] = inline
        return body

    def _upload(self, function: Function) -> None:
        """Make sure the server has a function: ask (when it is large), and send it raw if it
        has not."""
        data = function.data or b""
        asked = None
        if len(data) > UPLOAD_OVER:
            asked = self.client.request("GET", f"functions/{function.sha256}", expect=(404,))
        if asked is None or asked.status == 404:
            self.client.request(
                "PUT",
                f"functions/{function.sha256}",
                body=function.data,
                content_type="application/octet-stream",
            )
        with self._lock:
            self._stored.add(function.sha256)

    def _known(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._stored

    def _forget(self, sha256s: list[Any]) -> bool:
        """Forget that the server had these; whether it was thought to have any of them."""
        with self._lock:
            known = [h for h in sha256s if h in self._stored]
            self._stored.difference_update(known)
        return bool(known)


def _item(spec: JobSpec, payload: Payload) -> dict[str, Any]:
    if isinstance(payload, SharedPayload):
        data = payload.arguments
        return {"spec": spec.to_json(), "payload": _b64(data), "function": payload.function.sha256}
    return {"spec": spec.to_json(), "payload": _b64(payload)}


def _b64(data: bytes | Framed) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")
