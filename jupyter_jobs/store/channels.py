"""Result channels in the store: the jobs each channel received, in order, and readers' cursors.

A job with a `channel` is entered in `channel_results` by a trigger (`schema.py`) in the same
transaction that gives it its final status, so the number it gets (`seq`, AUTOINCREMENT: never
reused) is the order in which jobs finished, and no path that ends a job can forget it. A job
retried explicitly leaves the channel until it ends again; automatic retries never enter it
(the job is not final until its last attempt). Deleting a job (gc) removes its entry.

A reader's cursor (`channel_readers`) is the highest `seq` it acknowledged: `channel_next`
reads past it (or past a position the caller holds), `channel_ack` moves it forward only.
`ChannelVerbs` is mixed into `Store`; the reading side is `jupyter_jobs/channels.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..channels import MAX_BATCH, Batch, Delivery, check_name
from ..errors import InvalidRequest
from ..models import MAX_INT, now
from . import schema

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .connection import Database
    from .transaction import Tx


class ChannelVerbs:
    """The result-channel verbs of `Store` (the server, `JobQueue` and the CLI)."""

    _db: Database

    def _tx(self) -> AbstractContextManager[Tx]:  # provided by Store
        raise NotImplementedError

    def channel_next(
        self, channel: str, reader: str, after: int | None = None, limit: int = 1
    ) -> Batch:
        """Up to `limit` finished jobs of `channel` numbered past `after` (None: past what
        `reader` acknowledged), in the order they finished, and `reader`'s cursor."""
        check_name("channel", channel)
        check_name("reader", reader)
        if after is not None and not 0 <= after <= MAX_INT:
            raise InvalidRequest(f"after must be a position in the channel, got {after}")
        if not 1 <= limit <= MAX_BATCH:
            raise InvalidRequest(f"limit must be between 1 and {MAX_BATCH}, got {limit}")
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT acked FROM channel_readers WHERE channel = ? AND reader = ?",
                (channel, reader),
            ).fetchone()
            acked = row[0] if row else 0
            entries = conn.execute(
                "SELECT seq, job_id FROM channel_results WHERE channel = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (channel, acked if after is None else after, limit),
            ).fetchall()
            jobs = schema.load(conn, [job_id for _, job_id in entries]) if entries else {}
        return Batch([Delivery(seq, jobs[job_id]) for seq, job_id in entries], acked)

    def channel_ack(self, channel: str, reader: str, seq: int) -> int:
        """Acknowledge `channel`'s jobs up to `seq` for `reader` (a cursor never moves back);
        returns the cursor. `InvalidRequest` for a number no job of `channel` ever had."""
        check_name("channel", channel)
        check_name("reader", reader)
        if not 1 <= seq <= MAX_INT:
            raise InvalidRequest(f"seq must be a positive position in the channel, got {seq}")
        with self._tx() as tx:
            owner = tx.conn.execute(
                "SELECT channel FROM channel_results WHERE seq = ?", (seq,)
            ).fetchone()
            if owner is not None and owner[0] != channel:
                raise InvalidRequest(
                    f"seq {seq} is a job of channel {owner[0]!r}, not of {channel!r}",
                    {"seq": seq, "channel": owner[0]},
                )
            (highest,) = tx.conn.execute(
                "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'channel_results'"
            ).fetchone()
            if seq > highest:
                raise InvalidRequest(
                    f"seq {seq} was never delivered: channels have reached {highest}",
                    {"seq": seq, "highest": highest},
                )
            tx.conn.execute(
                "INSERT INTO channel_readers (channel, reader, acked, acked_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (channel, reader) DO UPDATE SET "
                "acked = max(acked, excluded.acked), acked_at = excluded.acked_at",
                (channel, reader, seq, now()),
            )
            (acked,) = tx.conn.execute(
                "SELECT acked FROM channel_readers WHERE channel = ? AND reader = ?",
                (channel, reader),
            ).fetchone()
        return acked
