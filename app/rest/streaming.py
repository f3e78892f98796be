"""`DeadlineStreamingResponse`: a streamed body whose every chunk must be taken by the client
within a deadline, so that a client that stops reading cannot hold a stream (its database
cursor, connection and slot) for longer than that."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Message, Send

log = logging.getLogger(__name__)

# How long the client has to take each chunk of a streamed body. uvicorn's `send` waits while the
# connection's write buffer is full, which it stays while the client does not read; past this,
# the stream ends (cursor, transaction, connection and slot freed) and the connection is closed
# with the body unfinished, so the client cannot take a truncated list for a whole one.
STREAM_WRITE_TIMEOUT_S = 10.0


class DeadlineStreamingResponse(StreamingResponse):
    """A `StreamingResponse` of an async generator whose chunks each go out within
    `write_timeout_s` (default `STREAM_WRITE_TIMEOUT_S`), or the body is abandoned. However
    it ends, the body and `source` (what the body reads from) are closed before it returns."""

    body_iterator: AsyncGenerator[bytes, None]

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        media_type: str,
        source: AsyncGenerator[Any, None] | None = None,
        write_timeout_s: float | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type)
        self.source = source
        self.write_timeout_s = write_timeout_s

    async def stream_response(self, send: Send) -> None:
        timeout_s = STREAM_WRITE_TIMEOUT_S if self.write_timeout_s is None else self.write_timeout_s
        messages = self._messages()
        try:
            async for message in messages:
                try:
                    async with asyncio.timeout(timeout_s):
                        await send(message)
                except TimeoutError:
                    # Returning without the body's end makes the server close the connection.
                    log.warning("stream abandoned: the client took no data for %.1f s", timeout_s)
                    return
        finally:
            # Closed here, not left to the garbage collector: closing the body closes its
            # cursor and frees the stream's slot at once.
            await messages.aclose()

    async def _messages(self) -> AsyncGenerator[Message, None]:
        raw = self.raw_headers
        try:
            yield {"type": "http.response.start", "status": self.status_code, "headers": raw}
            async for chunk in self.body_iterator:
                yield {"type": "http.response.body", "body": chunk, "more_body": True}
        finally:
            await self.body_iterator.aclose()
            # A body that never started cannot close what it reads from: its source is closed
            # here too (closing a closed generator does nothing).
            if self.source is not None:
                await self.source.aclose()
        yield {"type": "http.response.body", "body": b"", "more_body": False}
