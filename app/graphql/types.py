"""The object types: a session and the connection that pages through sessions.

`Session` is derived from the declaration (`app.model.Session`): a field for each of its fields, in
its order, named and typed as `fields` says (`parent` is `parentId`), nullable where the
declaration admits null, described as the declaration says. The relations (`parent`, `children`,
`ancestors`) are written here, and follow `parentId`, the field they are made from.

A `Session` is built straight from a service row: its attributes are the row's keys, which the
declared fields read as strawberry reads any plain field. `messages` and `sbx_config` stay JSON
text until a query selects them; relations go through this request's DataLoaders. The declared
fields are added when this module is imported, so mypy cannot see them: resolvers read the
session's `row`, typed by the declaration, the one typed boundary."""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

import orjson
import strawberry
from strawberry.scalars import JSON

from app import listing, model
from app.errors import InvalidInput

# Strawberry takes an enum it meets unregistered for a new one: the domain's enums are
# registered, with their descriptions, before the fields below refer to them.
from app.graphql import enums  # noqa: F401
from app.graphql.context import Info
from app.graphql.errors import bad_user_input
from app.graphql.fields import graphql_name, graphql_type
from app.listing import DEFAULT_PAGE, MAX_PAGE

T = TypeVar("T")

# The declared field that the fields written in `Session`'s body (the relations) follow.
RELATIONS_FOLLOW = "parent"


def _json(text: str | None) -> JSON | None:
    if text is None:
        return None
    value: JSON = orjson.loads(text)
    return value


def _json_resolver(name: str) -> Callable[[Session], JSON | None]:
    """The resolver of the declared JSON field `name`: its stored text, parsed when selected."""

    def resolve(root: strawberry.Parent[Session]) -> JSON | None:
        stored: Mapping[str, Any] = root.row
        return _json(stored[name])

    return resolve


def _declared_field(name: str) -> object:
    """The field of the declared field `name`. A JSON field's resolver parses the stored text,
    when the field is selected; any other field is read as it is stored."""
    graphql, description = graphql_name(name), model.describe(name)
    if name in model.JSON_FIELDS:
        return strawberry.field(
            name=graphql, resolver=_json_resolver(name), description=description
        )
    return strawberry.field(name=graphql, description=description)


def _declared_fields(cls: type[T]) -> type[T]:
    """`cls` with a field for each of the declaration's fields, in its order; the fields of its
    own body follow `RELATIONS_FOLLOW`."""
    own: dict[str, Any] = cls.__annotations__
    hints = typing.get_type_hints(model.Session, include_extras=True)
    if clash := own.keys() & hints.keys():  # pragma: no cover - a mistake in this module
        raise TypeError(f"{cls.__name__} declares {sorted(clash)} twice")
    annotations: dict[str, Any] = {}
    for name, hint in hints.items():
        type_ = graphql_type(hint)
        annotations[name] = type_ | None if name in model.NULLABLE else type_
        setattr(cls, name, _declared_field(name))
        if name == RELATIONS_FOLLOW:
            annotations.update(own)
    cls.__annotations__ = annotations
    return cls


# Resolvers of the relations. They are module functions, not methods, so that `Session` can hold
# its fields in the contract's order.


async def _parent(root: strawberry.Parent[Session], info: Info) -> Session | None:
    parent = root.row["parent"]
    if parent is None:
        return None
    row = await info.context.loaders.session.load(parent)
    return None if row is None else Session.from_row(row)


async def _children(
    root: strawberry.Parent[Session],
    info: Info,
    first: Annotated[
        int | None, strawberry.argument(description=f"At most this many (0 to {MAX_PAGE}).")
    ] = DEFAULT_PAGE,
    after: Annotated[
        str | None, strawberry.argument(description="The children after this cursor.")
    ] = strawberry.UNSET,
) -> SessionConnection:
    loaders = info.context.loaders
    id = root.row["id"]
    key = (id, first, None if after is strawberry.UNSET else after)
    try:
        page = await loaders.children.load(key)
    except InvalidInput as error:
        raise bad_user_input(error) from None
    return SessionConnection(page=page, count=lambda: loaders.child_count.load(id))


