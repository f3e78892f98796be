"""The namer of the process, chosen by the settings."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from app.config import ConfigError, Settings
from app.naming.local import LocalNamer
from app.naming.names import Namer

log = logging.getLogger(__name__)


def make_namer(settings: Settings) -> tuple[Namer, Callable[[], Awaitable[None]]]:
    """The namer the settings ask for, and the coroutine function that closes it: the
    Anthropic namer when ANTHROPIC_API_KEY is set, the local namer otherwise.

    Raises ConfigError when NAMING_BRANCH_PREFIX cannot start a git branch name."""
    try:
        local = LocalNamer(settings.naming_branch_prefix)
    except ValueError as exc:
        raise ConfigError(f"NAMING_BRANCH_PREFIX: {exc}") from None
    if not settings.anthropic_api_key:
        log.info("ANTHROPIC_API_KEY is not set: sessions are named locally")
        return local, _nothing_to_close
    # Imported only when used: the SDK costs tens of megabytes and seconds of start-up.
    from app.naming.anthropic_namer import AnthropicNamer, make_client

    client = make_client(settings)
    log.info(
        "sessions are named by %s (deadline %g s), locally when it fails",
        settings.anthropic_model,
        settings.naming_timeout_s,
    )
    namer = AnthropicNamer(client, settings.anthropic_model, settings.naming_timeout_s, local)
    return namer, client.close


async def _nothing_to_close() -> None:
    return None
