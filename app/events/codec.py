"""Events as subscribers see them, read from the data the outbox's triggers wrote: the session
as the typed row every face renders (`app.model.Session`, JSON documents as their text), and the
fields it had before an update. The decoding types are derived from the declaration."""

from __future__ import annotations

import enum
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import msgspec

from app.events.log import Entry, EventId
from app.model import JSON_FIELDS, Session


class EventKind(enum.StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    # The log no longer holds every event after the position asked for, or a subscriber fell
    # too far behind: its client re-reads what it shows, then goes on.
    RESYNC = "RESYNC"


@dataclass(frozen=True, slots=True)
class Event:
    """A change to a session, at its position in the log; or a RESYNC at the position from which
    a subscriber goes on."""

    id: EventId
    kind: EventKind
    session_id: UUID | None = None
    # After the change; for DELETED, as it was just before; None for RESYNC.
    session: Session | None = None
    # For UPDATED, the fields before the change (all but the JSON documents).
    previous: Mapping[str, Any] | None = None


_HINTS = typing.get_type_hints(Session, include_extras=True)
# The row in the event's JSON: its JSON documents embedded, kept as their raw text.
_Row = msgspec.defstruct(
    "_Row",
    [(name, msgspec.Raw if name in JSON_FIELDS else hint) for name, hint in _HINTS.items()],
)
_Previous = msgspec.defstruct(
    "_Previous",
    [(name, hint) for name, hint in _HINTS.items() if name not in JSON_FIELDS],
)
_Data = msgspec.defstruct(
    "_Data",
    [("session", _Row), ("previous", _Previous | None, None)],
)
_decoder = msgspec.json.Decoder(_Data)
_NAMES = tuple(_HINTS)
_PREVIOUS_NAMES = tuple(name for name in _NAMES if name not in JSON_FIELDS)
_NULL = b"null"


def decode(entry: Entry) -> Event:
    """The event `entry` holds. `msgspec.ValidationError` or `msgspec.DecodeError` when its data
    is not what the triggers write."""
    record = entry.record
    data: Any = _decoder.decode(record.data)
    row: dict[str, Any] = {name: getattr(data.session, name) for name in _NAMES}
    for name in JSON_FIELDS:
        raw = bytes(row[name])
        row[name] = None if raw == _NULL else raw.decode()
    previous = data.previous
    return Event(
        entry.id,
        EventKind(record.kind),
        UUID(record.session_id),
        cast(Session, row),
        None if previous is None else {name: getattr(previous, name) for name in _PREVIOUS_NAMES},
    )
