"""What PostgreSQL and SQLite say differently: the few fragments the store's statements use, and
how a list of values is passed as one parameter."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from piccolo.columns import Column
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.querystring import QueryString


class Dialect:
    """The fragments of one engine's SQL."""

    engine_type: str
    # Parent changes need the parent lock: PostgreSQL runs writers side by side; SQLite
    # serializes every writer (transactions take the write lock at BEGIN), so it needs none.
    locks_parents: bool
    # Whether a subquery in FROM may refer to the tables before it (`CROSS JOIN LATERAL`).
    lateral: bool
    # Appended to a SELECT that reads a row it will change, locking it until the transaction
    # ends (without blocking the foreign-key checks of other rows that point at it).
    lock_row: QueryString

    def json(self, value: Any) -> QueryString:
        """A JSON document given as text, as the value of a JSONB column."""
        raise NotImplementedError

    def is_in(self, column: Column | QueryString, values: Any, sql_type: str) -> QueryString:
        """`column` is one of `values`, a list given as one parameter (see `array`), so the
        statement's text is the same for any number of values."""
        raise NotImplementedError

    def array(self, values: Iterable[Any]) -> Any:
        """`values` as the one parameter `is_in` takes."""
        raise NotImplementedError


class Postgres(Dialect):
    engine_type = "postgres"
    locks_parents = True
    lateral = True
    lock_row = QueryString(" FOR NO KEY UPDATE")

    def json(self, value: Any) -> QueryString:
        return QueryString("{}::jsonb", value)

    def is_in(self, column: Column | QueryString, values: Any, sql_type: str) -> QueryString:
        cast = {"uuid": "{} = ANY({}::uuid[])", "text": "{} = ANY({}::text[])"}[sql_type]
        return QueryString(cast, column, values)

    def array(self, values: Iterable[Any]) -> Any:
        return list(values)


class SQLite(Dialect):
    engine_type = "sqlite"
    locks_parents = False
    lateral = False
    lock_row = QueryString("")

    def json(self, value: Any) -> QueryString:
        return QueryString("{}", value)

    def is_in(self, column: Column | QueryString, values: Any, sql_type: str) -> QueryString:
        return QueryString("{} IN (SELECT value FROM json_each({}))", column, values)

    def array(self, values: Iterable[Any]) -> Any:
        # A JSON array of text: UUIDs and status values compare as the text they are stored as.
        return orjson.dumps(list(values)).decode()


POSTGRES = Postgres()
SQLITE = SQLite()


def dialect_of(engine: Engine[Any]) -> Dialect:
    return POSTGRES if isinstance(engine, PostgresEngine) else SQLITE
