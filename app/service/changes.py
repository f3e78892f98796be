"""The changes to sessions (create, update, append to messages, delete) and every rule they keep:
validation, naming, parents without cycles, versions and idempotency. Their events are written by
the database in each change's transaction (the outbox's triggers); after a commit the service
only wakes the relay."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from app import model, validation
from app.db import Database
from app.errors import (
    BranchTaken,
    IdempotencyMismatch,
    InvalidInput,
    NotAList,
    NotFound,
    ParentCycle,
    ParentNotFound,
    VersionConflict,
)
from app.events import Events
from app.model import JSON_FIELDS, NULLABLE, NewSession, Session, SessionChanges
from app.naming import Namer, with_suffix
from app.service.reads import MAX_ANCESTRY, SessionReads
from app.store import Conflict, Constraint
from app.tables import InboxStatus

log = logging.getLogger(__name__)

# Attempts at a free branch name when the generated one is taken in the repo.
BRANCH_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Created:
    session: Session
    # True when an idempotent retry returned the first creation's session.
    replayed: bool


def _now() -> datetime:
    return datetime.now(UTC)


class _ParentLockNeeded(Exception):
    """An update found that it moves the session to another parent: start over with the lock."""


# How a refusal to append names what `messages` hold, by JSON type.
_HOLDS = {"object": "an object", "string": "a string", "number": "a number", "boolean": "a boolean"}


def _checked(current: Session | None, expected_version: int | None) -> Session:
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

    def __init__(self, db: Database, namer: Namer, events: Events) -> None:
        super().__init__(db, events)
        self.namer = namer

    async def create(self, new: NewSession, *, idempotency_key: str | None = None) -> Created:
        """A new session, `active`, named by the namer. With an idempotency key, a retry with
        the same content returns the first session; with other content it is refused."""
        repo, target_branch, messages, parent = (
            new.repo,
            new.target_branch,
            new.messages,
            new.parent,
        )
        if idempotency_key is not None:
            idempotency_key = validation.required_text(
                "idempotency_key", idempotency_key, validation.IDEMPOTENCY_KEY_MAX
            )
        digest = validation.fingerprint(repo, target_branch, messages, str(parent or ""))
        if idempotency_key is not None:
            earlier = await self._replay(idempotency_key, digest)
            if earlier is not None:
                return Created(earlier, replayed=True)
        if parent is not None and not await self.store.exists(parent):
            raise ParentNotFound("parent session does not exist", "parent")

        # The model is asked before any connection is taken, so a slow namer cannot hold the pool.
        started = time.perf_counter()
        names = await self.namer.name(repo, target_branch, messages)
        log.info(
            "named session (namer=%s, %.0f ms)",
            names.namer,
            (time.perf_counter() - started) * 1000,
        )

        branch = names.branch
        for _attempt in range(BRANCH_ATTEMPTS):
            now = _now()
            new_row = Session(
                id=uuid.uuid4(),
                repo=repo,
                target_branch=target_branch,
                title=names.title,
                branch=branch,
                messages=validation.dump_json(messages),
                inbox_status=InboxStatus.ACTIVE,
                sbx_config=None,
                parent=parent,
                created_at=now,
                updated_at=now,
                version=1,
            )
            try:
                # Under a parent, the insert waits for a delete of it in flight (deletes hold
                # the parent lock exclusively), so the new child is either refused or orphaned
                # by that delete with a version bump, never silently by the foreign key.
                # Creations share the lock, so they never wait for each other.
                async with self.store.sharing_parents() if parent is not None else nullcontext():
                    row = await self.store.insert(
                        new_row,
                        idempotency_key=idempotency_key,
                        fingerprint=digest if idempotency_key is not None else None,
                    )
            except Conflict as conflict:
                if conflict.constraint is Constraint.PARENT:
                    raise ParentNotFound("parent session does not exist", "parent") from None
                if conflict.constraint is not Constraint.BRANCH:
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
            self.events.committed()
            return Created(row, replayed=False)
        raise BranchTaken("no free branch name could be found for this repo", "branch")

    async def _replay(self, key: str, digest: str) -> Session | None:
        earlier = await self.store.idempotent(key)
        if earlier is None:
            return None
        if earlier.fingerprint != digest:
            raise IdempotencyMismatch(
                "this idempotency key was used with a different request", "idempotency_key"
            )
        return earlier.session

    async def update(
        self,
        session_id: UUID,
        changes: SessionChanges,
        *,
        expected_version: int | None = None,
        merge_json: bool = False,
    ) -> Session:
        """Apply the fields `changes` gives. With `merge_json`, `messages` and
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
        self.events.committed()
        return row

    async def _apply(
        self,
        session_id: UUID,
        values: Mapping[str, Any],
        expected_version: int | None,
        merge_json: bool,
        parent_lock: bool,
    ) -> Session:
        """One attempt at an update, in one transaction. A move to another parent is checked
        under the parent lock, which is taken before the row's (deletes take them in that
        order too). Whether the parent moves is only known once the row is read, so an attempt
        without the lock that finds a move rolls back and the update starts over with it; an
        update that keeps its parent never waits for the lock."""
        values = dict(values)
        new_parent = values.get("parent")
        async with self.store.transaction():
            if parent_lock:
                await self.store.lock_parents()
            current = _checked(await self.store.lock(session_id), expected_version)
            moves = new_parent is not None and new_parent != current["parent"]
            if moves and self.store.locks_parents and not parent_lock:
                raise _ParentLockNeeded
            if merge_json:
                for name in JSON_FIELDS & values.keys():
                    stored = current[name]  # type: ignore[literal-required]
                    before = orjson.loads(stored) if stored is not None else None
                    values[name] = validation.merge_patch(before, values[name])
            if new_parent is not None and moves:
                await self._check_parent(session_id, new_parent)
            return await self._write(session_id, values)

    async def _unchanged(self, session_id: UUID, expected_version: int | None) -> Session:
        return _checked(await self.get(session_id), expected_version)

    @staticmethod
    def _validated(changes: SessionChanges) -> dict[str, Any]:
        """The given fields, as they are stored; a non-nullable one cannot be cleared."""
        values = changes.given()
        for name, value in values.items():
            if value is None and name not in NULLABLE:
                raise InvalidInput(f"{name} cannot be null", name)
            if name == "inbox_status":
                values[name] = value.value
        return values

    async def _check_parent(self, session_id: UUID, parent: UUID) -> None:
        """`parent` exists and `session_id` is not among its ancestors (nor itself)."""
        if parent == session_id:
            raise ParentCycle("a session cannot be its own parent", "parent")
        ancestry = await self.store.ancestry(parent, session_id, MAX_ANCESTRY)
        if not ancestry.found:
            raise ParentNotFound("parent session does not exist", "parent")
        if ancestry.cycle or ancestry.depth >= MAX_ANCESTRY:
            raise ParentCycle("this parent would make the session its own ancestor", "parent")

    async def _write(self, session_id: UUID, values: Mapping[str, Any]) -> Session:
        """Store `values` (JSON documents as their text) with the next version."""
        stored = {
            name: validation.dump_json(value) if name in JSON_FIELDS else value
            for name, value in values.items()
        }
        try:
            row = await self.store.update(session_id, stored, updated_at=_now())
        except Conflict as conflict:
            if conflict.constraint is Constraint.BRANCH:
                raise BranchTaken(
                    "this branch is already used by another session of the repo", "branch"
                ) from None
            if conflict.constraint is Constraint.PARENT:
                raise ParentNotFound("parent session does not exist", "parent") from None
            raise
        assert row is not None  # the row is locked by this transaction
        return row

    async def append_messages(self, session_id: UUID, messages: list[Any]) -> Session:
        """Append `messages` to the session's messages in one statement, so concurrent appends
        all land, and bump `version`. A null counts as an empty list; any other value is refused
        (NOT_A_LIST), as is a message the declaration's check refuses. Appending nothing changes
        nothing (no version, no event), like an update with no field, but refuses the same."""
        if not isinstance(messages, list):
            raise InvalidInput("messages must be a list", "messages")
        # Checked as the list it becomes in the stored one: each message one level down.
        model.check("messages", messages)
        if messages:
            text = orjson.dumps(messages).decode()
            row = await self.store.append_messages(session_id, text, updated_at=_now())
            if row is not None:
                self.events.committed()
                return row
        # Nothing appended. Read only now, and safely so: an id names no row before its creation
        # has answered, so a row found now was there at the statement, holding no list (an array
        # now became one since); no row now means none then or a delete since: NOT_FOUND.
        kind = await self.store.messages_type(session_id)
        if kind is None:
            raise NotFound("Session not found")
        if messages or kind != "array":
            holds = _HOLDS.get(kind, "no list")
            raise NotAList(f"messages holds {holds}, not a list to append to", "messages")
        return await self._unchanged(session_id, None)

    async def delete(self, session_id: UUID) -> Session:
        """Delete a session; its children lose their parent (a change to each of them)."""
        async with self.store.transaction():
            # Waits for parent changes in flight: a child attached to this session while it
            # is being deleted would otherwise lose its parent to ON DELETE SET NULL, with
            # no version bump and no event.
            await self.store.lock_parents()
            current = await self.store.lock(session_id)
            if current is None:
                raise NotFound("Session not found")
            await self.store.orphan_children(session_id, updated_at=_now())
            await self.store.delete(session_id)
        self.events.committed()
        return current
