"""REST handlers under /jobs/api: parse, authorize, call the store or consumer, write JSON.

Every method is authenticated and authorized by jupyter_server (resource "jobs"), and then per
job by `access.py` (a job is its user's; others need the authorizer's yes). Errors are
mapped in one place, `JobsHandler.write_error`: a `JobsError` becomes its `http_status` with the
JSON body `{"message", "reason", "type", "detail"}` (jupyter_server's `APIHandler` shape, plus
type and detail); tornado's own HTTP errors take the same shape. While the
server stops, `prepare` answers every request 503 (`ShuttingDown`). Blocking work (SQLite, files,
large JSON and base64) runs in the app's thread pool, never on the loop.
The server never unpickles anything: result bytes are served as they were stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable, Hashable
from http.client import responses
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.iostream import StreamClosedError

from ..errors import InvalidRequest, JobsError, NotebookNotFound, ResultNotReady, error_body
from ..models import MAX_INT, Job
from . import bodies, parsing, service
from .access import AUTH_RESOURCE, JobAccess

if TYPE_CHECKING:
    from .app import JobsApp

T = TypeVar("T")

MAX_WAIT = 300.0
#: Result bytes in one `/results` answer: by default, and at most (base64 adds a third).
DEFAULT_RESULTS_BYTES = 8 * 2**20
MAX_RESULTS_BYTES = 64 * 2**20
MAX_LIST_LIMIT = 500
#: The largest id text allows (`models.ID_TEXT`: 18 digits), as openapi.yaml says.
MAX_ID = 10**18 - 1
MAX_LOG_CHUNK = 16 * 2**20
#: Bytes of a stored result read and sent at a time.
RESULT_CHUNK = 2**20
ID = r"(?P<job_id>[^/]+)"


class JobsHandler(JobAccess, ExtensionHandlerMixin, APIHandler):
    """Base of every jupyter_jobs handler: auth resource, per-job checks (`JobAccess`), JSON
    replies, the error mapping."""

    auth_resource = AUTH_RESOURCE

    @property
    def app(self) -> JobsApp:
        return self.extensionapp  # type: ignore[return-value]

    async def prepare(self) -> None:
        try:
            await super().prepare()
        except web.HTTPError as e:
            # A POST without credentials fails jupyter_server's XSRF check first (403).
            if e.status_code == 403 and self.current_user is None and self.check_host():
                raise self._unauthenticated() from None
            raise
        # While the server stops, every request gets the same 503 (errors.ShuttingDown).
        self.app.refuse_while_stopping()

    def get_login_url(self) -> str:
        # `@web.authenticated` asks this for a request without valid credentials, and
        # jupyter_server's APIHandler answers 403; HTTP and openapi.yaml say 401.
        raise self._unauthenticated()

    @staticmethod
    def _unauthenticated() -> web.HTTPError:
        """401: 403 stays for what is refused to a known user (not authorized, a cookie
        request without its XSRF token, a bad Host)."""
        return web.HTTPError(
            401, "authentication required: send the server's token as 'Authorization: token ...'"
        )

    async def read_notebook(self, path: str) -> Any:
        """The notebook at `path` through the server's contents manager (its root, its
        checks): the snapshot a notebook job runs."""
        try:
            model = await ensure_async(
                self.contents_manager.get(path, content=True, type="notebook")
            )
        except web.HTTPError as e:
            if e.status_code >= 500:
                raise
            # Missing, a folder, hidden, unreadable: in every case, no notebook there.
            why = e.log_message % e.args if e.log_message else responses.get(e.status_code, "")
            raise NotebookNotFound(f"no notebook at {path!r}: {why}", {"path": path}) from None
        except (OSError, ValueError) as e:  # a name the filesystem refuses (too long ...)
            raise NotebookNotFound(f"no notebook at {path!r}: {e}", {"path": path}) from None
        return model["content"]

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP methods this route answers (OPTIONS too: APIHandler answers CORS)."""
        unimplemented = web.RequestHandler._unimplemented_method
        return [m for m in cls.SUPPORTED_METHODS if getattr(cls, m.lower()) is not unimplemented]

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def query(self, name: str) -> str | None:
        """A query parameter's text ("" when given empty), or None when absent.

        Not stripped: " 5" is not a number, and a name with spaces is matched as sent.
        """
        return self.get_query_argument(name, None, strip=False)

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        # An expected JobsError (bad input, missing job, consumer not up yet) is one warning
        # line; only a plain 500 (a bug, or storage failing) earns a traceback.
        if isinstance(value, JobsError) and value.http_status != 500:
            self.log.warning("%d %s: %s", value.http_status, self._request_summary(), value)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place errors become HTTP responses."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json")
        # RFC 9110: a 401 carries its challenge, a 405 the methods the resource has.
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'token realm="jupyter_jobs"')
        elif status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        if isinstance(error, JobsError):
            self.set_status(error.http_status)
            body = error.to_json()
        elif isinstance(error, web.HTTPError):
            message = error.log_message % error.args if error.log_message else None
            body = error_body(
                message or responses.get(status_code, "error"), status_code, "HTTPError"
            )
        else:
            body = error_body("internal server error", status_code, "InternalError")
        self.finish(json.dumps(body))


