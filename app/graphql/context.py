"""What every resolver receives as `info.context`: the service and this request's loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

import strawberry
from starlette.requests import HTTPConnection

from app.graphql.loaders import Loaders
from app.service import SessionService


@dataclass(slots=True)
class Context:
    service: SessionService
    loaders: Loaders = field(init=False)
    # The HTTP request or WebSocket; None when the schema is executed directly (tests).
    request: HTTPConnection | None = None

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.service)


Info = strawberry.Info[Context, None]
