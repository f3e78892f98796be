"""What the lifespan builds and every request reaches through `request.state.inbox`."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.db import Database
from app.events import Events
from app.service import SessionService


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    db: Database
    events: Events
    service: SessionService