@web.stream_request_body
class JobsListHandler(JobsHandler):
    """`GET /jobs/api/jobs` lists; `POST /jobs/api/jobs` submits one job.

    The submit body is read as it arrives (`bodies.SubmitBody`): a large payload goes straight
    to a file the job then takes, so the server never holds it whole. Who may not submit is
    refused before the body is read."""

    _body: bodies.SubmitBody | None = None
    _discarding: asyncio.Future[None] | None = None

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method == "POST":
            await self._may_submit()
            self._body = bodies.SubmitBody(
                self.request.headers.get("Content-Type", ""),
                self.app.max_payload_size,
                self.app.store.spool,
                self.app.run,
            )

    @web.authenticated
    @authorized
    async def _may_submit(self) -> None:
        """Nothing: its decorators refuse what they refuse `post`, before the body comes."""

    async def data_received(self, chunk: bytes) -> None:
        if self._body is not None:
            await self._body.feed(chunk)

    def on_connection_close(self) -> None:
        if self._body is not None:  # the client left mid-body: its spooled part goes
            self._discarding = asyncio.ensure_future(asyncio.to_thread(self._body.discard))
        super().on_connection_close()

    @web.authenticated
    @authorized
    async def get(self) -> None:
        status, limit = self.query("status"), self.query("limit")
        user = await self.listed_user()  # `mine` and `user` are checked for both listings
        job_type = parsing.job_type_filter(self.query("type"))  # a malformed one is a 400 in both
        schedule = self.query("schedule")
        if schedule is not None:  # a schedule's runs (the Schedules view's history)
            schedule_id = parsing.integer("schedule", schedule, 1, MAX_ID)
            if not await self.may_everyone("read"):  # its runs are its user's
                found = await self.app.run(self.app.store.get_schedule, schedule_id)
                await self.check_schedule(found, "read", "read the runs of")
            page = await self.app.run(
                self.app.store.schedule_runs,
                schedule_id,
                parsing.integer("limit", limit, 1, MAX_LIST_LIMIT) if limit is not None else 50,
                self.query("cursor"),
                parsing.statuses(status or ""),
            )
            self.reply(
                {
                    "jobs": [j.to_json() for j in page.jobs],
                    "next_cursor": page.next_cursor,
                    "counts": page.counts,
                }
            )
            return
        page = await self.app.run(
            self.app.store.query,
            status=parsing.statuses(status or "") or None,
            owner=self.query("owner"),
            q=self.query("q"),
            limit=parsing.integer("limit", limit, 1, MAX_LIST_LIMIT) if limit is not None else 50,
            cursor=self.query("cursor"),
            user=user,
            type=job_type,
        )
        self.reply(
            {
                "jobs": [j.to_json() for j in page.jobs],
                "next_cursor": page.next_cursor,
                "counts": page.counts,
            }
        )

    @web.authenticated
    @authorized
    async def post(self) -> None:
        assert self._body is not None  # made by `prepare`
        limit = self.app.max_payload_size
        user = self.job_user
        try:
            parse = await self._body.finish()
            answer = await self.app.run(service.submit, self.app.store, parse, user)
            if isinstance(answer, service.NamesFunctions):
                others = await self.named_functions(answer.senders)
                spec, payload = answer.items[0]
                run = self.app.run
                answer = await run(service.enqueue, self.app.store, spec, payload, user, others)
        finally:  # a spooled payload no job took (refused, or a known idempotency key)
            await asyncio.to_thread(self._body.discard)
        if isinstance(answer, parsing.TypedSubmit):
            answer = await self.app.types.submit(answer.spec, user)
        elif isinstance(answer, parsing.NotebookByPath):
            content = await self.read_notebook(answer.path)
            root = getattr(self.contents_manager, "root_dir", None)
            build = functools.partial(answer.build, content, root, limit)
            answer = await self.app.run(service.submit, self.app.store, build, user)
        job, created = answer
        self.reply(job.to_json(), 201 if created else 200)


