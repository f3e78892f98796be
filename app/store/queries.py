"""The statements on single sessions, their writes and their relations. Each is composed once, in
Piccolo's `QueryString`s over the table's columns, and compiled once per dialect; an update's
text depends only on which fields it sets, so each such set is composed once too."""

from __future__ import annotations

import functools

from piccolo.querystring import QueryString

from app.store import listing, schema
from app.store.dialect import Dialect
from app.store.schema import (
    COLUMNS,
    CREATED_AT,
    ID,
    IDEMPOTENCY_FINGERPRINT,
    IDEMPOTENCY_KEY,
    NAMES,
    PARENT,
    TABLE,
    UPDATED_AT,
    VERSION,
    name,
)
from app.store.statement import Param, Statement, statement


@statement
def GET(dialect: Dialect) -> QueryString:
    return QueryString("SELECT {} FROM {} WHERE {} = {}", COLUMNS, TABLE, ID, Param("id"))


@statement
def GET_MANY(dialect: Dialect) -> QueryString:
    return QueryString(
        "SELECT {} FROM {} WHERE {}", COLUMNS, TABLE, dialect.is_in(ID, Param("ids"), "uuid")
    )


@statement
def EXISTS(dialect: Dialect) -> QueryString:
    return QueryString("SELECT 1 FROM {} WHERE {} = {}", TABLE, ID, Param("id"))


@statement
def LOCK(dialect: Dialect) -> QueryString:
    """The row, locked until the transaction ends."""
    return QueryString(
        "SELECT {} FROM {} WHERE {} = {}{}", COLUMNS, TABLE, ID, Param("id"), dialect.lock_row
    )


@statement
def BY_IDEMPOTENCY_KEY(dialect: Dialect) -> QueryString:
    return QueryString(
        "SELECT {}, {} FROM {} WHERE {} = {}",
        COLUMNS,
        IDEMPOTENCY_FINGERPRINT,
        TABLE,
        IDEMPOTENCY_KEY,
        Param("idempotency_key"),
    )


def _value(dialect: Dialect, field: str) -> QueryString:
    """The parameter for the session's field `field`, cast where its column needs it."""
    param = Param(field)
    return dialect.json(param) if field in schema.JSON else QueryString("{}", param)


def _insert(dialect: Dialect, *, sharing_parents: bool) -> QueryString:
    values = [_value(dialect, of._meta.name) for of in schema.ROW]
    if sharing_parents:
        # The parent is read through the shared hold of the parent lock, so the hold is taken
        # as the row is made, before its foreign key is checked (at the statement's end), and
        # lasts until the statement's transaction ends.
        values[[of._meta.name for of in schema.ROW].index("parent")] = QueryString(
            "(SELECT CAST({} AS uuid) FROM (SELECT pg_advisory_xact_lock_shared({})) AS held)",
            Param("parent"),
            Param("parent_lock"),
        )
    return QueryString(
        "INSERT INTO {} ({}, {}, {}) VALUES ({}, {}, {}) ON CONFLICT ({}) DO NOTHING RETURNING {}",
        TABLE,
        NAMES,
        name(IDEMPOTENCY_KEY),
        name(IDEMPOTENCY_FINGERPRINT),
        schema.joined(values),
        Param("idempotency_key"),
        Param("idempotency_fingerprint"),
        name(IDEMPOTENCY_KEY),
        COLUMNS,
    )


@statement
def INSERT(dialect: Dialect) -> QueryString:
    """A new row, unless its idempotency key is taken (then no row comes back)."""
    return _insert(dialect, sharing_parents=False)


@statement
def INSERT_UNDER_PARENT(dialect: Dialect) -> QueryString:
    """`INSERT` of a row with a parent, which on PostgreSQL holds the parent lock shared
    (`parent_lock`, its key) in the same statement: a delete of the parent in flight, which
    holds it exclusively, is waited for, so the child is refused by the foreign key or orphaned
    by that delete with a new version, never silently. Creations never wait for each other."""
    return _insert(dialect, sharing_parents=dialect.locks_parents)


@functools.cache
def update(
    fields: tuple[str, ...], *, versioned: bool = False, keeps_parent: bool = False
) -> Statement:
    """Set `fields` of one row, with a new `updated_at` and the next version. `versioned`: only
    while the row is at `expected_version`; `keeps_parent`: only while its parent is already
    the `parent` set (so the update moves no session, checked by the statement itself)."""

    def build(dialect: Dialect) -> QueryString:
        assignments = [
            QueryString("{} = {}", name(schema.column(field)), _value(dialect, field))
            for field in fields
        ]
        assignments.append(QueryString("{} = {}", name(UPDATED_AT), Param("updated_at")))
        assignments.append(QueryString("{} = {} + 1", name(VERSION), name(VERSION)))
        where = QueryString("{} = {}", ID, Param("id"))
        if versioned:
            where = QueryString("{} AND {} = {}", where, VERSION, Param("expected_version"))
        if keeps_parent:
            where = QueryString("{} AND {} = {}", where, PARENT, Param("parent"))
        return QueryString(
            "UPDATE {} SET {} WHERE {} RETURNING {}",
            TABLE,
            schema.joined(assignments),
            where,
            COLUMNS,
        )

    return Statement(build)


MESSAGES = schema.column("messages")


