"""What every resolver receives as `info.context`: the service and the loaders of what is being
answered now.

Over HTTP a context serves one request. Over a WebSocket one context serves the whole connection,
every operation it runs and every event of its subscriptions, so its loaders are renewed for each
of those (`FreshLoaders`, and the subscription for each event): a loader caches what it read, and
a connection lasts far longer than what it read stays true."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import strawberry
from starlette.requests import HTTPConnection
from strawberry.extensions import SchemaExtension

from app.graphql.loaders import Loaders
from app.service import SessionService


@dataclass(slots=True)
class Context:
    service: SessionService
    # The HTTP request or WebSocket; None when the schema is executed directly (tests).
    request: HTTPConnection | None = None
    _loaders: Loaders | None = field(default=None, init=False)

    @property
    def loaders(self) -> Loaders:
        """This operation's (or event's) loaders, made when first used: most events and many
        operations read no relation, and loaders made for nothing are garbage to collect."""
        if self._loaders is None:
            self._loaders = Loaders(self.service)
        return self._loaders

    def renew_loaders(self) -> None:
        """Loaders that have read nothing yet, so what comes next reads the data as it is now."""
        self._loaders = None


class FreshLoaders(SchemaExtension):
    """Every operation starts with fresh loaders, whether or not its context is new."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        if isinstance(context, Context):
            context.renew_loaders()
        yield


Info = strawberry.Info[Context, None]
