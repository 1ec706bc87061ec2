"""The Jupyter server extension: the queue and its consumer live inside every Jupyter server.

`pip install jupyter_jobs` enables it (jupyter-config/jupyter_server_config.d/jupyter_jobs.json),
so `jupyter lab`, `jupyter notebook` and `jupyter server` all host the job queue with nothing to
configure. Configuration is traitlets on `JobsApp` (`c.JobsApp.max_workers = 4`), passed down as
plain arguments (or, for the executor, as its parent: `c.LocalExecutor`, `c.DaskExecutor`); nothing
else below this module reads config.

Life: the store is opened when the extension loads; the consumer starts on the server's running
event loop (`_start_jupyter_server_extension`) and stops in `stop_extension`, which jupyter_server
awaits on shutdown: running jobs end as `failed`/`interrupted` (or are requeued where they have
retries left), queued jobs stay queued and run at the next start. From the moment the stop begins
every API request is answered 503 (`ShuttingDown`): jupyter_server stops listening first, but
kept-alive connections still bring requests while the jobs are being stopped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import sys
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from jupyter_core.paths import jupyter_config_path
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.serverapp import ServerApp
from jupyter_server.utils import url_path_join
from traitlets import (
    CaselessStrEnum,
    Float,
    Integer,
    TraitError,
    Type,
    Unicode,
    default,
    observe,
    validate,
)
from traitlets.config import Application, Config

from ..consumer import Consumer
from ..errors import ServerUnavailable, ShuttingDown
from ..executors.base import Executor, ExecutorEvents
from ..models import Job, JobUser, Status
from ..store import DEFAULT_RETENTION_DAYS, Store, default_db_path
from .access import USER_SOURCES, identifies_users
from .emitter import EventBridge, register_schema
from .handlers import ROUTES
from .types_service import TypesService
from .waiters import Waiters

T = TypeVar("T")

EXECUTOR_GROUP = "jupyter_jobs.executors"
MiB = 2**20
#: Environment variables that kernels launched by this server inherit (see kernel/client.py).
URL_ENV = "JUPYTER_JOBS_URL"
TOKEN_ENV = "JUPYTER_JOBS_TOKEN"
#: Threads for the store calls of request handlers: SQLite and files never run on the loop.
STORE_THREADS = 4


def resolve_executor(name: str) -> type[Executor]:
    """The executor class registered under `name` in the `jupyter_jobs.executors` entry points."""
    found = entry_points(group=EXECUTOR_GROUP, name=name)
    if not found:
        known = sorted(ep.name for ep in entry_points(group=EXECUTOR_GROUP))
        raise TraitError(
            f"unknown executor {name!r}: installed executors are {known or 'none'}"
            " (is jupyter_jobs installed with pip?)"
        )
    try:
        return next(iter(found)).load()
    except ImportError as e:
        raise TraitError(f"executor {name!r} cannot be loaded: {e}") from e


class ExecutorClass(Type):
    """The executor's class: a dotted import path, a class, or the name of an entry point in the
    `jupyter_jobs.executors` group ("local", "dask"), which stays the short way to say it."""

    def validate(self, obj: Any, value: Any) -> Any:
        if isinstance(value, str) and "." not in value:
            value = resolve_executor(value)
        return super().validate(obj, value)


#: The config files the server reads that may hold `c.JobsApp` settings, in the order loaded.
CONFIG_FILES = ("jupyter_server_config", "jupyter_jobs_config")


def load_config() -> Config:
    """The Jupyter configuration a headless consumer shares with the server: the files above
    (`.py` and `.json`) in every directory of `jupyter_config_path()`, the current directory
    first as the server has it; the ones of higher priority win."""
    config = Config()
    paths = [os.getcwd(), *jupyter_config_path()]
    for name in CONFIG_FILES:
        for loaded, _ in Application._load_config_files(
            name, path=paths, raise_config_file_errors=True
        ):
            config.merge(loaded)
    return config


def kernel_url(serverapp: ServerApp) -> str:
    """The URL a kernel on this machine uses to reach this server (base_url included).

    A wildcard bind address becomes loopback: kernels run on this host, and the hostname may not
    resolve (containers).
    """
    if serverapp.sock:
        return serverapp.connection_url
    ip = serverapp.ip or "localhost"
    if ip in ("0.0.0.0", "*"):
        ip = "127.0.0.1"
    elif ip == "::":
        ip = "::1"
    host = f"[{ip}]" if ":" in ip else ip
    scheme = "https" if serverapp.certfile else "http"
    return url_path_join(f"{scheme}://{host}:{serverapp.port}", serverapp.base_url)


class JobsApp(ExtensionApp):
    """Hosts the jupyter_jobs queue: REST API under /jobs/api, events, and the consumer."""

    name = "jupyter_jobs"
    load_other_extensions = True

    db_path = Unicode(
        help="""The SQLite job database. Default: {jupyter_data_dir}/jupyter_jobs/jobs.db.
        Job files (large payloads and results, logs) live in a folder beside it named for it
        (`jobs.db.files/`), which no other database may use.
        Use a local disk: SQLite's WAL mode does not work on network filesystems.""",
    ).tag(config=True)

    max_workers = Integer(
        None,
        allow_none=True,
        help="How many jobs run at once. Default: the number of CPUs for the local executor "
        "(its worker processes); for Dask, the cluster's total threads, followed as the "
        "cluster grows or shrinks.",
    ).tag(config=True)

    executor_class = ExecutorClass(
        default_value="jupyter_jobs.executors.local.LocalExecutor",
        klass=Executor,
        help="""Where jobs run: an `Executor` subclass, or the name of one in the
        `jupyter_jobs.executors` entry point group. Built in: "local" (worker processes on this
        machine, `c.LocalExecutor`) and "dask" (a Dask cluster: `c.DaskExecutor`, e.g.
        `c.DaskExecutor.scheduler_address`). The executor is configured under its class name.""",
    ).tag(config=True)

    executor = Unicode(
        None, allow_none=True, help="Deprecated: use JobsApp.executor_class (same names)."
    ).tag(config=True)

    dask_scheduler_address = Unicode(
        None, allow_none=True, help="Deprecated: use DaskExecutor.scheduler_address."
    ).tag(config=True)

    progress_interval = Float(
        1.0,
        help="Seconds between two progress writes (and progress events) of one job.",
    ).tag(config=True)

    log_limit = Integer(
        10 * MiB,
        help="Bytes of log kept per job; output beyond it is dropped behind a visible marker.",
    ).tag(config=True)

    max_payload_size = Integer(
        256 * MiB,
        help="""Largest payload (serialized code and variables) a submit may carry, in bytes;
        larger ones get HTTP 413. The server's ServerApp.max_body_size and max_buffer_size are
        raised to fit a base64 payload of this size when they are lower.""",
    ).tag(config=True)

    retention_days = Float(
        DEFAULT_RETENTION_DAYS,
        allow_none=True,
        help="Finished jobs older than this many days are deleted (with their workspace) by "
        "the periodic garbage collection. None or 0 keeps them forever.",
    ).tag(config=True)

    retention_bytes = Integer(
        None,
        allow_none=True,
        help="When finished jobs take more than this many bytes in all, the oldest are deleted "
        "by the periodic garbage collection. None: no size limit.",
    ).tag(config=True)

    kill_grace = Float(
        5.0,
        help="Seconds between SIGTERM and SIGKILL when a job is cancelled, times out, or the "
        "server stops.",
    ).tag(config=True)

    cell_linger = Float(
        None, allow_none=True, help="Deprecated: use LocalExecutor.cell_linger."
    ).tag(config=True)

    lease = Float(
        30.0,
        help="Seconds a running job's claim stays valid without a heartbeat. Another consumer "
        "on the same database recovers a job whose lease ran out.",
    ).tag(config=True)

    user_source = CaselessStrEnum(
        USER_SOURCES,
        default_value="auto",
        help="""Who the jobs submitted through this server belong to (who "mine" is).
        "identity": the user jupyter_server's identity provider authenticated
        (`current_user.username`; JupyterHub, or a custom IdentityProvider). "server": the OS
        user running the server, for every request (jupyter_server's own token and password
        providers make every token request a new anonymous user). "auto": "server" with those
        providers, else "identity".""",
    ).tag(config=True)

    @default("db_path")
    def _default_db_path(self) -> str:
        return str(default_db_path())

    @validate("max_workers")
    def _check_max_workers(self, proposal: dict[str, Any]) -> int | None:
        if proposal["value"] is not None and proposal["value"] < 1:
            raise TraitError("JobsApp.max_workers must be at least 1")
        return proposal["value"]

    @validate("progress_interval", "kill_grace", "lease", "log_limit", "max_payload_size")
    def _check_positive(self, proposal: dict[str, Any]) -> Any:
        if proposal["value"] <= 0:
            raise TraitError(f"JobsApp.{proposal['trait'].name} must be positive")
        return proposal["value"]

    @observe("executor", "dask_scheduler_address", "cell_linger")
    def _deprecated_alias(self, change: dict[str, Any]) -> None:
        """Settings that moved keep working: each goes where it lives now, with a warning."""
        name, value = change["name"], change["new"]
        if value is None:
            return
        section, trait = _MOVED[name]
        warnings.warn(
            f"JobsApp.{name} is deprecated: use {section}.{trait}", DeprecationWarning, stacklevel=2
        )
        self.log.warning("jupyter_jobs: JobsApp.%s is deprecated; use %s.%s", name, section, trait)
        if section == "JobsApp":
            self.executor_class = value
        elif trait not in self.config[section]:  # the new name wins when both are set
            self.config[section][trait] = value

    @validate("retention_days", "retention_bytes")
    def _check_retention(self, proposal: dict[str, Any]) -> Any:
        value = proposal["value"]
        if value is not None and value < 0:
            raise TraitError(f"JobsApp.{proposal['trait'].name} must be zero or more (or None)")
        return value

    store: Store
    consumer: Consumer
    #: whether jobs record the identity provider's user (else `server_user`: `access.py`)
    identify_users: bool
    server_user: JobUser
    _pool: concurrent.futures.ThreadPoolExecutor
    _events: EventBridge
    waiters: Waiters
    types: TypesService
    _started = False
    #: Set when the stop begins: from then on every request is answered 503.
    stopping = False

    # --- life ------------------------------------------------------------------------------

    def initialize_settings(self) -> None:
        """At load (before the loop runs): open the store, build the consumer, register events."""
        self.store = Store(self.db_path, log_limit=self.log_limit)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            STORE_THREADS, thread_name_prefix="jupyter-jobs-api"
        )
        self.consumer = self.make_consumer(self.store)
        register_schema(self.serverapp.event_logger)
        self._events = EventBridge(self.store, self.serverapp.event_logger)
        self.waiters = Waiters(self.store)
        interpreter = getattr(self.consumer.executor, "interpreter", None) or sys.executable
        self.types = TypesService(self.store, interpreter, self.run, self.log)
        self.server_user = JobUser.of_process()
        self.identify_users = identifies_users(self.user_source, self.serverapp.identity_provider)
        self._fit_body_limits()
        self._share_server_root()
        executor = self.consumer.executor.name
        self.log.info("jupyter_jobs: database %s, executor %s", self.store.path, executor)
        users = (
            "the identity provider's users"
            if self.identify_users
            else f"the server's user {self.server_user.username!r}"
        )
        self.log.info("jupyter_jobs: jobs submitted here belong to %s", users)

    def initialize_handlers(self) -> None:
        self.handlers.extend(ROUTES)

    async def _start_jupyter_server_extension(self, serverapp: ServerApp) -> None:
        """On the running loop: tell future kernels where we are, then start consuming."""
        self._export_kernel_env(serverapp)
        self._events.start(asyncio.get_running_loop())
        self.waiters.start(asyncio.get_running_loop())
        self.types.start()
        await self.consumer.start()
        self._started = True
        self.log.info("jupyter_jobs: consumer running, max_workers %s", self._workers_text())

    async def stop_extension(self) -> None:
        """Awaited by jupyter_server on shutdown: end running jobs, keep queued ones queued.

        Says in the log, before and after, what happens to the jobs: a stop can take
        `kill_grace` seconds, and jupyter_server's Ctrl-C prompt has no place for an
        extension's words (it counts kernels only).
        """
        if self.stopping:
            return
        self.stopping = True
        self.waiters.wake_all()  # long polls answer 503 now, not when the loop is gone
        if self._started:
            held = [job_id for job_id, _ in self.consumer.executor.running()]
            await self._log_jobs(functools.partial(stop_announcement, len(held)), self.store.counts)
            await self.consumer.stop(grace=self.kill_grace)
            self._started = False
            await self._log_jobs(stop_summary, self.store.get_many, held)
        self._events.stop()
        self.waiters.stop()
        await self.types.stop()
        self._pool.shutdown(wait=True)
        self.store.close()

    # --- used by the handlers --------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call in the API thread pool and await its result.

        `ShuttingDown` (503) once the stop began: a request that was waiting (a long poll)
        when it began must not reach a store that is about to close.
        """
        self.refuse_while_stopping()
        return await self._in_pool(fn, *args, **kwargs)

    def refuse_while_stopping(self) -> None:
        """`ShuttingDown` (503) once the stop began; every handler asks before its work."""
        if self.stopping:
            raise ShuttingDown("the Jupyter server is shutting down; try again once it runs")

    def stats_extra(self) -> dict[str, Any]:
        """What `GET /jobs/api/stats` adds to the store's numbers."""
        executor = self.consumer.executor
        return {"max_workers": executor.max_workers, "executor": executor.name}

    def running_consumer(self) -> Consumer:
        """The consumer once it runs; `ServerUnavailable` (503) while it starts or after stop."""
        if not self._started:
            raise ServerUnavailable("the jobs consumer is not running (yet); try again shortly")
        return self.consumer

    def capabilities(self) -> dict[str, Any]:
        return {
            **self.running_consumer().executor.capabilities(),
            "max_workers": self.consumer.executor.max_workers,
            "max_payload_size": self.max_payload_size,
        }

    # --- helpers ---------------------------------------------------------------------------

    async def _in_pool(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def _log_jobs(
        self, describe: Callable[[Any], str], read: Callable[..., Any], *args: Any
    ) -> None:
        """Log `describe(read(*args))`; a store failure here must not stop the stop."""
        try:
            self.log.info(describe(await self._in_pool(read, *args)))
        except Exception:
            self.log.exception("jupyter_jobs: cannot tell what the stop does to the jobs")

    def _workers_text(self) -> str:
        """The number of jobs that run at once, and where it comes from when not configured."""
        figure = self.consumer.executor.max_workers
        if self.max_workers is not None:
            return str(figure)
        name = self.consumer.executor.name
        if name == "dask":
            return f"{figure} for now (follows the Dask cluster's threads)"
        if name == "local":
            return f"{figure} (the number of CPUs)"
        return f"{figure} (the executor's default)"

    def make_consumer(self, store: Store, owns_loop: bool = False) -> Consumer:
        """The consumer of `store` with this configuration: the server's, and that of
        `jupyter jobs consumer`, which reads the same config files (and runs it on a loop of
        its own: `owns_loop`)."""
        return Consumer(
            store,
            self.make_executor,
            lease=self.lease,
            progress_interval=self.progress_interval,
            kill_grace=self.kill_grace,
            retention_seconds=self.retention_days * 86400 if self.retention_days else None,
            retention_bytes=self.retention_bytes,
            owns_loop=owns_loop,
        )

    def make_executor(self, events: ExecutorEvents) -> Executor:
        """The configured executor, configured by its own section (`c.LocalExecutor` ...)
        through this app as its parent, with the app's settings every executor follows."""
        traits: dict[str, Any] = {
            "log_limit": self.log_limit,
            "progress_interval": self.progress_interval,
            "kill_grace": self.kill_grace,
        }
        return self.executor_class(events, self.max_workers, parent=self, **traits)

    def _fit_body_limits(self) -> None:
        """Raise tornado's request size limits so a payload of max_payload_size fits as base64.

        The HTTP server is created after extensions load, so changing the ServerApp traits here
        takes effect. Limits are only raised, never lowered.
        """
        needed = self.max_payload_size * 4 // 3 + 4 * MiB
        for trait in ("max_body_size", "max_buffer_size"):
            if getattr(self.serverapp, trait) < needed:
                self.log.info("jupyter_jobs: raising ServerApp.%s to %d bytes", trait, needed)
                setattr(self.serverapp, trait, needed)

    def _share_server_root(self) -> None:
        """Give Notebook 7's pages the `serverRoot` option JupyterLab's pages already carry.

        Kernels name their notebook by an absolute path (JPY_SESSION_NAME); the Jobs panel needs
        the root to turn it into a path it can open. JupyterLab sets the same value itself.
        """
        settings = self.serverapp.web_app.settings
        root = str(settings.get("server_root_dir", "")).replace(os.sep, "/")
        settings.setdefault("page_config_data", {}).setdefault("serverRoot", root)

    def _export_kernel_env(self, serverapp: ServerApp) -> None:
        """Put this server's URL and token in os.environ, which kernels it launches inherit.

        The token is jupyter_server's own (the identity provider's), so the server's normal auth
        accepts it. With no token (auth disabled or password-only), none is exported: kernels
        then reach the API only if the server lets unauthenticated requests through.
        """
        os.environ[URL_ENV] = kernel_url(serverapp)
        token = serverapp.identity_provider.token
        if token:
            os.environ[TOKEN_ENV] = token
        else:
            os.environ.pop(TOKEN_ENV, None)
            self.log.info("jupyter_jobs: the server has no token; kernels get no credential")


#: Deprecated JobsApp settings: where each lives now (config section, trait).
_MOVED = {
    "executor": ("JobsApp", "executor_class"),
    "dask_scheduler_address": ("DaskExecutor", "scheduler_address"),
    "cell_linger": ("LocalExecutor", "cell_linger"),
}


def stop_announcement(running: int, counts: dict[str, int]) -> str:
    """What the log says when a stop begins: what will happen to the jobs, by number."""
    queued = counts.get(Status.QUEUED.value, 0)
    pending = counts.get(Status.PENDING.value, 0)
    return (
        f"Stopping jupyter_jobs: {_jobs(running)} running here will be interrupted (those with "
        f"retries left, or not yet begun in a worker, are requeued); {_jobs(queued)} queued and "
        f"{pending} pending stay for the next start"
    )


def stop_summary(held: list[Job]) -> str:
    """What the log says when the jobs have stopped: how each job that was running ended."""
    ended: dict[str, int] = {}
    for job in held:
        status = "requeued" if job.status is Status.QUEUED else str(job.status)
        if job.status is Status.FAILED and job.reason is not None:
            status = f"{status} ({job.reason})"
        ended[status] = ended.get(status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(ended.items()))
    return f"jupyter_jobs stopped: of {_jobs(len(held))} running, {parts or 'none left'}"


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"
