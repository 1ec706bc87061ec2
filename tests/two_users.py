"""An identity provider and an authorizer for a server shared by several users (the tests'
`ServerApp.identity_provider_class` and `authorizer_class`, loaded by the server process).

`TokenUsers` maps tokens to users, as JupyterHub or a company's login would: each user's own
token names them, and the server's token (what its kernels use) names the server's owner,
alice. `ReadersAndAdmins` lets every user use the jobs API for their own jobs; beyond that,
carol (an admin) may read and act on everyone's jobs, bob may read alice's jobs (one user's,
so a listing of everyone's stays his own) and nothing else. Each question about a job is
logged, so a test can see the job was passed as the resource context.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth import Authorizer, IdentityProvider, User

USERS = {
    "alice-token": User("alice", display_name="Alice Liddell"),
    "bob-token": User("bob", display_name="Bob"),
    "carol-token": User("carol", display_name="Carol (admin)"),
}
OWNER = USERS["alice-token"]
#: What the authorizer logs for each per-job question (the test reads the server's log).
ASKED = "two_users asked"


class TokenUsers(IdentityProvider):
    """The user of the request's token; the server's own token is its owner's (alice)."""

    async def get_user_token(self, handler: Any) -> User | None:
        token = self.get_token(handler)
        if token and token == self.token:
            return OWNER
        return USERS.get(token or "")


class ReadersAndAdmins(Authorizer):
    """Own jobs for everyone; carol everything; bob may read alice's jobs."""

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        context = getattr(handler, "job_context", None)
        if resource != "jobs" or context is None:
            return True  # the route itself: every user may use the jobs API for their own
        job = context.job.id if context.job is not None else None
        schedule = context.schedule.id if context.schedule is not None else None
        self.log.info(
            "%s: %s %s user=%r job=%s schedule=%s",
            ASKED, user.username, action, context.job_user, job, schedule,
        )  # fmt: skip
        if user.username == "carol":
            return True
        return user.username == "bob" and action == "read" and context.job_user == "alice"
