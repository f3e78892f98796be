"""Per-request DataLoaders: the relations of a page of sessions cost one statement each, however
many sessions the page holds.

Each loader collects the keys its resolvers ask for during one step of execution and hands them
to the service in one call. A loader lives for one request, so nothing it caches outlives it."""

from __future__ import annotations

from uuid import UUID

from strawberry.dataloader import DataLoader

from app.errors import InvalidInput
from app.listing import Page
from app.model import Session
from app.service import SessionService

# A page of children: (parent id, first, after).
ChildrenKey = tuple[UUID, int | None, str | None]


class Loaders:
    """`session` by id, `children` pages by (parent, first, after), `child_count` by parent,
    `ancestors` by id."""

    def __init__(self, service: SessionService) -> None:
        self._service = service
        self.session: DataLoader[UUID, Session | None] = DataLoader(load_fn=self._sessions)
        self.children: DataLoader[ChildrenKey, Page] = DataLoader(load_fn=self._children)
        self.child_count: DataLoader[UUID, int] = DataLoader(load_fn=self._child_counts)
        self.ancestors: DataLoader[UUID, list[Session]] = DataLoader(load_fn=self._ancestors)

    async def _sessions(self, ids: list[UUID]) -> list[Session | None]:
        rows = await self._service.get_many(ids)
        return [rows.get(session_id) for session_id in ids]

    async def _children(self, keys: list[ChildrenKey]) -> list[Page | BaseException]:
        # One statement per distinct (first, after): in a query, one per `children` selection.
        groups: dict[tuple[int | None, str | None], list[UUID]] = {}
        for parent, first, after in keys:
            groups.setdefault((first, after), []).append(parent)
        found: dict[ChildrenKey, Page | BaseException] = {}
        for (first, after), parents in groups.items():
            try:
                pages = await self._service.children_pages(parents, first, after)
            except InvalidInput as error:
                found.update({(parent, first, after): error for parent in parents})
            else:
                found.update({(parent, first, after): page for parent, page in pages.items()})
        return [found[key] for key in keys]

    async def _child_counts(self, parents: list[UUID]) -> list[int]:
        counts = await self._service.children_counts(parents)
        return [counts[parent] for parent in parents]

    async def _ancestors(self, ids: list[UUID]) -> list[list[Session]]:
        chains = await self._service.ancestors_many(ids)
        return [chains[session_id] for session_id in ids]
