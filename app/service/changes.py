"""The changes to sessions (create, update, delete) and every rule they keep: validation,
naming, parents without cycles, versions, idempotency, and the events after commit."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
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
from app.naming import Namer, with_suffix
from app.service.reads import COLUMNS, MAX_ANCESTRY, SessionReads

log = logging.getLogger(__name__)

UPDATABLE = frozenset(
    {"repo", "target_branch", "title", "branch", "messages", "inbox_status", "sbx_config", "parent"}
)
JSON_FIELDS = frozenset({"messages", "sbx_config"})
NULLABLE = JSON_FIELDS | {"parent"}
# Attempts at a free branch name when the generated one is taken in the repo.
BRANCH_ATTEMPTS = 8
# Parent changes are serialized by this PostgreSQL advisory lock, so two concurrent updates
# (A->B, B->A) cannot both pass the cycle check. SQLite serializes every writer anyway.
PARENT_LOCK = 0x5E5511


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


class _ParentLockNeeded(Exception):
    """An update found that it moves the session to another parent: start over with the lock."""


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


class SessionService(SessionReads):
    """Every rule about sessions, and the changes: create, update, delete. The REST and GraphQL
    faces call this and nothing else."""

    def __init__(self, db: Database, namer: Namer, events: EventPublisher) -> None:
        super().__init__(db)
        self.namer = namer
        self.events = events

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
            await self.db.execute("SELECT pg_advisory_xact_lock_shared({})", PARENT_LOCK)
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
        try:
            row = await self._apply(session_id, values, expected_version, merge_json, False)
        except _ParentLockNeeded:
            row = await self._apply(session_id, values, expected_version, merge_json, True)
        await self._publish(SessionEvent(EventKind.UPDATED, row["id"], row))
        return row

    async def _apply(
        self,
        session_id: UUID,
        values: Mapping[str, Any],
        expected_version: int | None,
        merge_json: bool,
        parent_lock: bool,
    ) -> Row:
        """One attempt at an update, in one transaction. A move to another parent is checked
        under the parent lock, which is taken before the row's (deletes take them in that
        order too). Whether the parent moves is only known once the row is read, so an attempt
        without the lock that finds a move rolls back and the update starts over with it; an
        update that keeps its parent never waits for the lock."""
        values = dict(values)
        new_parent = values.get("parent")
        async with self.db.transaction():
            if parent_lock:
                await self.db.execute("SELECT pg_advisory_xact_lock({})", PARENT_LOCK)
            current = await self.db.fetchrow(
                f"SELECT {COLUMNS} FROM session WHERE id = {{}}{self.db.lock_for_update}",
                session_id,
            )
            current = _checked(current, expected_version)
            moves = new_parent is not None and new_parent != current["parent"]
            if moves and self.db.is_postgres and not parent_lock:
                raise _ParentLockNeeded
            if merge_json:
                for name in JSON_FIELDS & values.keys():
                    stored = current[name]
                    before = orjson.loads(stored) if stored is not None else None
                    values[name] = validation.merge_patch(before, values[name])
            if new_parent is not None and moves:
                await self._check_parent(session_id, new_parent)
            return await self._write(session_id, values)

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
                await self.db.execute("SELECT pg_advisory_xact_lock({})", PARENT_LOCK)
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