async def _ancestors(root: strawberry.Parent[Session], info: Info) -> list[Session]:
    rows = await info.context.loaders.ancestors.load(root.row["id"])
    return [Session.from_row(row) for row in rows]


@strawberry.type(
    description="One unit of agent work: a conversation about a repository, on a branch of its "
    "own, with its place in the inbox."
)
@_declared_fields
class Session:
    # The stored session. Its keys are also the attributes the declared fields read.
    row: strawberry.Private[model.Session]
    # `parent` in GraphQL; the attribute `parent` is the declared field, the parent's id.
    parent_session: Session | None = strawberry.field(
        name="parent",
        resolver=_parent,
        description="The session this one was spawned from, or null.",
    )
    children: SessionConnection = strawberry.field(
        resolver=_children, description="The sessions spawned from this one, newest first."
    )
    ancestors: list[Session] = strawberry.field(
        resolver=_ancestors,
        description="The session's parent, its parent's parent and so on: nearest first, up to "
        "the root.",
    )

    @classmethod
    def from_row(cls, row: model.Session) -> Session:
        """The session that `row` holds, for an answer."""
        # A page of sessions builds one per row, so not through `__init__`: one update of the
        # instance's attributes gives each declared field its value, named as in the row.
        session = cls.__new__(cls)
        session.__dict__.update(row)
        session.row = row
        return session


@strawberry.type(description="Where a page lies in the whole list.")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="Paging forward: more items follow this page. Paging backward: `before` "
        "was given."
    )
    has_previous_page: bool = strawberry.field(
        description="Paging backward: more items precede this page. Paging forward: `after` "
        "was given."
    )
    start_cursor: str | None = strawberry.field(
        description="The cursor of the page's first item; null for an empty page."
    )
    end_cursor: str | None = strawberry.field(
        description="The cursor of the page's last item; null for an empty page."
    )


@strawberry.type(description="A session and its place in a list.")
class SessionEdge:
    cursor: str = strawberry.field(
        description="This place, for `after` or `before`: opaque, and stable however many "
        "sessions are created."
    )
    node: Session = strawberry.field(description="The session.")


def _edges(root: strawberry.Parent[SessionConnection]) -> list[SessionEdge]:
    cursor = root.page.cursor
    return [SessionEdge(cursor=cursor(row), node=Session.from_row(row)) for row in root.page.rows]


def _nodes(root: strawberry.Parent[SessionConnection]) -> list[Session]:
    return [Session.from_row(row) for row in root.page.rows]


def _page_info(root: strawberry.Parent[SessionConnection]) -> PageInfo:
    page = root.page
    rows = page.rows
    return PageInfo(
        has_next_page=page.has_next,
        has_previous_page=page.has_previous,
        start_cursor=page.cursor(rows[0]) if rows else None,
        end_cursor=page.cursor(rows[-1]) if rows else None,
    )


async def _total_count(root: strawberry.Parent[SessionConnection]) -> int:
    return await root.count()


@strawberry.type(description="A page of sessions, in keyset order.")
class SessionConnection:
    edges: list[SessionEdge] = strawberry.field(
        resolver=_edges, description="The page's sessions, each with its cursor."
    )
    nodes: list[Session] = strawberry.field(
        resolver=_nodes, description="The page's sessions, when no cursor is needed."
    )
    page_info: PageInfo = strawberry.field(
        resolver=_page_info, description="Where this page lies, to ask for the next one."
    )
    total_count: int = strawberry.field(
        resolver=_total_count,
        description="How many sessions the whole list holds (not only this page); counted only "
        "when asked for.",
    )
    page: strawberry.Private[listing.Page]
    # Runs the count; called only when `totalCount` is selected.
    count: strawberry.Private[Callable[[], Awaitable[int]]]
