"""The `session` table as the store's statements name it, derived from the declarations: the
columns of a row are the keys of `app.model.Session`, each found in the Piccolo table
`app.tables.Session` (a key without a column fails at import)."""

from __future__ import annotations

from collections.abc import Sequence

from piccolo.columns import Column
from piccolo.querystring import QueryString

from app import model, tables

TABLE = QueryString(tables.Session._meta.tablename)
ID = tables.Session.id
PARENT = tables.Session.parent
CREATED_AT = tables.Session.created_at
UPDATED_AT = tables.Session.updated_at
VERSION = tables.Session.version
IDEMPOTENCY_KEY = tables.Session.idempotency_key
IDEMPOTENCY_FINGERPRINT = tables.Session.idempotency_fingerprint

# The columns of a row, in the declaration's order.
ROW: tuple[Column, ...] = tuple(
    tables.Session._meta.get_column_by_name(name) for name in model.Session.__annotations__
)


def column(name: str) -> Column:
    """The column of the session's field `name`."""
    return tables.Session._meta.get_column_by_name(name)


def name(of: Column) -> QueryString:
    """A column by its bare name: the target of `SET`, an `INSERT` column, or a column of a
    derived table. (A `Column` given to a `QueryString` renders qualified, `"session"."id"`.)"""
    return QueryString(of._meta.db_column_name)


def joined(parts: Sequence[Column | QueryString], separator: str = ", ") -> QueryString:
    """`parts` one after the other, `separator` between them."""
    if not parts:
        raise ValueError("nothing to join")
    result = QueryString("{}", parts[0])
    for part in parts[1:]:
        result = QueryString("{}{}{}", result, QueryString(separator), part)
    return result


# Every column of a row, qualified (for SELECT and RETURNING), and by bare name.
COLUMNS = joined(ROW)
NAMES = joined([name(of) for of in ROW])
# The Session keys that hold JSON (passed as text, read back as text).
JSON = model.JSON_FIELDS
