"""How operations execute: as Strawberry's graphql-core executor, but each subscription event
with a field cache of its own.

graphql-core 3.3.2 makes each event's executor as a shallow copy of the subscription's, so all
the events share its cache of collected sub-fields; the cache is keyed by the id of a list made
anew for every event, so each event added entries that lived as long as the subscription (about
3 KB a subscriber an event, measured in `bench/subscribers.py`). An event's own cache goes with
it."""

from __future__ import annotations

from typing import Any

from graphql.execution.executor import Executor
from graphql.pyutils import RefMap
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class InboxExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def build_per_event_executor(self, payload: Any) -> Executor[Any]:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        executor._stream_usages = RefMap()
        return executor