class BatchHandler(JobsHandler):
    """`POST /jobs/api/jobs/batch`: many jobs in one transaction (used by `map()`)."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        limit = self.app.max_payload_size
        items = await self.app.run(service.batch, self.app.store, self.request.body, limit)
        others: set[str] | None = set()
        if isinstance(items, service.NamesFunctions):
            others = await self.named_functions(items.senders)
            items = items.items
        jobs = await self.app.run(self.app.store.enqueue_many, items, self.job_user, others)
        self.reply({"jobs": [j.to_json() for j in jobs]}, 201)


class JobHandler(JobsHandler):
    """`GET /jobs/api/jobs/{id}`; `DELETE` removes a job that is not running."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = await self.app.run(self.app.store.get, parsing.job_id(job_id))
        await self.check_job(job, "read", "read")
        self.reply(job.to_json())

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        ident = parsing.job_id(job_id)
        await self.check_ids([ident], "write", "delete")
        await self.app.run(self.app.store.delete, ident)
        self.set_status(204)
        self.finish()


class ClearHandler(JobsHandler):
    """`POST /jobs/api/jobs/clear`: delete every finished job at once (the sidebar's "clear
    finished"): of `?user=` or `?mine=true`, else every user's (only yours when you may not
    delete others'); active jobs stay. Answers the deleted ids."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        user = await self.listed_user("write", "delete")
        deleted = await self.app.run(self.app.store.clear_finished, user)
        self.reply({"deleted": deleted})


class CancelHandler(JobsHandler):
    """`POST /jobs/api/jobs/{id}/cancel`: immediate when queued, a kill request when running."""

    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        ident = parsing.job_id(job_id)
        await self.check_ids([ident], "write", "cancel")
        job = await self.app.run(self.app.store.request_cancel, ident)
        self.reply(job.to_json())


class RetryHandler(JobsHandler):
    """`POST /jobs/api/jobs/{id}/retry`: a failed or cancelled job is queued again."""

    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        ident = parsing.job_id(job_id)
        await self.check_ids([ident], "write", "retry")
        job = await self.app.run(self.app.store.retry, ident)
        self.reply(job.to_json())


class ReleaseHandler(JobsHandler):
    """`POST /jobs/api/jobs/{id}/release`: a held job may run (409 when it is not held)."""

    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        ident = parsing.job_id(job_id)
        await self.check_ids([ident], "write", "release")
        job = await self.app.run(self.app.store.release, ident)
        self.reply(job.to_json())


class LogsHandler(JobsHandler):
    """`GET /jobs/api/jobs/{id}/logs?offset=N&limit=M[&stream=S]`: log text from byte N, for
    tailing: of the whole log (cut by stream in `parts`), or of one labelled stream."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        offset, limit, stream = self.query("offset"), self.query("limit"), self.query("stream")
        ident = parsing.job_id(job_id)
        await self.check_ids([ident], "read", "read")
        self.reply(
            await self.app.run(
                service.read_log,
                self.app.store,
                ident,
                parsing.integer("offset", offset, 0, MAX_INT) if offset is not None else 0,
                parsing.integer("limit", limit, 1, MAX_LOG_CHUNK) if limit is not None else 2**20,
                parsing.stream_name(stream) if stream is not None else None,
            )
        )


