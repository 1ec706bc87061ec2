"""What runs on a Dask worker for the Dask executor: one attempt of one job, as a Dask task.

`run_on_worker` is the task (see `dask.py` for the whole design). It starts the job's runner in
a process of its own (`processes.spawn_runner`), looks at the runner's process tree while it
runs (as the local executor does, so that a stop ends every descendant seen, those in sessions
of their own and orphans included), speaks the frames of `protocol.py` to it,
forwards logs and progress as Dask events on the executor's topic, watches for a stop (a
`distributed.Event` per key, or the key released), and returns how the attempt ended as plain
data: the executor's client accepts no pickle. Dask re-runs a task whose worker died; a re-run
finds the key marked started and reports `worker_lost` instead of running the job twice.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
from typing import Any

from distributed import Event as DaskEvent
from distributed import Variable, get_client, get_worker

from .. import protocol
from ..oslayer import forget_tree, kill_group, process_start_time, track_tree
from ..protocol import FrameType
from .processes import (
    TRACK_INTERVAL,
    describe_exit,
    last_words,
    spawn_runner,
    stop_group,
    wait_leader,
)

log = logging.getLogger(__name__)

_POLL = 1.0  # seconds between two looks at the stop signal on the worker (a long poll)
_LOG_FLUSH = 0.1  # seconds a log line may wait on the worker to share an event with others
_LOG_CHUNK = 16 * 1024  # bytes of log per event, at most
_START_TIMEOUT = 60.0  # seconds for a runner to say it is ready
_STDERR_TAIL = 16384  # bytes of the runner's own stderr kept for a worker_lost error


def worker_identity() -> dict[str, Any]:
    """The Dask worker process's pid and start time (`Client.run` asks each worker once; the
    scheduler does not know them), for the executor's workers view."""
    pid = os.getpid()
    return {"pid": pid, "started_at": process_start_time(pid)}


def run_on_worker(job: dict[str, Any], payload: bytes, topic: str) -> dict[str, Any]:
    """The Dask task of one attempt: run it in a runner process, return how it ended."""
    attempt = _Attempt(job, topic)
    try:
        outcome = attempt.run(payload)
    finally:
        attempt.close()
    # The last checkpoint goes too: a stopped run's result, even if it said "done" meanwhile.
    return {
        **outcome,
        "events": attempt.report.sent,
        "worker": attempt.where,
        "checkpoint": attempt.checkpoint,
    }


class _Reporter:
    """Sends a job's logs and progress to the executor as Dask events, in order, logs batched."""

    def __init__(self, worker: Any, topic: str, key: str) -> None:
        self.worker = worker
        self.topic = topic
        self.key = key
        self.sent = 0
        self._buffer = bytearray()
        self._stream: str | None = None  # the buffer's stream (`streams.py`; None: main)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        flusher = threading.Thread(target=self._flush_periodically, name="jobs-dask-logs")
        flusher.daemon = True
        flusher.start()

    def publish(self, kind: str, **fields: Any) -> None:
        with self._lock:
            self._flush()
            self._send(kind, fields)

    def log(self, data: bytes, stream: str | None = None) -> None:
        with self._lock:
            if stream != self._stream:
                self._flush()
                self._stream = stream
            self._buffer += data
            if len(self._buffer) >= _LOG_CHUNK:
                self._flush()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._flush()

    def _send(self, kind: str, fields: dict[str, Any]) -> None:
        self.worker.log_event(self.topic, {"k": self.key, "t": kind, **fields})
        self.sent += 1

    def _flush(self) -> None:
        while self._buffer:
            chunk = bytes(self._buffer[:_LOG_CHUNK])
            del self._buffer[:_LOG_CHUNK]
            labelled = {} if self._stream is None else {"s": self._stream}
            self._send("log", {"data": chunk, **labelled})

    def _flush_periodically(self) -> None:
        while not self._closed.wait(_LOG_FLUSH):
            with self._lock:
                self._flush()


