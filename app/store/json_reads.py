"""Reads answered as JSON text built by PostgreSQL: a tree of what to build (`Shape`, made from a
GraphQL document by `app.graphql.compiled`) turned into one statement whose single value is the
answer's `data`, so no row becomes a Python object on the way.

Objects are `json_build_object` in the order asked, so the keys come out as the document lists
them; `messages` and `sbx_config` are the stored JSONB, embedded as they are; a list is
`json_agg` over a keyset page read as `SessionStore.page` reads it (one row more than the page
tells whether there is another); `parent` is a correlated subselect, `children` a page per row.
Each value given at run time is a parameter: the text of a statement depends only on the shape
of what is read (which filters, bounds and directions), so PostgreSQL prepares it once per
connection and shape (asyncpg's statement cache).

The statements are written as text, not composed with Piccolo's `QueryString`, which would
compile anew for every request: what goes into that text is only this module's aliases, the
schema's column names, integers and `$n` placeholders, never a value. It is long because the
tree and the SQL of each of its nodes read best side by side."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app import listing
from app.listing import SessionFilter, SessionOrder
from app.store import schema
from app.store.dialect import POSTGRES
from app.store.listing import shape as filter_shape
from app.store.listing import values as filter_values
from app.tables import InboxStatus

# json_build_object takes at most 100 arguments, a key and a value each.
MAX_KEYS = 50
_KEY = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


# What to build. A `Shape` is an object: its keys, each with what its value is.


@dataclass(frozen=True, slots=True)
class Column:
    """A stored field of the session, by its name in the declaration (`app.model`)."""

    name: str


@dataclass(frozen=True, slots=True)
class Constant:
    """A text known in advance (`__typename`)."""

    text: str


@dataclass(frozen=True, slots=True)
class Parent:
    """The session's parent, or null."""

    shape: Shape


@dataclass(frozen=True, slots=True)
class Ancestors:
    """The session's parents, nearest first, at most `max_depth`."""

    shape: Shape
    max_depth: int


@dataclass(frozen=True, slots=True)
class Connection:
    """A page of sessions: `node` names the listing whose arguments are given at run time (a
    `Listing` under that name); the page's own fields are in `shape`."""

    node: int
    shape: Shape


@dataclass(frozen=True, slots=True)
class Children:
    """The session's children, newest first, as a page."""

    connection: Connection


@dataclass(frozen=True, slots=True)
class Edges:
    shape: Shape  # of an edge: Cursor, Node, Constant


@dataclass(frozen=True, slots=True)
class Nodes:
    shape: Shape


@dataclass(frozen=True, slots=True)
class Node:
    shape: Shape


@dataclass(frozen=True, slots=True)
class PageInfo:
    shape: Shape  # of the page's place: HasNext, HasPrevious, StartCursor, EndCursor, Constant


class Cursor:
    pass


class HasNext:
    pass


class HasPrevious:
    pass


class StartCursor:
    pass


class EndCursor:
    pass


class TotalCount:
    pass


@dataclass(frozen=True, slots=True)
class SessionById:
    """The root field `session(id:)`: the id is the value named `node`."""

    node: int
    shape: Shape


Value = (
    Column
    | Constant
    | Parent
    | Ancestors
    | Children
    | Connection
    | Edges
    | Nodes
    | Node
    | PageInfo
    | SessionById
    | Cursor
    | HasNext
    | HasPrevious
    | StartCursor
    | EndCursor
    | TotalCount
)


@dataclass(frozen=True, slots=True)
class Shape:
    keys: tuple[tuple[str, Value], ...]


@dataclass(frozen=True, slots=True)
class Listing:
    """What one page reads, as the service's paging rules decided it: `limit` rows after and
    before the cursors given, read backward (then turned around) when `backward`."""

    filter: SessionFilter
    order: SessionOrder
    limit: int
    after: listing.Cursor | None = None
    before: listing.Cursor | None = None
    backward: bool = False
    # The filter's values by the names of its conditions, worked out once for every parameter
    # that takes one (the page and its count each do).
    conditions: dict[str, Any] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", filter_values(self.filter, POSTGRES))

    def key(self) -> tuple[Any, ...]:
        """What the statement's text depends on."""
        return (
            filter_shape(self.filter),
            self.order,
            self.after is not None,
            self.before is not None,
            self.backward,
        )


# A statement: its text, and how to take its parameters from the values of a run (the id of a
# `SessionById`, the `Listing` of a `Connection`, by node).
Values = dict[int, Any]


@dataclass(slots=True)
class Statement:
    sql: str
    parameters: list[Callable[[Values], Any]] = field(default_factory=list)

    def arguments(self, values: Values) -> list[Any]:
        return [parameter(values) for parameter in self.parameters]


