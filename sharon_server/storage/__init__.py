"""Storage adapter: SQLAlchemy Core over SQLite (aiosqlite) or PostgreSQL (asyncpg).

``open_database(url)`` opens and migrates a database and returns a ``Database`` whose
``accounts`` and ``events`` stores take and return the frozen row types of ``rows``.
"""

from sharon_server.storage.accounts import AccountStore
from sharon_server.storage.database import Database, open_database
from sharon_server.storage.events import EventStore, Extremity
from sharon_server.storage.rows import AccountRow, DeviceRow, EventRow, RoomRow, StateRow, TxnRow

__all__ = [
    "open_database",
    "Database",
    "AccountStore",
    "EventStore",
    "Extremity",
    "AccountRow",
    "DeviceRow",
    "RoomRow",
    "EventRow",
    "StateRow",
    "TxnRow",
]
