"""What the layers above the store see when the database says no: engine-neutral errors.

Each engine turns its driver's exceptions into these, so no caller matches SQLite's or PostgreSQL's
error text or imports a driver to catch its classes.
"""

from __future__ import annotations


class StorageError(Exception):
    """Anything the database refused or could not do."""


class Transient(StorageError):
    """Trouble a retry can cure: a lock held too long, a full disk, I/O, a lost connection, a serialisation
    failure. Receivers answer 4xx / exit 75 on it; workers retry."""


class Conflict(StorageError):
    """A unique constraint held: the row exists already. ``table`` and ``columns`` name the constraint
    (as far as the engine tells)."""

    def __init__(self, message: str, table: str = "", columns: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.table = table
        self.columns = columns

    def on(self, table: str, *columns: str) -> bool:
        """The conflict is on ``table`` (and, when given, exactly these columns)."""
        return self.table == table and (not columns or set(columns) == set(self.columns))


class NotFound(StorageError):
    """A row the caller named does not exist."""


class SchemaError(StorageError):
    """The database's schema cannot be used by this ticketd (newer than it, or a migration failed)."""


class ConfigurationError(StorageError):
    """The database URL cannot be used (unknown scheme, missing password file...)."""
