"""The durable job store: SQLAlchemy Core over SQLite (default) or PostgreSQL."""

from batchline.store.sql import JobStore

__all__ = ["JobStore"]
