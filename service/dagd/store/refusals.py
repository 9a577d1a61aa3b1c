"""The refused deliveries of the event ledger, counted: one row per minute, source, DAG,
outcome, run and detail, its `count` raised by each repeat.

A flood of bad requests (a bad signature, a bad body, a duplicate sent again and again)
thus adds a few rows a minute, not one per request. At most `DETAILS` different details
of one source, DAG, outcome and run get a row of their own in a minute (so "why didn't
it run?" keeps its answers); more go on one row whose detail is `OTHER`. Runs on the
writer's thread, one transaction per refusal, through `Store.record_refusal`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from dagd.store.sql import Q

DETAILS = 5  # different details kept apart per minute, source, DAG, outcome and run
OTHER = "other reasons (more kinds of refusal this minute than are counted apart)"


def record(db: sqlite3.Connection, params: dict[str, Any]) -> int:
    """Count the refusal on its row (made if need be); that row's id."""
    db.execute("BEGIN IMMEDIATE")
    try:
        event_id = _count(db, params)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return event_id


def _count(db: sqlite3.Connection, params: dict[str, Any]) -> int:
    row = db.execute(Q.count_refusal, params).fetchone()
    if row is not None:
        return int(row[0])
    if db.execute(Q.refusal_details, params).fetchone()[0] >= DETAILS:
        params = {**params, "detail": OTHER}
        row = db.execute(Q.count_refusal, params).fetchone()
        if row is not None:
            return int(row[0])
    db.execute(Q.insert_refusal, params)
    return int(params["id"])
