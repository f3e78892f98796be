"""What PostgreSQL and SQLite say differently: the few fragments the store's statements use (JSON
among them: its types, and appending to an array), and how a list of values is passed as one
parameter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

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
    # JSON's name (object, array, string, number, boolean, null; what PostgreSQL's
    # `jsonb_typeof` says) for each JSON type the engine's `json_type` names otherwise.
    json_types: ClassVar[Mapping[str, str]] = {}

    def json(self, value: Any) -> QueryString:
        """A JSON document given as text, as the value of a JSONB column."""
        raise NotImplementedError

    def array_or_empty(self, column: Column) -> QueryString:
        """The JSON in `column`, with a null (SQL's or JSON's) read as an empty array."""
        raise NotImplementedError

    def json_type(self, value: QueryString) -> QueryString:
        """The name of the JSON type of `value`, in the engine's words (see `json_types`)."""
        raise NotImplementedError

    def appended(self, array: QueryString, values: Any) -> QueryString:
        """The JSON array `array` followed by the elements of `values`, a JSON array given as
        text, in their order."""
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

    def array_or_empty(self, column: Column) -> QueryString:
        return QueryString("COALESCE(NULLIF({}, 'null'::jsonb), '[]'::jsonb)", column)

    def json_type(self, value: QueryString) -> QueryString:
        return QueryString("jsonb_typeof({})", value)

    def appended(self, array: QueryString, values: Any) -> QueryString:
        return QueryString("{} || {}", array, self.json(values))

    def is_in(self, column: Column | QueryString, values: Any, sql_type: str) -> QueryString:
        cast = {
            "uuid": "{} = ANY({}::uuid[])",
            "text": "{} = ANY({}::text[])",
            "bigint": "{} = ANY({}::bigint[])",
        }[sql_type]
        return QueryString(cast, column, values)

    def array(self, values: Iterable[Any]) -> Any:
        return list(values)


class SQLite(Dialect):
    engine_type = "sqlite"
    locks_parents = False
    lateral = False
    lock_row = QueryString("")
    json_types: ClassVar[Mapping[str, str]] = {
        "text": "string",
        "integer": "number",
        "real": "number",
        "true": "boolean",
        "false": "boolean",
    }

    def json(self, value: Any) -> QueryString:
        return QueryString("{}", value)

    def array_or_empty(self, column: Column) -> QueryString:
        return QueryString("COALESCE(NULLIF({}, 'null'), '[]')", column)

    def json_type(self, value: QueryString) -> QueryString:
        return QueryString("json_type({})", value)

    def appended(self, array: QueryString, values: Any) -> QueryString:
        # The two arrays' texts joined: the first without its closing bracket, a comma, the
        # second without its opening one. `json()` writes an array's text minified, from `[` to
        # `]`. The join reads each text a few times however many elements either has, where a
        # `json_insert` per element would parse the whole document once per element (and
        # SQLite 3.40 has no ORDER BY in `json_group_array` to rebuild it in order).
        return QueryString(
            "CASE WHEN json_array_length({}) = 0 THEN json({})"
            " WHEN json_array_length({}) = 0 THEN json({})"
            " ELSE substr(json({}), 1, length(json({})) - 1) || ',' || substr(json({}), 2) END",
            *(values, array, array, values, array, array, values),
        )

    def is_in(self, column: Column | QueryString, values: Any, sql_type: str) -> QueryString:
        return QueryString("{} IN (SELECT value FROM json_each({}))", column, values)

    def array(self, values: Iterable[Any]) -> Any:
        # A JSON array of text: UUIDs and status values compare as the text they are stored as.
        return orjson.dumps(list(values)).decode()


POSTGRES = Postgres()
SQLITE = SQLite()


def dialect_of(engine: Engine[Any]) -> Dialect:
    return POSTGRES if isinstance(engine, PostgresEngine) else SQLITE