class _Builder:
    def __init__(self, listings: Values) -> None:
        self.listings = listings
        self.parameters: list[Callable[[Values], Any]] = []
        self.aliases = 0

    def parameter(self, get: Callable[[Values], Any], cast: str) -> str:
        self.parameters.append(get)
        return f"${len(self.parameters)}::{cast}"

    def alias(self) -> str:
        self.aliases += 1
        return f"s{self.aliases}"

    def object(self, shape: Shape, row: str, page: _Page | None = None) -> str:
        if len(shape.keys) > MAX_KEYS:
            raise Uncompilable(f"more than {MAX_KEYS} keys in one object")
        parts = []
        for key, value in shape.keys:
            if not _KEY.fullmatch(key):  # pragma: no cover - GraphQL names are all like this
                raise Uncompilable(f"key {key!r}")
            parts.append(f"'{key}', {self.value(value, row, page)}")
        return f"json_build_object({', '.join(parts)})"

    def value(self, value: Value, row: str, page: _Page | None) -> str:
        match value:
            case Column(name):
                return _column(name, row)
            case Constant(text):
                return _text(text)
            case Parent(shape):
                inner = self.alias()
                parent = _db_name("parent")
                return (
                    f"(SELECT {self.object(shape, inner)} FROM {TABLE} {inner} "
                    f"WHERE {inner}.id = {row}.{parent})"
                )
            case Ancestors(shape, max_depth):
                return self.ancestors(shape, max_depth, row)
            case Children(connection):
                return self.connection(connection, row)
            case Connection():
                return self.connection(value, None)
            case SessionById(node, shape):
                inner = self.alias()
                id = self.parameter(lambda values: values[node], "uuid")
                built = self.object(shape, inner)
                return f"(SELECT {built} FROM {TABLE} {inner} WHERE {inner}.id = {id})"
        if page is None:  # pragma: no cover - the planner puts page fields in pages only
            raise Uncompilable(f"{type(value).__name__} outside a page")
        return page.value(self, value, row)

    def connection(self, connection: Connection, parent_row: str | None) -> str:
        node = connection.node
        read: Listing = self.listings[node]
        page = _Page(self, node, read, parent_row)
        fields = self.object(connection.shape, page.row, page)
        # Grouped by nothing: one row, however many the page holds, when no field aggregates.
        return f"(SELECT {fields} FROM {page.source()} {page.row} GROUP BY ())"

    def ancestors(self, shape: Shape, max_depth: int, row: str) -> str:
        chain, inner = self.alias(), self.alias()
        parent = _db_name("parent")
        return (
            f"(SELECT coalesce(json_agg({self.object(shape, inner)} ORDER BY {inner}.depth), "
            f"'[]'::json) FROM (WITH RECURSIVE {chain} AS ("
            f"SELECT p.*, 1 AS depth FROM {TABLE} p WHERE p.id = {row}.{parent} "
            f"UNION ALL SELECT p.*, c.depth + 1 FROM {TABLE} p JOIN {chain} c "
            f"ON p.id = c.{parent} WHERE c.depth < {int(max_depth)}) "
            f"SELECT * FROM {chain}) {inner})"
        )


