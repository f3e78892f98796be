"""The changes to sessions (create, update, append to messages, delete) and every rule they keep:
validation, naming, parents without cycles, versions and idempotency. Their events are written by
the database in each change's transaction (the outbox's triggers); after a commit the service
only wakes the relay. The module is long because each change's short path (one statement) and
its full one (read, check, write) keep the same rules, and are read best side by side."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
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
        # A namer without I/O is asked before anything is read (see `create`).
        self.names_instantly: bool = getattr(namer, "instant", False)

    async def create(self, new: NewSession, *, idempotency_key: str | None = None) -> Created:
        """A new session, `active`, named by the namer. With an idempotency key, a retry with
        the same content returns the first session; with other content it is refused.

        The insert is one statement (under a parent it also holds the parent lock shared, and
        its foreign key refuses a missing parent). A namer that asks a model is asked only for
        a creation that can happen, so for it a retry and a missing parent are read first; a
        namer without I/O (the local one) is asked at once and nothing is read before the
        insert. Either is asked before any connection is taken, so a slow namer cannot hold
        the pool."""
        repo, target_branch, messages, parent = (
            new.repo,
            new.target_branch,
            new.messages,
            new.parent,
        )
        digest = None
        if idempotency_key is not None:
            idempotency_key = validation.required_text(
                "idempotency_key", idempotency_key, validation.IDEMPOTENCY_KEY_MAX
            )
            digest = validation.fingerprint(repo, target_branch, messages, str(parent or ""))
        if not self.names_instantly:
            if idempotency_key is not None:
                assert digest is not None
                earlier = await self._replay(idempotency_key, digest)
                if earlier is not None:
                    return Created(earlier, replayed=True)
            if parent is not None and not await self.store.exists(parent):
                raise ParentNotFound("parent session does not exist", "parent")

        started = time.perf_counter()
        names = await self.namer.name(repo, target_branch, messages)
        # A line at INFO when a model was asked (or failed): with the local namer alone, a
        # line a create that says nothing new (the metrics count namings by namer).
        log.log(
            logging.DEBUG if self.names_instantly and names.fallback is None else logging.INFO,
            "named session (namer=%s, %.0f ms)",
            names.namer,
            (time.perf_counter() - started) * 1000,
        )

        stored_messages = validation.dump_json(messages)
        branch = names.branch
        for _attempt in range(BRANCH_ATTEMPTS):
            now = _now()
            new_row = Session(
                id=uuid.uuid4(),
                repo=repo,
                target_branch=target_branch,
                title=names.title,
                branch=branch,
                messages=stored_messages,
                inbox_status=InboxStatus.ACTIVE,
                sbx_config=None,
                parent=parent,
                created_at=now,
                updated_at=now,
                version=1,
            )
            try:
                row = await self.store.insert(
                    new_row, idempotency_key=idempotency_key, fingerprint=digest
                )
            except Conflict as conflict:
                if conflict.constraint is Constraint.PARENT:
                    raise ParentNotFound("parent session does not exist", "parent") from None
                if conflict.constraint is not Constraint.BRANCH:
                    raise
                branch = with_suffix(names.branch)
                continue
            if row is None:
                # The key is taken: by an earlier creation, or a concurrent one that won.
                assert idempotency_key is not None
                assert digest is not None
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
        one with no field at all returns the session as it is.

        An update that needs nothing read first (no object merged into a stored value, no
        move to another parent) is one statement, its conditions (the version, the parent
        kept) in it; when it changes nothing, the full path (`_apply`) tells why."""
        values = self._validated(changes)
        if not values:
            return await self._unchanged(session_id, expected_version)
        row = None
        # Whether the short path missed because the session moves to the parent given is
        # unknown, but a move is what a miss with a parent mostly is: then the full path takes
        # the parent lock at once, rather than after an attempt without it.
        lock_first = False
        if not (
            merge_json and any(isinstance(values[n], dict) for n in JSON_FIELDS & values.keys())
        ):
            keeps_parent = values.get("parent") is not None
            row = await self._write(
                session_id,
                values,
                expected_version=expected_version,
                keeps_parent=keeps_parent,
            )
            lock_first = keeps_parent and self.store.locks_parents
        if row is None:
            try:
                row = await self._apply(
                    session_id, values, expected_version, merge_json, lock_first
                )
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
            row = await self._write(session_id, values)
            assert row is not None  # the row is locked by this transaction
            return row

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

    async def _write(
        self,
        session_id: UUID,
        values: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        keeps_parent: bool = False,
    ) -> Session | None:
        """Store `values` (JSON documents as their text) with the next version, on the
        conditions `SessionStore.update` takes; None when they do not hold."""
        stored = {
            name: validation.dump_json(value) if name in JSON_FIELDS else value
            for name, value in values.items()
        }
        try:
            return await self.store.update(
                session_id,
                stored,
                updated_at=_now(),
                expected_version=expected_version,
                keeps_parent=keeps_parent,
            )
        except Conflict as conflict:
            if conflict.constraint is Constraint.BRANCH:
                raise BranchTaken(
                    "this branch is already used by another session of the repo", "branch"
                ) from None
            if conflict.constraint is Constraint.PARENT:
                raise ParentNotFound("parent session does not exist", "parent") from None
            raise

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