class OutputsHandler(JobsHandler):
    """`GET /jobs/api/jobs/{id}/outputs`: the captured display outputs (nbformat v4)."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        ident = parsing.job_id(job_id)
        await self.check_ids([ident], "read", "read")
        raw = await self.app.run(self.app.store.outputs, ident)
        outputs = await self.app.run(json.loads, raw)
        self.reply({"outputs": outputs})


class NotebookHandler(JobsHandler):
    """`GET /jobs/api/jobs/{id}/notebook[?format=html]`: a notebook job's executed notebook
    (as far as it ran, for a failed, cancelled or timed-out run), JSON as stored, or rendered
    by nbconvert in a thread.
    The HTML is untrusted job output: it is served sandboxed, with nothing loaded from
    elsewhere."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        fmt = self.query("format") or "json"
        if fmt not in ("json", "html"):
            raise InvalidRequest(f"format must be json or html, got {fmt[:50]!r}")
        ident = parsing.job_id(job_id)
        await self.check_ids([ident], "read", "read")
        data = await self.app.run(service.notebook, self.app.store, ident)
        if fmt == "json":
            self.finish(data, set_content_type="application/x-ipynb+json")
            return
        html = await self.app.run(service.notebook_html, data)
        self.set_header("Content-Security-Policy", NOTEBOOK_CSP)
        self.finish(html, set_content_type="text/html; charset=UTF-8")


#: The rendered notebook runs nothing and loads nothing: inline styles and data: images only.
NOTEBOOK_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:"
)


class LongPollHandler(JobsHandler):
    """A GET that may wait `?wait=S` seconds (at most MAX_WAIT) for jobs to end."""

    _waiting: asyncio.Future[None] | None = None
    _gone = False

    async def long_poll(
        self, job_ids: list[Hashable], read: Callable[[], T], ready: Callable[[T], bool]
    ) -> T | None:
        """`read()` (in a thread) until `ready` says so or the wait is over; each read after the
        first follows the end of one of `job_ids` (or of a job of a `waiters.channel_key`).
        None when the client hung up meanwhile.

        The waiter is registered before each read, so an end between the read and the wait
        still wakes it; a wake-up that did not make the answer ready waits again until the
        deadline. Waiting needs the consumer: before it runs that is a 503.
        """
        wait = self.query("wait")
        timeout = parsing.seconds("wait", wait, MAX_WAIT) if wait is not None else 0.0
        if timeout <= 0 or not job_ids:
            return await self.app.run(read)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self.app.waiters.watch(job_ids) as ended:
                answer = await self.app.run(read)
                left = deadline - loop.time()
                if ready(answer) or left <= 0:
                    return answer
                self.app.running_consumer()
                self._waiting = ended
                if not self._gone:
                    await asyncio.wait([ended], timeout=left)
                if self._gone:
                    return None  # nobody to answer

    def on_connection_close(self) -> None:
        self._gone = True
        if self._waiting is not None:
            self._waiting.cancel()
        super().on_connection_close()


class ResultHandler(LongPollHandler):
    """`GET /jobs/api/jobs/{id}/result?wait=S`: the result bytes, after a long poll of S s.

    200 with the stored bytes (never unpickled here, sent from their file a piece at a time),
    202 with the job while it has not finished, 409 with the job as detail when it ended
    without a result.
    """

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        ident = parsing.job_id(job_id)
        await self.check_ids([ident], "read", "read")
        read = functools.partial(service.result, self.app.store, ident)
        answer = await self.long_poll([ident], read, _has_ended)
        if isinstance(answer, service.Stored):
            await self._send(answer)
        elif answer is None:
            return  # the client hung up
        elif answer.finished:
            raise ResultNotReady(
                f"job {ident} has no result: it is {answer.status}", answer.to_json()
            )
        else:
            self.reply(answer.to_json(), 202)

    async def _send(self, stored: service.Stored) -> None:
        """The stored bytes, read in a thread a piece at a time (the next piece while this one
        is sent), so that a 100 MiB result is never in the server's memory whole."""
        self.set_header("Content-Type", stored.media_type)
        self.set_header("Content-Length", str(stored.size))
        ahead = asyncio.ensure_future(self.app.run(stored.file.read, RESULT_CHUNK))
        try:
            while chunk := await ahead:
                ahead = asyncio.ensure_future(self.app.run(stored.file.read, RESULT_CHUNK))
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            return  # the client hung up
        finally:
            with contextlib.suppress(Exception):  # raised above already, or the client left
                await ahead  # not closed under a read
            stored.file.close()
        self.finish()


def _has_ended(answer: service.Stored | Job) -> bool:
    return isinstance(answer, service.Stored) or answer.finished


