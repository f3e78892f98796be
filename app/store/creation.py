"""The creation statement: one insert that picks a free branch, shares the parent lock and
finds the session an idempotency key made earlier, composed once per shape and dialect."""

from __future__ import annotations

import functools

from piccolo.querystring import QueryString

from app.store import schema
from app.store.dialect import Dialect
from app.store.queries import _value
from app.store.schema import (
    COLUMNS,
    IDEMPOTENCY_FINGERPRINT,
    IDEMPOTENCY_KEY,
    NAMES,
    TABLE,
    name,
)
from app.store.statement import Param, Statement


def _free_branch(dialect: Dialect, *, locked: bool) -> QueryString:
    """The first of the candidate branches (`branches`, a list as one parameter, in order) that
    no session of the repo has, read in the statement's snapshot; when every one is taken, the
    first (`branch`), so that the insert conflicts and does nothing. Picking here, rather than
    trying each name and catching the unique violation, costs one statement however many names
    are taken (a load generator sends one body again and again: every create after the first
    finds its generated branch taken)."""
    taken = QueryString(
        "SELECT 1 FROM {} WHERE {} = {} AND {} = candidate.branch",
        TABLE,
        schema.column("repo"),
        Param("repo"),
        schema.column("branch"),
    )
    if dialect.engine_type == "postgres":
        candidates = QueryString(
            "unnest({}::text[]) WITH ORDINALITY AS candidate(branch, position)", Param("branches")
        )
        if locked:
            # Read here, the lock's CTE runs before the row is made (a CTE runs only when read).
            candidates = QueryString("parent_lock, {}", candidates)
    else:
        candidates = QueryString(
            "(SELECT value AS branch, key AS position FROM json_each({})) AS candidate",
            Param("branches"),
        )
    return QueryString(
        "COALESCE((SELECT candidate.branch FROM {} WHERE NOT EXISTS ({})"
        " ORDER BY candidate.position LIMIT 1), {})",
        candidates,
        taken,
        Param("branch"),
    )


def _insert(dialect: Dialect, *, locked: bool) -> QueryString:
    """A new row under a free branch, unless a unique rule refuses it (its idempotency key,
    or a branch a concurrent create took first): then nothing, and no row comes back."""
    values = [
        _free_branch(dialect, locked=locked)
        if of is schema.column("branch")
        else _value(dialect, of._meta.name)
        for of in schema.ROW
    ]
    return QueryString(
        "INSERT INTO {} ({}, {}, {}) VALUES ({}, {}, {}) ON CONFLICT DO NOTHING RETURNING {}",
        TABLE,
        NAMES,
        name(IDEMPOTENCY_KEY),
        name(IDEMPOTENCY_FINGERPRINT),
        schema.joined(values),
        Param("idempotency_key"),
        Param("idempotency_fingerprint"),
        COLUMNS,
    )


# A shared hold on the parent lock for the rest of the statement's transaction, taken before
# the row goes in and so before its foreign key is checked: a delete of the parent in flight
# (which holds the lock exclusively) is waited for, and one that comes later waits for this.
_SHARE_PARENTS = QueryString(
    "parent_lock AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared({}) AS held)", Param("key")
)


def replays(dialect: Dialect) -> bool:
    """Whether `create` finds the session an idempotency key already made in the same statement
    (PostgreSQL's data-modifying CTEs; SQLite reads it with a statement of its own)."""
    return dialect.engine_type == "postgres"


@functools.cache
def create(*, under_parent: bool, keyed: bool) -> Statement:
    """One creation in one statement (see `_insert`), its outbox row written by the trigger in
    the same statement. On PostgreSQL, `under_parent` shares the parent lock within it, and
    `keyed` also returns the session made earlier with the idempotency key, with its
    `idempotency_fingerprint` (NULL on a new row), when the insert did nothing."""

    def build(dialect: Dialect) -> QueryString:
        locked = under_parent and dialect.locks_parents
        insert = _insert(dialect, locked=locked)
        if dialect.engine_type != "postgres":
            return insert
        ctes = [_SHARE_PARENTS] if locked else []
        if not keyed:
            if not ctes:
                return insert
            return QueryString("WITH {} {}", schema.joined(ctes), insert)
        ctes.append(QueryString("made AS ({})", insert))
        return QueryString(
            "WITH {} SELECT {}, NULL AS {} FROM made UNION ALL SELECT {}, {} FROM {}"
            " WHERE {} = {} AND NOT EXISTS (SELECT 1 FROM made)",
            schema.joined(ctes),
            NAMES,
            name(IDEMPOTENCY_FINGERPRINT),
            COLUMNS,
            IDEMPOTENCY_FINGERPRINT,
            TABLE,
            IDEMPOTENCY_KEY,
            Param("idempotency_key"),
        )

    return Statement(build)
