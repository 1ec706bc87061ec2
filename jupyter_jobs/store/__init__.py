"""The job store: one SQLite file plus a workspace folder of job files beside it.

`Store` (`facade.py`) is the only way in; no SQL lives outside this package. Its modules, each
with one job: `connection.py` (connections, transactions, journal mode, migrations), `schema.py`
(tables, columns, rows mapped to records by name), `transaction.py` (what one write did, the one
place a status changes), `submit.py` (new jobs), `picking.py` (the claim's fair-share order),
`attempts.py` (claims, starts, progress, outcomes, fenced by attempt), `moves.py` (applying the
`lifecycle` rules), `files.py` (blobs and logs), `queries.py` (pages, counts),
`retention.py` (what gc deletes) and `workers.py` (each consumer's workers, and drains asked).
"""

from .connection import default_db_path
from .facade import Claimed, Store
from .queries import MAX_PAGE
from .retention import DEFAULT_RETENTION_DAYS
from .schema import MIGRATIONS

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "MAX_PAGE",
    "MIGRATIONS",
    "Claimed",
    "Store",
    "default_db_path",
]
