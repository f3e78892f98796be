"""The object types: a session and the connection that pages through sessions.

A `Session` is built straight from a service row. `messages` and `sbx_config` stay JSON text
until a query selects them; relations go through this request's DataLoaders."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

import orjson
import strawberry
from strawberry.scalars import JSON

from app import listing, tables
from app.db import Row
from app.errors import InvalidInput
from app.graphql.context import Info
from app.graphql.errors import bad_user_input

# The domain's enums are the schema's: GraphQL names their members, rows hold their values.
strawberry.enum(tables.InboxStatus, name="InboxStatus")
strawberry.enum(listing.SortField, name="SessionSortField")


@strawberry.enum
class SortDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


def _json(text: str | None) -> JSON | None:
    if text is None:
        return None
    value: JSON = orjson.loads(text)
    return value


# Resolvers of the fields that are not plain columns. They are module functions, not methods,
# so that `Session` can list its fields in the contract's order.


def _messages(root: strawberry.Parent[Session]) -> JSON | None:
    return _json(root.messages_json)


def _sbx_config(root: strawberry.Parent[Session]) -> JSON | None:
    return _json(root.sbx_config_json)


async def _parent(root: strawberry.Parent[Session], info: Info) -> Session | None:
    if root.parent_id is None:
        return None
    row = await info.context.loaders.session.load(root.parent_id)
    return None if row is None else Session.from_row(row)


async def _children(
    root: strawberry.Parent[Session],
    info: Info,
    first: int | None = 50,
    after: str | None = strawberry.UNSET,
) -> SessionConnection:
    loaders = info.context.loaders
    key = (root.id, first, None if after is strawberry.UNSET else after)
    try:
        page = await loaders.children.load(key)
    except InvalidInput as error:
        raise bad_user_input(error) from None
    return SessionConnection(page=page, count=lambda: loaders.child_count.load(root.id))


async def _ancestors(root: strawberry.Parent[Session], info: Info) -> list[Session]:
    rows = await info.context.loaders.ancestors.load(root.id)
    return [Session.from_row(row) for row in rows]


@strawberry.type
class Session:
    id: UUID
    repo: str
    target_branch: str
    title: str
    branch: str
    messages: JSON | None = strawberry.field(resolver=_messages)
    inbox_status: tables.InboxStatus
    sbx_config: JSON | None = strawberry.field(resolver=_sbx_config)
    parent_id: UUID | None
    parent: Session | None = strawberry.field(resolver=_parent)
    children: SessionConnection = strawberry.field(resolver=_children)
    ancestors: list[Session] = strawberry.field(
        resolver=_ancestors, description="Nearest first, up to the root."
    )
    created_at: datetime
    updated_at: datetime
    version: int
    # The JSON columns as stored; parsed only when the field is selected.
    messages_json: strawberry.Private[str | None]
    sbx_config_json: strawberry.Private[str | None]

    @classmethod
    def from_row(cls, row: Row) -> Session:
        return cls(
            id=row["id"],
            repo=row["repo"],
            target_branch=row["target_branch"],
            title=row["title"],
            branch=row["branch"],
            messages_json=row["messages"],
            # The stored value ("active"); the enum serializes it by name (ACTIVE).
            inbox_status=row["inbox_status"],
            sbx_config_json=row["sbx_config"],
            parent_id=row["parent"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            version=row["version"],
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class SessionEdge:
    cursor: str
    node: Session


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


@strawberry.type
class SessionConnection:
    edges: list[SessionEdge] = strawberry.field(resolver=_edges)
    nodes: list[Session] = strawberry.field(resolver=_nodes)
    page_info: PageInfo = strawberry.field(resolver=_page_info)
    total_count: int = strawberry.field(
        resolver=_total_count, description="Counted only when asked for."
    )
    page: strawberry.Private[listing.Page]
    # Runs the count; called only when `totalCount` is selected.
    count: strawberry.Private[Callable[[], Awaitable[int]]]