class _Page:
    """One page being built: its rows (numbered `rn` in the order they are read) and the
    expressions of its fields over them."""

    def __init__(self, builder: _Builder, node: int, read: Listing, parent_row: str | None) -> None:
        self.builder = builder
        self.node = node
        self.read = read
        self.parent_row = parent_row
        self.row = builder.alias()
        self.limit = builder.parameter(lambda values: values[node].limit, "int")

    def conditions(self, row: str, *, bounded: bool) -> list[str]:
        read, builder, node = self.read, self.builder, self.node
        found = []
        if self.parent_row is not None:
            found.append(f"{row}.{_db_name('parent')} = {self.parent_row}.id")
        for name in filter_shape(read.filter):
            found.append(_condition(name, row, builder, node))
        if bounded:
            column = f"{row}.{_db_name(read.order.field.value)}"
            cast = "text" if read.order.field is listing.SortField.TITLE else "timestamptz"
            for bound, smaller in (
                ("after", read.order.descending),
                ("before", not read.order.descending),
            ):
                cursor = getattr(read, bound)
                if cursor is None:
                    continue
                value = builder.parameter(_cursor_part(node, bound, "value"), cast)
                ident = builder.parameter(_cursor_part(node, bound, "id"), "uuid")
                op = "<" if smaller else ">"
                found.append(
                    f"({column} {op} {value} OR ({column} = {value} AND {row}.id {op} {ident}))"
                )
        return found

    def order(self, row: str, *, backward: bool) -> str:
        read = self.read
        way = "DESC" if read.order.descending != backward else "ASC"
        column = _db_name(read.order.field.value)
        return f"{row}.{column} {way}, {row}.id {way}"

    def source(self) -> str:
        inner, rows = self.builder.alias(), self.builder.alias()
        where = _where(self.conditions(inner, bounded=True))
        order = self.order(inner, backward=self.read.backward)
        numbered = self.order(rows, backward=self.read.backward)
        return (
            f"(SELECT {rows}.*, row_number() OVER (ORDER BY {numbered}) AS rn FROM "
            f"(SELECT * FROM {TABLE} {inner}{where} ORDER BY {order} LIMIT {self.limit} + 1) "
            f"{rows})"
        )

    def listed(self, expression: str) -> str:
        """The page's values of `expression`, in the page's order, as a JSON array."""
        way = "DESC" if self.read.backward else "ASC"
        return (
            f"coalesce(json_agg({expression} ORDER BY {self.row}.rn {way}) "
            f"FILTER (WHERE {self.row}.rn <= {self.limit}), '[]'::json)"
        )

    def end(self, expression: str, *, first: bool) -> str:
        way = "DESC" if self.read.backward == first else "ASC"
        return (
            f"(array_agg({expression} ORDER BY {self.row}.rn {way}) "
            f"FILTER (WHERE {self.row}.rn <= {self.limit}))[1]"
        )

    def value(self, builder: _Builder, value: Value, row: str) -> str:
        read = self.read
        more = f"count({self.row}.rn) > {self.limit}"
        match value:
            case Nodes(shape):
                return self.listed(builder.object(shape, row))
            case Edges(shape):
                return self.listed(builder.object(shape, row, self))
            case Node(shape):
                return builder.object(shape, row)
            case Cursor():
                return self.cursor(row)
            case PageInfo(shape):
                return builder.object(shape, row, self)
            case HasNext():
                return _boolean(read.before is not None) if read.backward else more
            case HasPrevious():
                return more if read.backward else _boolean(read.after is not None)
            case StartCursor():
                return self.end(self.cursor(row), first=True)
            case EndCursor():
                return self.end(self.cursor(row), first=False)
            case TotalCount():
                counted = builder.alias()
                where = _where(self.conditions(counted, bounded=False))
                return f"(SELECT count(*) FROM {TABLE} {counted}{where})"
        raise Uncompilable(f"{type(value).__name__} in a page")  # pragma: no cover

    def cursor(self, row: str) -> str:
        """`app.listing.encode_cursor`'s text: base64url, unpadded, of `[field, value, id]`."""
        sort = self.read.order.field
        column = f"{row}.{_db_name(sort.value)}"
        value = (
            f"to_json({column})::text"
            if sort is listing.SortField.TITLE
            else (f"'\"' || {_isoformat(column)} || '\"'")
        )
        raw = f"'[\"{sort.value}\",' || {value} || ',\"' || {row}.id::text || '\"]'"
        return f"rtrim(translate(encode(convert_to({raw}, 'UTF8'), 'base64'), E'+/\\n', '-_'), '=')"


class Uncompilable(Exception):
    """What a document asks for has no statement here; Strawberry answers it."""


TABLE = "session"


def statement(shape: Shape, listings: Values) -> Statement:
    """The statement whose one value is the JSON text of `shape` (the root's fields), with the
    pages read as `listings` (by node) say."""
    builder = _Builder(listings)
    sql = f"SELECT {builder.object(shape, '_')}::text"
    return Statement(sql, builder.parameters)


def _cursor_part(node: int, bound: str, part: str) -> Callable[[Values], Any]:
    """The `part` ("value" or "id") of the `bound` cursor of the listing of `node`."""
    return lambda values: getattr(getattr(values[node], bound), part)


def _db_name(name: str) -> str:
    return str(schema.column(name)._meta.db_column_name)


def _column(name: str, row: str) -> str:
    expression = f"{row}.{_db_name(name)}"
    if name == "inbox_status":
        cases = " ".join(f"WHEN '{status.value}' THEN '{status.name}'" for status in InboxStatus)
        return f"(CASE {expression} {cases} END)"
    if name in ("created_at", "updated_at"):
        return _isoformat(expression)
    return expression


def _isoformat(expression: str) -> str:
    """`datetime.isoformat()` of a stored time, in UTC: the fraction only when not zero."""
    utc = f"({expression} AT TIME ZONE 'UTC')"
    return (
        f"(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
        f"extract(microseconds FROM {utc})::bigint % 1000000 = 0 THEN '' "
        f"ELSE to_char({utc}, '.US') END || '+00:00')"
    )


def _text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _boolean(value: bool) -> str:
    return "true" if value else "false"


def _where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _condition(name: str, row: str, builder: _Builder, node: int) -> str:
    def value(values: Values) -> Any:
        return values[node].conditions[name]

    parent = _db_name("parent")
    if name == "inbox_status":
        return f"{row}.{_db_name('inbox_status')} = ANY({builder.parameter(value, 'text[]')})"
    if name == "repo":
        return f"{row}.{_db_name('repo')} = {builder.parameter(value, 'text')}"
    if name == "parent_id":
        return f"{row}.{parent} = {builder.parameter(value, 'uuid')}"
    if name == "root":
        return f"{row}.{parent} IS NULL"
    if name == "child":
        return f"{row}.{parent} IS NOT NULL"
    if name == "title_contains":
        title = builder.parameter(value, "text")
        return f"lower({row}.{_db_name('title')}) LIKE {title} ESCAPE '\\'"
    if name == "created_after":
        return f"{row}.{_db_name('created_at')} > {builder.parameter(value, 'timestamptz')}"
    if name == "created_before":
        return f"{row}.{_db_name('created_at')} < {builder.parameter(value, 'timestamptz')}"
    raise ValueError(name)  # pragma: no cover
