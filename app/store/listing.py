"""Listing statements: a `SessionFilter`'s conditions, keyset bounds and sort orders as SQL.

A listing's text depends only on its shape (which conditions apply, the order, which bounds),
never on its values (a list of statuses is one parameter), so each shape is composed and
compiled once (`functools.cache`; there are a few thousand shapes at most, a handful in use)
and its values bound at run time."""

from __future__ import annotations

import functools
from typing import Any

from piccolo.columns import Column
from piccolo.querystring import QueryString

from app.listing import Cursor, SessionFilter, SessionOrder
from app.store import schema
from app.store.dialect import Dialect
from app.store.statement import Param, Statement


def shape(filter: SessionFilter) -> tuple[str, ...]:
    """The names of the conditions `filter` sets."""
    names: list[str] = []
    if filter.inbox_status is not None:
        names.append("inbox_status")
    if filter.repo is not None:
        names.append("repo")
    if filter.parent_id is not None:
        names.append("parent_id")
    if filter.is_root is not None:
        names.append("root" if filter.is_root else "child")
    if filter.title_contains:
        names.append("title_contains")
    if filter.created_after is not None:
        names.append("created_after")
    if filter.created_before is not None:
        names.append("created_before")
    return tuple(names)


def values(filter: SessionFilter, dialect: Dialect) -> dict[str, Any]:
    """The values of `filter`'s conditions, by the names their statements take."""
    statuses = filter.inbox_status
    title = filter.title_contains
    return {
        "inbox_status": None if statuses is None else dialect.array(s.value for s in statuses),
        "repo": filter.repo,
        "parent_id": filter.parent_id,
        "title_contains": "%" + _escape_like(title.lower()) + "%" if title else None,
        "created_after": filter.created_after,
        "created_before": filter.created_before,
    }


def bounds(after: Cursor | None, before: Cursor | None) -> dict[str, Any]:
    """The values of keyset bounds, by the names their statements take."""
    found: dict[str, Any] = {}
    if after is not None:
        found.update(after_value=after.value, after_id=after.id)
    if before is not None:
        found.update(before_value=before.value, before_id=before.id)
    return found


def _condition(name: str, dialect: Dialect) -> QueryString:
    if name == "inbox_status":
        return dialect.is_in(schema.column("inbox_status"), Param(name), "text")
    if name == "repo":
        return QueryString("{} = {}", schema.column("repo"), Param(name))
    if name == "parent_id":
        return QueryString("{} = {}", schema.PARENT, Param(name))
    if name == "root":
        return QueryString("{} IS NULL", schema.PARENT)
    if name == "child":
        return QueryString("{} IS NOT NULL", schema.PARENT)
    if name == "title_contains":
        return QueryString("lower({}) LIKE {} ESCAPE '\\'", schema.column("title"), Param(name))
    if name == "created_after":
        return QueryString("{} > {}", schema.CREATED_AT, Param(name))
    if name == "created_before":
        return QueryString("{} < {}", schema.CREATED_AT, Param(name))
    raise ValueError(name)


def keyset(column: Column, bound: str, *, smaller: bool) -> QueryString:
    """Rows strictly past the `bound` ("after" or "before") cursor in the order
    `(column, id)`: towards smaller keys, or larger ones."""
    template = (
        "({} < {} OR ({} = {} AND {} < {}))" if smaller else "({} > {} OR ({} = {} AND {} > {}))"
    )
    value, ident = Param(bound + "_value"), Param(bound + "_id")
    return QueryString(template, column, value, column, value, schema.ID, ident)


def where(conditions: list[QueryString]) -> QueryString:
    """` WHERE` and the conditions ANDed, or nothing."""
    if not conditions:
        return QueryString("")
    return QueryString(" WHERE {}", schema.joined(conditions, " AND "))


def order_by(column: Column, *, descending: bool) -> QueryString:
    """`(column, id)`, one way: the order every listing reads in."""
    template = " ORDER BY {} DESC, {} DESC" if descending else " ORDER BY {} ASC, {} ASC"
    return QueryString(template, column, schema.ID)


@functools.cache
def select(
    conditions: tuple[str, ...],
    order: SessionOrder,
    *,
    after: bool = False,
    before: bool = False,
    backward: bool = False,
    limited: bool = True,
) -> Statement:
    """Rows that meet `conditions` in `order`, after and before the bounds given, read the
    other way when `backward`; at most `limit` when `limited`."""
    column = schema.column(order.field.value)

    def build(dialect: Dialect) -> QueryString:
        found = [_condition(name, dialect) for name in conditions]
        # Going "after" in a descending order means going to smaller keys.
        if after:
            found.append(keyset(column, "after", smaller=order.descending))
        if before:
            found.append(keyset(column, "before", smaller=not order.descending))
        query = QueryString(
            "SELECT {} FROM {}{}{}",
            schema.COLUMNS,
            schema.TABLE,
            where(found),
            order_by(column, descending=order.descending != backward),
        )
        return QueryString("{} LIMIT {}", query, Param("limit")) if limited else query

    return Statement(build)


@functools.cache
def count(conditions: tuple[str, ...]) -> Statement:
    """How many rows meet `conditions`."""

    def build(dialect: Dialect) -> QueryString:
        found = [_condition(name, dialect) for name in conditions]
        return QueryString("SELECT count(*) AS n FROM {}{}", schema.TABLE, where(found))

    return Statement(build)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