class _Attempt:
    """One run of the task on a worker: the runner process, the conversation, the stop watch."""

    def __init__(self, job: dict[str, Any], topic: str) -> None:
        self.job = job
        self.key = job["key"]
        self.worker = get_worker()
        self.client = get_client()
        self.where = f"{self.worker.address} (pid {os.getpid()})"
        self.report = _Reporter(self.worker, topic, self.key)
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()  # signals vs reaping: never signal a reaped pid
        self.reaped = False
        self.stopped = False  # ended by a stop (kill or released key)
        self.problem: str | None = None  # why the conversation with the runner broke off
        self.checkpoint: bytes | None = None  # the result should the runner end before "done"
        self.over = threading.Event()  # the runner is gone: stop watching

    def close(self) -> None:
        self.over.set()
        self.report.close()

    def run(self, payload: bytes) -> dict[str, Any]:
        started = DaskEvent(f"{self.key}-started", self.client)
        if started.is_set():
            return {"status": "failed", "reason": "worker_lost", "rerun": True}
        started.set()
        cwd = self._placement()
        with tempfile.TemporaryFile() as stderr:
            try:
                self.proc, end = spawn_runner(sys.executable, stderr=stderr)
            except OSError as exc:
                message = f"cannot start the job's process on {self.where}: {exc}"
                error = {"type": "WorkerStartError", "message": message}
                return {"status": "failed", "reason": "worker_lost", "error": error}
            self.report.publish("start", where=self.where, pid=self.proc.pid)
            threading.Thread(target=self._watch, name="jobs-dask-stop", daemon=True).start()
            threading.Thread(target=self._track, name="jobs-dask-tree", daemon=True).start()
            try:
                sock = end.accept(_START_TIMEOUT, lambda: self.proc.poll() is None)
            finally:
                end.close()
            ready, done = self._converse(sock, payload, cwd) if sock else (None, None)
            if sock is None and self.proc.poll() is None:
                self.problem = f"it did not connect within {_START_TIMEOUT:g} s"
                self._kill()
            returncode = self._reap()
            stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - _STDERR_TAIL))
            output = stderr.read().decode(errors="replace").strip()
        return self._outcome(ready, done, describe_exit(returncode), output)

    def _placement(self) -> str | None:
        """The job's directory if this worker has it; the log notes where the job runs elsewhere."""
        cwd, interpreter = self.job.get("cwd"), self.job.get("interpreter")
        if interpreter and os.path.realpath(interpreter) != os.path.realpath(sys.executable):
            note = f"[jupyter_jobs: running with the Dask worker's Python {sys.executable}]\n"
            self.report.log(note.encode())
        if cwd and not os.path.isdir(cwd):
            note = (
                f"[jupyter_jobs: directory {cwd} does not exist on Dask worker {self.where}; "
                f"running in {os.getcwd()}]\n"
            )
            self.report.log(note.encode())
            return None
        return cwd

    def _converse(
        self, sock: Any, payload: bytes, cwd: str | None
    ) -> tuple[protocol.Frame | None, protocol.Frame | None]:
        """Hand the job to the runner and forward what it says; returns (ready, done) frames."""
        ready = done = None
        sock.settimeout(_START_TIMEOUT)
        channel = protocol.Channel(sock)
        try:
            ready = channel.recv()
            if ready is None or ready[0]["t"] != FrameType.READY:
                return None, None
            sock.settimeout(None)
            channel.send(self._job_header(cwd), payload)
            while done is None and (frame := channel.recv()) is not None:
                header, body = frame
                if header["t"] == FrameType.LOG:
                    self.report.log(body, header.get("s"))
                elif header["t"] == FrameType.PROGRESS:
                    fields = {k: header.get(k) for k in ("done", "total", "message")}
                    self.report.publish("progress", **fields)
                elif header["t"] == FrameType.CHECKPOINT:
                    self.checkpoint = body
                elif header["t"] == FrameType.DONE:
                    done = frame
        except TimeoutError:
            ready, self.problem = None, f"it did not start within {_START_TIMEOUT:g} s"
            self._kill()
        except (OSError, protocol.ProtocolError) as exc:
            # The runner died mid-frame (a kill), or spoke nonsense: it cannot be trusted.
            self.problem = f"{type(exc).__name__}: {exc}"
            self._kill()
        finally:
            channel.close()  # a runner that finished reads the end of stream and exits
        return ready, done

    def _job_header(self, cwd: str | None) -> dict[str, Any]:
        job = self.job
        return protocol.job_header(
            **{k: job[k] for k in ("job_id", "attempt", "kind", "name", "options")},
            cwd=cwd,
            log_limit=job["log_limit"],
            progress_interval=job["progress_interval"],
        )

    def _reap(self) -> int:
        """Wait for the runner to exit, end what its job left in its group, then reap it."""
        wait_leader(self.proc)
        with self.lock:
            kill_group(self.proc.pid)
            forget_tree(self.proc.pid)
            self.reaped = True
            return self.proc.wait()

    def _track(self) -> None:
        """Remember what the job starts (`oslayer.track_tree`) until the runner is reaped, so
        that a stop or the runner's death ends it even once it left the runner's tree."""
        while not self.over.wait(TRACK_INTERVAL):
            with self.lock:
                if self.reaped:
                    return
                track_tree(self.proc.pid)

    def _kill(self) -> None:
        with self.lock:
            if not self.reaped:
                kill_group(self.proc.pid)

    def _watch(self) -> None:
        """Stop the runner when the executor asks, or when Dask released this task's key."""
        stop = DaskEvent(f"{self.key}-stop", self.client)
        grace = None
        while grace is None:
            try:
                asked = stop.wait(timeout=_POLL)
            except Exception as exc:  # the scheduler is out of reach: look again later
                log.debug("jupyter_jobs: waiting for a stop of %s: %s", self.key, exc)
                asked = False
                self.over.wait(_POLL)
            if self.over.is_set():
                return
            if asked:
                grace = self._asked_grace()
            elif self._released():
                grace = self.job["grace"]
        self._terminate(grace)

    def _asked_grace(self) -> float:
        try:
            return float(Variable(f"{self.key}-grace", self.client).get(timeout=_POLL))
        except Exception as exc:
            log.warning("jupyter_jobs: no grace for %s (%s); using the default", self.key, exc)
            return float(self.job["grace"])

    def _released(self) -> bool:
        state = self.worker.state.tasks.get(self.key)
        return state is None or state.state == "cancelled"

    def _terminate(self, grace: float) -> None:
        """SIGTERM to the runner's process group, up to `grace` seconds, then SIGKILL."""
        with self.lock:
            if self.reaped:
                return
            self.stopped = True
        stop_group(self.proc.pid, grace)

    def _outcome(
        self,
        ready: protocol.Frame | None,
        done: protocol.Frame | None,
        exit_text: str,
        output: str,
    ) -> dict[str, Any]:
        if done is not None:
            return protocol.done_fields(*done)
        if self.stopped:
            return {"status": "stopped", "exit": exit_text}
        words = self.problem or last_words(output)
        said = f": {words}" if words else ""
        pid = self.proc.pid
        when = "before it was ready" if ready is None else "while running the job"
        message = f"the job's process (pid {pid} on {self.where}) died {when}: {exit_text}{said}"
        error = {"type": "WorkerLost", "message": message, "traceback": output}
        return {
            "status": "failed",
            "reason": "worker_lost",
            "error": error,
            "exit": exit_text,
            "result": self.checkpoint,
        }
