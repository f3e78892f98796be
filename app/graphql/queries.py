"""Queries: one session by id, and pages of sessions in keyset order."""

from __future__ import annotations

from functools import partial
from uuid import UUID

import strawberry

from app import listing
from app.errors import InvalidInput
from app.graphql.context import Info
from app.graphql.errors import bad_user_input
from app.graphql.inputs import SessionFilter, SessionOrder, given
from app.graphql.types import Session, SessionConnection


@strawberry.type
class Query:
    @strawberry.field
    async def session(self, info: Info, id: UUID) -> Session | None:
        row = await info.context.loaders.session.load(id)
        return None if row is None else Session.from_row(row)

    @strawberry.field
    async def sessions(
        self,
        info: Info,
        filter: SessionFilter | None = strawberry.UNSET,
        order_by: SessionOrder | None = strawberry.UNSET,
        first: int | None = strawberry.UNSET,
        after: str | None = strawberry.UNSET,
        last: int | None = strawberry.UNSET,
        before: str | None = strawberry.UNSET,
    ) -> SessionConnection:
        """`first`/`last` default to 50, at most 100; cursors come from this query's order."""
        service = info.context.service
        order = order_by.to_domain() if order_by else listing.NEWEST_FIRST
        try:
            criteria = filter.to_domain() if filter else None
            page = await service.list_page(
                criteria,
                order,
                first=given(first),
                after=given(after),
                last=given(last),
                before=given(before),
            )
        except InvalidInput as error:
            raise bad_user_input(error) from None
        return SessionConnection(page=page, count=partial(service.count, criteria))
