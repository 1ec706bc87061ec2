"""Whose jobs these are, and who may touch them: the per-job half of authorization.

jupyter_server authorizes every route for resource "jobs" (`@authorized`, in `handlers.py`).
This module adds what depends on the job: each job (and schedule) belongs to one user
(`models.JobUser`, recorded at submit from the request's authentication, never from what the
client says), who may read it and act on it. Anyone else may only when the server's
`Authorizer.is_authorized(handler, user, action, "jobs")` says so with the job as context:
while that call runs, `handler.job_context` is a `JobContext` naming whose jobs (and which job
or schedule) it is about; at the route level it is None. Reading is action "read"; cancel,
retry, release, delete and a schedule's changes are "write". A function stored once
(`shared.py`) is its senders' code: naming one by its sha256 alone, or asking about it, is a
"read" of their jobs (`named_functions`).

Who a request is (`JobsApp.user_source`):

- "identity": the identity provider's user (`current_user.username` and display name): with
  JupyterHub (each user's server has its own token, which the kernels use too, so a kernel's
  jobs are its server's user's) or a custom identity provider;
- "server": the OS user running the server, for every request. jupyter_server's own identity
  provider gives a token request without a cookie a new anonymous user (a fresh uuid) every
  time, so in the single-user default the browser, the kernels (with the server's token) and
  `jupyter jobs` are all the one user whose server it is; that user is the one `JobQueue` and
  the CLI record for themselves;
- "auto" (default): "server" with jupyter_server's own identity providers, else "identity".

Most checks cost nothing extra: a job's own user needs no authorizer, and "may this user do it
to every user's jobs?" (`JobContext(None)`) is asked first, once per request; only when that is
refused are the jobs read to ask about each one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider

from ..errors import FunctionNotFound, NotAllowed
from ..models import Job, JobUser
from ..schedules import Schedule
from . import parsing

if TYPE_CHECKING:
    from .app import JobsApp

#: The resource every jobs route is authorized for (`JobsHandler.auth_resource`).
AUTH_RESOURCE = "jobs"
USER_SOURCES = ("auto", "identity", "server")
#: jupyter_server's own identity providers: their token users are anonymous, one per request.
_ANONYMOUS_PROVIDERS = (IdentityProvider, PasswordIdentityProvider)


def identifies_users(source: str, provider: IdentityProvider) -> bool:
    """Whether jobs record the identity provider's user ("identity"), rather than the OS user
    running the server for every request ("server"); "auto" decides by the provider's class."""
    if source == "auto":
        return type(provider) not in _ANONYMOUS_PROVIDERS
    return source == "identity"


@dataclass(frozen=True)
class JobContext:
    """What a per-job question to the authorizer is about (`handler.job_context`).

    `job_user` is the user whose jobs are asked about, None for every user's (a listing of
    all, or a question asked before any job is read: say yes only if the user may do it to
    any job); `job` or `schedule` the one asked about, when there is one.
    """

    job_user: str | None
    job: Job | None = None
    schedule: Schedule | None = None


class JobAccess:
    """Mixed into every jobs handler: who the request is, and the per-job checks."""

    #: Set while the authorizer is asked about a job; None at the route level.
    job_context: JobContext | None = None
    _everyone: dict[str, bool] | None = None

    # provided by the handler (JobsHandler, a jupyter_server APIHandler)
    app: JobsApp
    authorizer: Any
    current_user: Any
    query: Callable[[str], str | None]

    @property
    def job_user(self) -> JobUser:
        """Who the jobs of this request belong to (see the module's docstring)."""
        if not self.app.identify_users:
            return self.app.server_user
        user = self.current_user
        username = getattr(user, "username", None) or str(user)
        return JobUser(username, getattr(user, "display_name", None) or username)

    async def may(self, action: str, context: JobContext) -> bool:
        """Whether the authorizer lets this user `action` ("read", "write") what `context`
        names."""
        self.job_context = context
        try:
            allowed = self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE)
            return bool(await ensure_async(allowed))
        finally:
            self.job_context = None

    async def may_everyone(self, action: str) -> bool:
        """Whether this user may `action` every user's jobs (asked once per request)."""
        if self._everyone is None:
            self._everyone = {}
        if action not in self._everyone:
            self._everyone[action] = await self.may(action, JobContext(None))
        return self._everyone[action]

    async def check_job(self, job: Job, action: str, verb: str) -> None:
        """`NotAllowed` unless `job` is this user's or the authorizer allows `action` on it;
        `verb` says what was refused ("cancel", "read" ...)."""
        if job.user == self.job_user.username or await self.may_everyone(action):
            return
        if not await self.may(action, JobContext(job.user, job=job)):
            raise NotAllowed(
                f"job {job.id} belongs to {_who(job.user)}: {self._me()} may not {verb} it",
                {"id": job.id, "user": job.user},
            )

    async def check_ids(self, job_ids: list[int], action: str, verb: str) -> None:
        """`check_job` for each of `job_ids` that exists (the action itself says 404 for the
        others); the jobs are read only when the user may not `action` everyone's."""
        if not job_ids or await self.may_everyone(action):
            return
        for job in await self.app.run(self.app.store.get_many, job_ids):
            await self.check_job(job, action, verb)

    async def check_schedule(self, schedule: Schedule, action: str, verb: str) -> None:
        """`check_job`'s rule for a schedule: its user's, or the authorizer's to allow."""
        if schedule.user == self.job_user.username or await self.may_everyone(action):
            return
        if not await self.may(action, JobContext(schedule.user, schedule=schedule)):
            raise NotAllowed(
                f"schedule {schedule.id} belongs to {_who(schedule.user)}: {self._me()} may "
                f"not {verb} it",
                {"id": schedule.id, "user": schedule.user},
            )

    async def named_functions(self, senders: dict[str, set[str]]) -> set[str] | None:
        """The users besides this one whose functions (stored once, `shared.py`) this request
        may name by sha256 alone, given each named one's `senders`: None for anyone's (the
        authorizer lets it read every user's jobs), else those of the senders whose jobs it
        may read. A function is user code: `FunctionNotFound` names each one it may not name,
        as for one not stored (whether another user stored it is not theirs to know)."""
        me = self.job_user.username
        others: set[str] = set()
        refused = []
        for sha256, users in senders.items():
            if me in users:
                continue
            if users and await self.may_everyone("read"):
                return None
            readable = {u for u in users if await self.may("read", JobContext(u))}
            if not readable:
                refused.append(sha256)
            others |= readable
        if refused:
            raise FunctionNotFound.named(sorted(refused))
        return others

    async def listed_user(self, action: str = "read", verb: str = "read") -> str | None:
        """The user whose jobs a listing (or a count, or a clear) covers, from `?mine=` and
        `?user=`: yours (`mine` wins over `user`), the named user's (when you may), else every
        user's, or only yours when you may not `action` everyone's. None means every user's."""
        named = self.query("user")
        me = self.job_user.username
        if parsing.flag("mine", self.query("mine")):
            return me
        if named is None:
            return None if await self.may_everyone(action) else me
        if (
            named != me
            and not await self.may_everyone(action)
            and not await self.may(action, JobContext(named))
        ):
            raise NotAllowed(
                f"{self._me()} may not {verb} the jobs of {_who(named)}", {"user": named}
            )
        return named

    def _me(self) -> str:
        return _who(self.job_user.username)


def _who(username: str) -> str:
    return repr(username) if username else "no user"