class ResultsHandler(LongPollHandler):
    """`GET /jobs/api/results?ids=1,2,3&wait=S&max_bytes=B`: every ended job among `ids`, the
    result bytes of succeeded ones included (base64, never unpickled), after a long poll of S s
    for the first to end. A kernel collects many results with one request per batch."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        ids = parsing.job_ids(self.query("ids") or "")
        limit = self.query("max_bytes")
        max_bytes = (
            parsing.integer("max_bytes", limit, 0, MAX_RESULTS_BYTES)
            if limit is not None
            else DEFAULT_RESULTS_BYTES
        )
        await self.check_ids(ids, "read", "read")
        read = functools.partial(service.results, self.app.store, ids, max_bytes)
        answer = await self.long_poll(ids, read, lambda batch: batch.ended)
        if answer is not None:
            self.finish(answer.body)


class StatusHandler(JobsHandler):
    """`GET /jobs/api/status?ids=1,2,3`: the widgets' batched poll."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        ids = parsing.job_ids(self.query("ids") or "")
        jobs = await self.app.run(self.app.store.get_many, ids) if ids else []
        for job in jobs:
            await self.check_job(job, "read", "read")
        found = {j.id for j in jobs}
        self.reply(
            {"jobs": [j.to_json() for j in jobs], "missing": [i for i in ids if i not in found]}
        )


class StatsHandler(JobsHandler):
    """`GET /jobs/api/stats`: queue depth, running, workers, database size; the numbers of
    `?user=` or `?mine=true`, else of every user (only yours when you may not read others'),
    and of one job type's jobs with `?type=` (checked as the job list's)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        user = await self.listed_user()
        job_type = parsing.job_type_filter(self.query("type"))
        extra = self.app.stats_extra()
        self.reply(await self.app.run(service.stats, self.app.store, extra, user, job_type))


class CapabilitiesHandler(JobsHandler):
    """`GET /jobs/api/capabilities`: what the executor supports, so the UI shows only that."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(self.app.capabilities())


class MeHandler(JobsHandler):
    """`GET /jobs/api/me`: who the jobs API takes you for (whose jobs are "mine") and whether
    you may read and act on every user's jobs, so a UI offers only that."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        user = self.job_user
        self.reply(
            {
                "username": user.username,
                "display_name": user.display_name,
                "can_read_all": await self.may_everyone("read"),
                "can_write_all": await self.may_everyone("write"),
            }
        )


#: The routes, relative to the server's base_url (openapi.yaml describes each one).
ROUTES: list[tuple[str, type[JobsHandler]]] = [
    (r"/jobs/api/jobs", JobsListHandler),
    (r"/jobs/api/jobs/batch", BatchHandler),
    # Before the `{ID}` route, which would take "clear" for a (bad) job id.
    (r"/jobs/api/jobs/clear", ClearHandler),
    (rf"/jobs/api/jobs/{ID}", JobHandler),
    (rf"/jobs/api/jobs/{ID}/cancel", CancelHandler),
    (rf"/jobs/api/jobs/{ID}/retry", RetryHandler),
    (rf"/jobs/api/jobs/{ID}/release", ReleaseHandler),
    (rf"/jobs/api/jobs/{ID}/logs", LogsHandler),
    (rf"/jobs/api/jobs/{ID}/outputs", OutputsHandler),
    (rf"/jobs/api/jobs/{ID}/result", ResultHandler),
    (rf"/jobs/api/jobs/{ID}/notebook", NotebookHandler),
    (r"/jobs/api/results", ResultsHandler),
    (r"/jobs/api/status", StatusHandler),
    (r"/jobs/api/stats", StatsHandler),
    (r"/jobs/api/capabilities", CapabilitiesHandler),
    (r"/jobs/api/me", MeHandler),
]

# The schedule, channel and worker routes live in their own modules, which build on the
# handlers above.
from .channel_handlers import ROUTES as CHANNEL_ROUTES  # noqa: E402
from .schedule_handlers import ROUTES as SCHEDULE_ROUTES  # noqa: E402
from .worker_handlers import ROUTES as WORKER_ROUTES  # noqa: E402

ROUTES += SCHEDULE_ROUTES + WORKER_ROUTES
ROUTES += CHANNEL_ROUTES

# And the job type routes (`/jobs/api/types`), likewise.
from .type_handlers import ROUTES as TYPE_ROUTES  # noqa: E402

ROUTES += TYPE_ROUTES

# And the stored functions' routes (`/jobs/api/functions`).
from .function_handlers import ROUTES as FUNCTION_ROUTES  # noqa: E402

ROUTES += FUNCTION_ROUTES
