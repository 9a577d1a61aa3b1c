"""The store: the one writer of the SQLite database, its schema, named SQL and verbs."""

from dagd.store.batch import Batch
from dagd.store.store import Store

__all__ = ["Batch", "Store"]
