"""Every rule and every query about sessions. The REST and GraphQL faces call this and nothing
else.

Rows are returned as read-only mappings straight from the driver (no ORM object per row), with
`messages` and `sbx_config` left as JSON text, so a reader can pass them through unparsed."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from app import validation
from app.db import Database, IntegrityError, Row
from app.errors import (
    BranchTaken,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    ParentCycle,
    ParentNotFound,
    VersionConflict,
)
from app.events import EventKind, EventPublisher, SessionEvent
from app.listing import (
    MAX_PAGE,
    NEWEST_FIRST,
    Page,
    SessionFilter,
    SessionOrder,
    decode_cursor,
    keyset_condition,
    page_size,
)
from app.naming import Namer, with_suffix

log = logging.getLogger(__name__)

COLUMNS = (
    "id, repo, target_branch, title, branch, messages, inbox_status, sbx_config, parent, "
    "created_at, updated_at, version"
)
UPDATABLE = frozenset(
    {"repo", "target_branch", "title", "branch", "messages", "inbox_status", "sbx_config", "parent"}
)
JSON_FIELDS = frozenset({"messages", "sbx_config"})
NULLABLE = JSON_FIELDS | {"parent"}
# Attempts at a free branch name when the generated one is taken in the repo.
BRANCH_ATTEMPTS = 8
# Parent changes are serialized by this PostgreSQL advisory lock, so two concurrent updates
# (A->B, B->A) cannot both pass the cycle check. SQLite serializes every writer anyway.
_PARENT_LOCK = 0x5E5511
# A chain longer than this is treated as a cycle: no sane inbox nests that deep.
MAX_ANCESTRY = 1000


@dataclass(frozen=True, slots=True)
class Created:
    session: Row
    # True when an idempotent retry returned the first creation's session.
    replayed: bool


def _now() -> datetime:
    return datetime.now(UTC)


def _constraint(exc: Exception) -> str:
    """Which rule the database enforced: 'branch', 'idempotency', 'parent' or 'check'."""
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return "parent"
    if isinstance(exc, asyncpg.UniqueViolationError):
        name = exc.constraint_name or ""
        return "idempotency" if "idempotency" in name else "branch"
    text = str(exc)
    if "FOREIGN KEY" in text:
        return "parent"
    if "idempotency_key" in text:
        return "idempotency"
    if "UNIQUE" in text:
        return "branch"
    return "check"


def _checked(current: Row | None, expected_version: int | None) -> Row:
    """`current`, when it exists at the expected version."""
    if current is None:
        raise NotFound("Session not found")
    if expected_version is not None and current["version"] != expected_version:
        raise VersionConflict(
            f"expected version {expected_version}, the session is at version {current['version']}",
            "version",
        )
    return current


class SessionService:
    def __init__(self, db: Database, namer: Namer, events: EventPublisher) -> None:
        self.db = db
        self.namer = namer
        self.events = events

    # Reads ---------------------------------------------------------------------------------

    async def get(self, session_id: UUID) -> Row | None:
        return await self.db.fetchrow(f"SELECT {COLUMNS} FROM session WHERE id = {{}}", session_id)

    async def get_many(self, ids: Sequence[UUID]) -> dict[UUID, Row]:
        if not ids:
            return {}
        marks = ", ".join("{}" for _ in ids)
        rows = await self.db.fetch(f"SELECT {COLUMNS} FROM session WHERE id IN ({marks})", *ids)
        return {UUID(str(row["id"])): row for row in rows}

    async def list_page(
        self,
        filter: SessionFilter | None = None,
        order: SessionOrder = NEWEST_FIRST,
        *,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        max_page: int = MAX_PAGE,
    ) -> Page:
        """One page in keyset order: `first` rows after `after`, or `last` rows before
        `before`; at most `max_page` rows."""
        if first is not None and last is not None:
            raise InvalidInput("give first or last, not both", "last")
        backward = last is not None or (before is not None and first is None)
        limit = page_size(last if backward else first, "last" if backward else "first", max_page)
        conditions, args = (filter or SessionFilter()).where()
        for argument, value, is_after in (("after", after, True), ("before", before, False)):
            if value is not None:
                cursor = decode_cursor(value, order.field, argument)
                condition, extra = keyset_condition(
                    cursor, after=is_after, descending=order.descending
                )
                conditions.append(condition)
                args.extend(extra)
        # Walking backward reads the order reversed, then turns the page around.
        descending = order.descending != backward
        rows = await self.db.fetch(
            self._select(conditions, order.field.value, descending) + " LIMIT {}",
            *args,
            limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        if backward:
            rows.reverse()
            return Page(rows, has_next=before is not None, has_previous=more, order=order)
        return Page(rows, has_next=more, has_previous=after is not None, order=order)

    async def count(self, filter: SessionFilter | None = None) -> int:
        conditions, args = (filter or SessionFilter()).where()
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        row = await self.db.fetchrow(f"SELECT count(*) AS n FROM session{where}", *args)
        return int(row["n"]) if row else 0

    async def stream(self, filter: SessionFilter | None = None) -> AsyncGenerator[Row, None]:
        """Every matching session, newest first, from a server-side cursor."""
        conditions, args = (filter or SessionFilter()).where()
        async for row in self.db.stream(self._select(conditions, "created_at", True), args):
            yield row

    @staticmethod
    def _select(conditions: list[str], field: str, descending: bool) -> str:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        direction = "DESC" if descending else "ASC"
        return f"SELECT {COLUMNS} FROM session{where} ORDER BY {field} {direction}, id {direction}"

    async def children_pages(
        self, parent_ids: Sequence[UUID], first: int | None = None, after: str | None = None
    ) -> dict[UUID, Page]:
        """The first page of children (newest first) of each parent, in one statement."""
        limit = page_size(first, "first")
        conditions = ["parent IN (" + ", ".join("{}" for _ in parent_ids) + ")"]
        args: list[Any] = list(parent_ids)
        if after is not None:
            condition, extra = keyset_condition(
                decode_cursor(after, NEWEST_FIRST.field, "after"), after=True, descending=True
            )
            conditions.append(condition)
            args.extend(extra)
        rows = await self.db.fetch(
            f"SELECT * FROM (SELECT {COLUMNS}, row_number() OVER ("
            "PARTITION BY parent ORDER BY created_at DESC, id DESC) AS position "
            f"FROM session WHERE {' AND '.join(conditions)}) AS ranked "
            "WHERE position <= {} ORDER BY parent, position",
            *args,
            limit + 1,
        )
        grouped: dict[UUID, list[Row]] = {parent: [] for parent in parent_ids}
        for row in rows:
            grouped[UUID(str(row["parent"]))].append(row)
        return {
            parent: Page(
                children[:limit],
                has_next=len(children) > limit,
                has_previous=after is not None,
                order=NEWEST_FIRST,
            )
            for parent, children in grouped.items()
        }

    async def children_counts(self, parent_ids: Sequence[UUID]) -> dict[UUID, int]:
        marks = ", ".join("{}" for _ in parent_ids)
        rows = await self.db.fetch(
            f"SELECT parent, count(*) AS n FROM session WHERE parent IN ({marks}) GROUP BY parent",
            *parent_ids,
        )
        counts = dict.fromkeys(parent_ids, 0)
        counts.update({UUID(str(row["parent"])): int(row["n"]) for row in rows})
        return counts

    async def ancestors(self, session_id: UUID) -> list[Row]:
        """The chain of parents, nearest first, up to the root, in one recursive query."""
        return (await self.ancestors_many([session_id]))[session_id]

    async def ancestors_many(self, ids: Sequence[UUID]) -> dict[UUID, list[Row]]:
        """The chain of parents of each of `ids` (nearest first, up to the root; empty for a
        root or an unknown id), in one recursive query whatever their number."""
        chains: dict[UUID, list[Row]] = {session_id: [] for session_id in ids}
        if not chains:
            return chains
        marks = ", ".join("{}" for _ in chains)
        columns = ", ".join(f"s.{name.strip()}" for name in COLUMNS.split(","))
        # Each step carries the session it started from, so one walk serves every chain.
        rows = await self.db.fetch(
            "WITH RECURSIVE chain(origin, id, depth) AS ("
            f" SELECT id, parent, 1 FROM session WHERE id IN ({marks}) AND parent IS NOT NULL"
            " UNION ALL"
            " SELECT c.origin, s.parent, c.depth + 1 FROM session s JOIN chain c ON s.id = c.id"
            " WHERE s.parent IS NOT NULL AND c.depth < {}"
            f") SELECT c.origin AS origin, {columns} FROM chain c JOIN session s ON s.id = c.id"
            " ORDER BY c.depth",
            *chains,
            MAX_ANCESTRY,
        )
        for row in rows:
            chain = chains[UUID(str(row["origin"]))]
            chain.append({name: value for name, value in row.items() if name != "origin"})
        return chains

    # Writes --------------------------------------------------------------------------------

    async def create(
        self,
        *,
        repo: Any,
        target_branch: Any,
        messages: Any = None,
        parent: UUID | None = None,
        idempotency_key: str | None = None,
    ) -> Created:
        """A new session, `active`, named by the namer. With an idempotency key, a retry with
        the same content returns the first session; with other content it is refused."""
        repo = validation.required_text("repo", repo)
        target_branch = validation.required_text("target_branch", target_branch)
        messages = validation.json_document("messages", messages, containers_only=True)
        if idempotency_key is not None:
            idempotency_key = validation.required_text(
                "idempotency_key", idempotency_key, validation.IDEMPOTENCY_KEY_MAX
            )
        digest = validation.fingerprint(repo, target_branch, messages, str(parent or ""))
        if idempotency_key is not None:
            earlier = await self._replay(idempotency_key, digest)
            if earlier is not None:
                return Created(earlier, replayed=True)
        if parent is not None and not await self._exists(parent):
            raise ParentNotFound("parent session does not exist", "parent")

        # The model is asked before any connection is taken, so a slow namer cannot hold the pool.
        started = time.perf_counter()
        names = await self.namer.name(repo, target_branch, messages)
        log.info(
            "named session (namer=%s, %.0f ms)",
            names.namer,
            (time.perf_counter() - started) * 1000,
        )

        insert = (
            f"INSERT INTO session ({COLUMNS}, idempotency_key, idempotency_fingerprint) "
            f"VALUES ({{}}, {{}}, {{}}, {{}}, {{}}, {self.db.jsonb_param}, {{}}, "
            f"{self.db.jsonb_param}, {{}}, {{}}, {{}}, 1, {{}}, {{}}) "
            f"ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
        )
        branch = names.branch
        for _attempt in range(BRANCH_ATTEMPTS):
            now = _now()
            try:
                async with self._attaching(parent):
                    row = await self.db.fetchrow(
                        insert,
                        uuid.uuid4(),
                        repo,
                        target_branch,
                        names.title,
                        branch,
                        validation.dump_json(messages),
                        "active",
                        None,
                        parent,
                        now,
                        now,
                        idempotency_key,
                        digest if idempotency_key is not None else None,
                    )
            except IntegrityError as exc:
                kind = _constraint(exc)
                if kind == "parent":
                    raise ParentNotFound("parent session does not exist", "parent") from None
                if kind != "branch":
                    raise
                branch = with_suffix(names.branch)
                continue
            if row is None:
                # A concurrent request with the same key won the race.
                assert idempotency_key is not None
                earlier = await self._replay(idempotency_key, digest)
                if earlier is None:  # pragma: no cover - it was deleted in between
                    continue
                return Created(earlier, replayed=True)
            await self._publish(SessionEvent(EventKind.CREATED, row["id"], row))
            return Created(row, replayed=False)
        raise BranchTaken("no free branch name could be found for this repo", "branch")

    @asynccontextmanager
    async def _attaching(self, parent: UUID | None) -> AsyncIterator[None]:
        """Around an insert under `parent`: on PostgreSQL, a transaction that waits for a delete
        of the parent in flight (which takes the parent lock exclusively), so the new child is
        either refused or orphaned by that delete with a version bump, never silently by the
        foreign key. Creations share the lock, so they never wait for each other."""
        if parent is None or not self.db.is_postgres:
            yield
            return
        async with self.db.transaction():
            await self.db.execute("SELECT pg_advisory_xact_lock_shared({})", _PARENT_LOCK)
            yield

    async def _replay(self, key: str, digest: str) -> Row | None:
        row = await self.db.fetchrow(
            f"SELECT {COLUMNS}, idempotency_fingerprint FROM session WHERE idempotency_key = {{}}",
            key,
        )
        if row is None:
            return None
        if row["idempotency_fingerprint"] != digest:
            raise IdempotencyMismatch(
                "this idempotency key was used with a different request", "idempotency_key"
            )
        return {k: v for k, v in row.items() if k != "idempotency_fingerprint"}

    async def _exists(self, session_id: UUID) -> bool:
        return await self.db.fetchrow("SELECT 1 FROM session WHERE id = {}", session_id) is not None

    async def update(
        self,
        session_id: UUID,
        changes: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        merge_json: bool = False,
    ) -> Row:
        """Apply `changes` (a subset of UPDATABLE). With `merge_json`, `messages` and
        `sbx_config` are RFC 7396 merge patches over the stored values. A stale
        `expected_version` changes nothing. Every update that changes a field bumps `version`;
        one with no field at all returns the session as it is."""
        values = self._validated(changes)
        if not values:
            return await self._unchanged(session_id, expected_version)
        new_parent = values.get("parent")
        async with self.db.transaction():
            if self.db.is_postgres and new_parent is not None:
                await self.db.execute("SELECT pg_advisory_xact_lock({})", _PARENT_LOCK)
            current = await self.db.fetchrow(
                f"SELECT {COLUMNS} FROM session WHERE id = {{}}{self.db.lock_for_update}",
                session_id,
            )
            current = _checked(current, expected_version)
            if merge_json:
                for name in JSON_FIELDS & values.keys():
                    stored = current[name]
                    before = orjson.loads(stored) if stored is not None else None
                    values[name] = validation.merge_patch(before, values[name])
            if new_parent is not None and new_parent != current["parent"]:
                await self._check_parent(session_id, new_parent)
            row = await self._write(session_id, values)
        await self._publish(SessionEvent(EventKind.UPDATED, row["id"], row))
        return row

    async def _unchanged(self, session_id: UUID, expected_version: int | None) -> Row:
        return _checked(await self.get(session_id), expected_version)

    def _validated(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        unknown = changes.keys() - UPDATABLE
        if unknown:
            name = sorted(unknown)[0]
            raise InvalidInput(f"{name} cannot be changed", name)
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if value is None and name not in NULLABLE:
                raise InvalidInput(f"{name} cannot be null", name)
            if name in ("repo", "target_branch"):
                values[name] = validation.required_text(name, value)
            elif name == "title":
                values[name] = validation.title(value)
            elif name == "branch":
                values[name] = validation.branch(value)
            elif name == "inbox_status":
                values[name] = validation.inbox_status(value).value
            elif name == "messages":
                values[name] = validation.json_document(name, value, containers_only=True)
            elif name == "sbx_config":
                values[name] = validation.json_document(name, value)
            elif name == "parent":
                if value is not None and not isinstance(value, UUID):
                    raise InvalidInput("parent must be a UUID", "parent")
                values[name] = value
        return values

    async def _check_parent(self, session_id: UUID, parent: UUID) -> None:
        """`parent` exists and `session_id` is not among its ancestors (nor itself)."""
        if parent == session_id:
            raise ParentCycle("a session cannot be its own parent", "parent")
        row = await self.db.fetchrow(
            "WITH RECURSIVE chain(id, parent, depth) AS ("
            " SELECT id, parent, 0 FROM session WHERE id = {}"
            " UNION ALL"
            " SELECT s.id, s.parent, c.depth + 1 FROM session s JOIN chain c ON s.id = c.parent"
            " WHERE c.depth < {}"
            ") SELECT count(*) AS found, "
            " sum(CASE WHEN id = {} THEN 1 ELSE 0 END) AS cycle, max(depth) AS depth FROM chain",
            parent,
            MAX_ANCESTRY,
            session_id,
        )
        if row is None or not row["found"]:
            raise ParentNotFound("parent session does not exist", "parent")
        if row["cycle"] or row["depth"] >= MAX_ANCESTRY:
            raise ParentCycle("this parent would make the session its own ancestor", "parent")

    async def _write(self, session_id: UUID, values: Mapping[str, Any]) -> Row:
        assignments: list[str] = []
        args: list[Any] = []
        for name, value in values.items():
            if name in JSON_FIELDS:
                assignments.append(f"{name} = {self.db.jsonb_param}")
                args.append(validation.dump_json(value))
            else:
                assignments.append(f"{name} = {{}}")
                args.append(value)
        assignments.append("updated_at = {}")
        assignments.append("version = version + 1")
        try:
            row = await self.db.fetchrow(
                f"UPDATE session SET {', '.join(assignments)} WHERE id = {{}} RETURNING {COLUMNS}",
                *args,
                _now(),
                session_id,
            )
        except IntegrityError as exc:
            kind = _constraint(exc)
            if kind == "branch":
                raise BranchTaken(
                    "this branch is already used by another session of the repo", "branch"
                ) from None
            if kind == "parent":
                raise ParentNotFound("parent session does not exist", "parent") from None
            raise
        assert row is not None
        return row

    async def delete(self, session_id: UUID) -> Row:
        """Delete a session; its children lose their parent (a change to each of them)."""
        async with self.db.transaction():
            if self.db.is_postgres:
                # Waits for parent changes in flight: a child attached to this session while it
                # is being deleted would otherwise lose its parent to ON DELETE SET NULL, with
                # no version bump and no event.
                await self.db.execute("SELECT pg_advisory_xact_lock({})", _PARENT_LOCK)
            current = await self.db.fetchrow(
                f"SELECT {COLUMNS} FROM session WHERE id = {{}}{self.db.lock_for_update}",
                session_id,
            )
            if current is None:
                raise NotFound("Session not found")
            orphans = await self.db.fetch(
                "UPDATE session SET parent = NULL, updated_at = {}, version = version + 1 "
                f"WHERE parent = {{}} RETURNING {COLUMNS}",
                _now(),
                session_id,
            )
            await self.db.execute("DELETE FROM session WHERE id = {}", session_id)
        await self._publish(
            SessionEvent(EventKind.DELETED, current["id"], current),
            *(SessionEvent(EventKind.UPDATED, row["id"], row) for row in orphans),
        )
        return current

    async def _publish(self, *events: SessionEvent) -> None:
        """Announce committed changes. A failing bus costs the events, never the write."""
        try:
            await self.events.publish(events)
        except Exception:
            log.exception("could not publish %d session event(s)", len(events))
