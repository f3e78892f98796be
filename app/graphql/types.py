"""The object types: a session and the connection that pages through sessions.

A `Session` is built straight from a service row. `messages` and `sbx_config` stay JSON text
until a query selects them; relations go through this request's DataLoaders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated
from uuid import UUID

import orjson
import strawberry
from strawberry.scalars import JSON

from app import listing, model
from app.errors import InvalidInput
from app.graphql.context import Info
from app.graphql.enums import InboxStatus
from app.graphql.errors import bad_user_input
from app.listing import DEFAULT_PAGE, MAX_PAGE
from app.model import describe


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
    first: Annotated[
        int | None, strawberry.argument(description=f"At most this many (0 to {MAX_PAGE}).")
    ] = DEFAULT_PAGE,
    after: Annotated[
        str | None, strawberry.argument(description="The children after this cursor.")
    ] = strawberry.UNSET,
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


@strawberry.type(
    description="One unit of agent work: a conversation about a repository, on a branch of its "
    "own, with its place in the inbox."
)
class Session:
    id: UUID = strawberry.field(description=describe("id"))
    repo: str = strawberry.field(description=describe("repo"))
    target_branch: str = strawberry.field(description=describe("target_branch"))
    title: str = strawberry.field(description=describe("title"))
    branch: str = strawberry.field(description=describe("branch"))
    messages: JSON | None = strawberry.field(resolver=_messages, description=describe("messages"))
    inbox_status: InboxStatus = strawberry.field(description=describe("inbox_status"))
    sbx_config: JSON | None = strawberry.field(
        resolver=_sbx_config, description=describe("sbx_config")
    )
    parent_id: UUID | None = strawberry.field(description=describe("parent"))
    parent: Session | None = strawberry.field(
        resolver=_parent, description="The session this one was spawned from, or null."
    )
    children: SessionConnection = strawberry.field(
        resolver=_children, description="The sessions spawned from this one, newest first."
    )
    ancestors: list[Session] = strawberry.field(
        resolver=_ancestors,
        description="The session's parent, its parent's parent and so on: nearest first, up to "
        "the root.",
    )
    created_at: datetime = strawberry.field(description=describe("created_at"))
    updated_at: datetime = strawberry.field(description=describe("updated_at"))
    version: int = strawberry.field(description=describe("version"))
    # The JSON columns as stored; parsed only when the field is selected.
    messages_json: strawberry.Private[str | None]
    sbx_config_json: strawberry.Private[str | None]

    @classmethod
    def from_row(cls, row: model.Session) -> Session:
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
