"""`MeasuredNamer`: a namer whose every naming is timed and handed to an observer (the app's
metrics), with the names it gave (which namer made them, and why it fell back, if it did)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.naming.names import Namer, Names


class MeasuredNamer:
    """`namer`, each naming's names and duration in seconds given to `observe`."""

    def __init__(self, namer: Namer, observe: Callable[[Names, float], None]) -> None:
        self.namer = namer
        self.observe = observe
        # Whether it names without I/O, as the namer it measures does (`LocalNamer.instant`).
        self.instant: bool = getattr(namer, "instant", False)

    async def name(self, repo: str, target_branch: str, messages: Any) -> Names:
        started = time.perf_counter()
        names = await self.namer.name(repo, target_branch, messages)
        self.observe(names, time.perf_counter() - started)
        return names
