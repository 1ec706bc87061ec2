"""Which queued jobs a claim takes: priority, then fair share between users, then between each
user's notebooks, then FIFO.

Within a priority, the user with the fewest jobs held by consumers (counting the batch being
claimed) goes first, so one user's thousand jobs do not starve another user's one; within that
user, the notebook (owner) with the fewest held goes first, so one notebook does not starve the
user's others. At either level those with as many held are served in turn (the one claimed from
longest ago first), so one worker alternates between users, and between a user's notebooks,
instead of draining the oldest. Jobs stored before users were recorded belong to the user ''
and share among themselves by notebook, as they always did. The order is found with index seeks
per user and notebook, never a scan of the whole queue.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field

from .schema import IDS, LEASED, QUEUED

_ELIGIBLE = "(not_before IS NULL OR not_before <= ?1) AND (expires_at IS NULL OR expires_at > ?1)"
# Queued jobs not claimed yet. (Claimed ones are the oldest few of their notebooks: a seek steps
# over at most the executors' slots.)
_CLAIMABLE = f"status = {QUEUED} AND lease_until IS NULL"
_AT_PRIORITY = f"{_CLAIMABLE} AND priority = ?2"
_TOP_PRIORITY = (
    f"SELECT priority FROM jobs WHERE {_CLAIMABLE} AND priority < ?2 ORDER BY priority DESC LIMIT 1"
)
# Seeks on jobs_claim (status, priority, user, owner, id): the first (user, notebook), the next
# notebook of a user, the first of the next user, and the next job of one notebook. (A row-value
# range, `(user, owner) > (?, ?)`, would be one query instead of two, but SQLite positions it on
# `user` alone and steps over the user's earlier notebooks' jobs.)
_FIRST_HEAD = (
    f"SELECT user, owner, id FROM jobs WHERE {_AT_PRIORITY} AND {_ELIGIBLE} "
    "ORDER BY user, owner, id LIMIT 1"
)
_NEXT_OWNER = (
    f"SELECT user, owner, id FROM jobs WHERE {_AT_PRIORITY} AND user = ?3 AND owner > ?4 "
    f"AND {_ELIGIBLE} ORDER BY owner, id LIMIT 1"
)
_NEXT_USER = (
    f"SELECT user, owner, id FROM jobs WHERE {_AT_PRIORITY} AND user > ?3 AND {_ELIGIBLE} "
    "ORDER BY user, owner, id LIMIT 1"
)
_NEXT_OF_OWNER = (
    f"SELECT id FROM jobs WHERE {_AT_PRIORITY} AND user = ?3 AND owner = ?4 "
    f"AND id > ?5 AND {_ELIGIBLE} ORDER BY id LIMIT 1"
)


@dataclass
class _Turns:
    """Whose turn it is among some names (users, or one user's notebooks): fewest held first,
    then the one served longest ago (earlier in this batch counts as just now), then the
    oldest head job."""

    held: Counter[str]
    last_claim: dict[str, float]
    #: name -> (its place in this batch when last served): served ones wait for the others
    served: dict[str, int]
    at: float
    heap: list[tuple[int, float, int, int, str]] = field(default_factory=list)

    def fill(self, heads: dict[str, int]) -> None:
        """Take these names, each with its head job, in one heapify."""
        self.heap = [self._entry(name, head) for name, head in heads.items()]
        heapq.heapify(self.heap)

    def push(self, name: str, head: int) -> None:
        heapq.heappush(self.heap, self._entry(name, head))

    def _entry(self, name: str, head: int) -> tuple[int, float, int, int, str]:
        last = self.at if name in self.served else self.last_claim.get(name, 0.0)
        return (self.held[name], last, self.served.get(name, 0), head, name)

    def pop(self, place: int) -> tuple[str, int]:
        """The name whose turn it is, and its head job; counted as served at `place`."""
        _, _, _, head, name = heapq.heappop(self.heap)
        self.held[name] += 1
        self.served[name] = place
        return name, head


def pick(conn: sqlite3.Connection, limit: int, at: float, *, note: bool = True) -> list[int]:
    """Ids of up to `limit` jobs to claim at time `at`, in claim order; notes the users and
    notebooks served (inside the claim's write transaction). `note=False` only looks:
    `Store.peek` asks the same rule which job a claim would take, and changes nothing."""
    # (Without INDEXED BY, SQLite would rather walk the owner index of every job.)
    held = conn.execute(
        f"SELECT user, owner, COUNT(*) FROM jobs INDEXED BY jobs_leased WHERE {LEASED} "
        "GROUP BY user, owner"
    ).fetchall()
    user_held: Counter[str] = Counter()
    owner_held: dict[str, Counter[str]] = {}
    owners_served: dict[str, dict[str, int]] = {}
    for user, owner, n in held:
        user_held[user] += n
        owner_held.setdefault(user, Counter())[owner] += n
        owners_served.setdefault(user, {})
    picked: list[int] = []
    users_served: dict[str, int] = {}
    bound: float = float("inf")
    while len(picked) < limit:
        top = conn.execute(_TOP_PRIORITY, (at, bound)).fetchone()
        if top is None:
            break
        priority = bound = top[0]
        heads = _heads(conn, at, priority)
        users = _Turns(user_held, _last_claims(conn, "users", "user", heads), users_served, at)
        owners_last = _last_claims(conn, "owners", "owner", {o for f in heads.values() for o in f})
        notebooks: dict[str, _Turns] = {}
        for user, first in heads.items():
            if user not in owner_held:
                owner_held[user] = Counter()
                owners_served[user] = {}
            notebooks[user] = _Turns(owner_held[user], owners_last, owners_served[user], at)
            notebooks[user].fill(first)
        users.fill({user: min(first.values()) for user, first in heads.items()})
        while users.heap and len(picked) < limit:
            user, _ = users.pop(len(picked) + 1)
            turns = notebooks[user]
            owner, job_id = turns.pop(len(picked) + 1)
            picked.append(job_id)
            following = conn.execute(_NEXT_OF_OWNER, (at, priority, user, owner, job_id)).fetchone()
            if following is not None:
                turns.push(owner, following[0])
            if turns.heap:
                users.push(user, min(entry[3] for entry in turns.heap))
    if not note:
        return picked
    conn.executemany(
        "INSERT INTO users (user, last_claim) VALUES (?, ?) "
        "ON CONFLICT(user) DO UPDATE SET last_claim = excluded.last_claim",
        [(user, at) for user in users_served],
    )
    conn.executemany(
        "INSERT INTO owners (owner, last_claim) VALUES (?, ?) "
        "ON CONFLICT(owner) DO UPDATE SET last_claim = excluded.last_claim",
        [(owner, at) for served in owners_served.values() for owner in served],
    )
    return picked


def _heads(conn: sqlite3.Connection, at: float, priority: int) -> dict[str, dict[str, int]]:
    """user -> notebook -> its oldest claimable job at `priority`."""
    heads: dict[str, dict[str, int]] = {}
    row = conn.execute(_FIRST_HEAD, (at, priority)).fetchone()
    while row is not None:
        user, owner, job_id = row
        heads.setdefault(user, {})[owner] = job_id
        row = conn.execute(_NEXT_OWNER, (at, priority, user, owner)).fetchone()
        if row is None:
            row = conn.execute(_NEXT_USER, (at, priority, user)).fetchone()
    return heads


def _last_claims(conn: sqlite3.Connection, table: str, key: str, names: object) -> dict[str, float]:
    """When each of `names` last had a job claimed (`users` or `owners`: the round-robin)."""
    rows = conn.execute(
        f"SELECT {key}, last_claim FROM {table} WHERE {key} IN {IDS}", (json.dumps(list(names)),)
    )
    return dict(rows.fetchall())