@statement
def APPEND_MESSAGES(dialect: Dialect) -> QueryString:
    """Append the elements of a JSON array (`messages`, as text) to a row's messages, with a new
    `updated_at` and the next version: one statement, so concurrent appends all land, each
    reading what the one before it wrote (the row lock orders them). Only where the messages
    are an array, a null reading as an empty one; otherwise no row comes back."""
    stored = dialect.array_or_empty(MESSAGES)
    return QueryString(
        "UPDATE {} SET {} = {}, {} = {}, {} = {} + 1 WHERE {} = {} AND {} = 'array' RETURNING {}",
        TABLE,
        name(MESSAGES),
        dialect.appended(stored, Param("messages")),
        name(UPDATED_AT),
        Param("updated_at"),
        name(VERSION),
        name(VERSION),
        ID,
        Param("id"),
        dialect.json_type(stored),
        COLUMNS,
    )


@statement
def MESSAGES_TYPE(dialect: Dialect) -> QueryString:
    """The JSON type of a row's messages as an append reads them (a null is an array)."""
    return QueryString(
        "SELECT {} AS type FROM {} WHERE {} = {}",
        dialect.json_type(dialect.array_or_empty(MESSAGES)),
        TABLE,
        ID,
        Param("id"),
    )


@statement
def ORPHAN(dialect: Dialect) -> QueryString:
    """Every child of a session loses its parent: a change to each, with the next version."""
    return QueryString(
        "UPDATE {} SET {} = NULL, {} = {}, {} = {} + 1 WHERE {} = {} RETURNING {}",
        TABLE,
        name(PARENT),
        name(UPDATED_AT),
        Param("updated_at"),
        name(VERSION),
        name(VERSION),
        PARENT,
        Param("parent"),
        COLUMNS,
    )


@statement
def DELETE(dialect: Dialect) -> QueryString:
    return QueryString("DELETE FROM {} WHERE {} = {}", TABLE, ID, Param("id"))


@statement
def LOCK_PARENTS(dialect: Dialect) -> QueryString:
    return QueryString("SELECT pg_advisory_xact_lock({})", Param("key"))


@statement
def ANCESTRY(dialect: Dialect) -> QueryString:
    """The walk up from `parent`, at most `max_depth` steps: whether `parent` exists, whether
    `id` is on the way, and how far it went."""
    return QueryString(
        "WITH RECURSIVE chain(id, parent, depth) AS ("
        "SELECT {}, {}, 0 FROM {} WHERE {} = {}"
        " UNION ALL "
        "SELECT {}, {}, chain.depth + 1 FROM {} JOIN chain ON {} = chain.parent"
        " WHERE chain.depth < {}"
        ") SELECT count(*) AS found, sum(CASE WHEN id = {} THEN 1 ELSE 0 END) AS cycle,"
        " max(depth) AS depth FROM chain",
        ID,
        PARENT,
        TABLE,
        ID,
        Param("parent"),
        ID,
        PARENT,
        TABLE,
        ID,
        Param("max_depth"),
        Param("id"),
    )


@statement
def ANCESTORS(dialect: Dialect) -> QueryString:
    """The parents of each of `ids`, up to `max_depth` of them, nearest first; each step carries
    the session it started from (`origin`), so one walk serves every chain."""
    return QueryString(
        "WITH RECURSIVE chain(origin, id, depth) AS ("
        "SELECT {}, {}, 1 FROM {} WHERE {} AND {} IS NOT NULL"
        " UNION ALL "
        "SELECT chain.origin, {}, chain.depth + 1 FROM {} JOIN chain ON {} = chain.id"
        " WHERE {} IS NOT NULL AND chain.depth < {}"
        ") SELECT chain.origin AS origin, {} FROM chain JOIN {} ON {} = chain.id"
        " ORDER BY chain.depth",
        ID,
        PARENT,
        TABLE,
        dialect.is_in(ID, Param("ids"), "uuid"),
        PARENT,
        PARENT,
        TABLE,
        ID,
        PARENT,
        Param("max_depth"),
        COLUMNS,
        TABLE,
        ID,
    )


def _children(dialect: Dialect, *, after: bool) -> QueryString:
    newest_first = listing.order_by(CREATED_AT, descending=True)
    bound = (
        QueryString(" AND {}", listing.keyset(CREATED_AT, "after", smaller=True))
        if after
        else QueryString("")
    )
    if dialect.lateral:
        # PostgreSQL reads each parent's page straight off the (parent, created_at, id) index,
        # however many children it has.
        return QueryString(
            "SELECT c.* FROM unnest({}::uuid[]) AS p(parent_id) CROSS JOIN LATERAL ("
            "SELECT {} FROM {} WHERE {} = p.parent_id{}{} LIMIT {}) AS c"
            " ORDER BY c.parent, c.created_at DESC, c.id DESC",
            Param("parent_ids"),
            COLUMNS,
            TABLE,
            PARENT,
            bound,
            newest_first,
            Param("limit"),
        )
    # SQLite has no LATERAL: number each parent's children, newest first, and keep the first.
    return QueryString(
        "SELECT {} FROM (SELECT {}, row_number() OVER (PARTITION BY {}{}) AS position"
        " FROM {} WHERE {}{}) AS ranked WHERE position <= {} ORDER BY {}, position",
        NAMES,
        COLUMNS,
        PARENT,
        newest_first,
        TABLE,
        dialect.is_in(PARENT, Param("parent_ids"), "uuid"),
        bound,
        Param("limit"),
        name(PARENT),
    )


CHILDREN = Statement(functools.partial(_children, after=False))
CHILDREN_AFTER = Statement(functools.partial(_children, after=True))


@statement
def CHILDREN_COUNTS(dialect: Dialect) -> QueryString:
    return QueryString(
        "SELECT {}, count(*) AS n FROM {} WHERE {} GROUP BY {}",
        PARENT,
        TABLE,
        dialect.is_in(PARENT, Param("parent_ids"), "uuid"),
        PARENT,
    )
