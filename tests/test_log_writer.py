"""`BackgroundHandler` (`app.logs`): the lines a thread writes are every line logged, in order and
as they were when logged, out by the time a flush or close returns; and a server stopped by
SIGTERM right after a burst of requests has written the access line of each."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.logs import BackgroundHandler, RequestIdFilter, TextFormatter
from app.request_id import begin
from tests.servers import Servers

BURST = 200
DEADLINE_S = 10.0


@pytest.fixture
def written() -> Iterator[tuple[logging.Logger, BackgroundHandler, io.StringIO]]:
    """A logger of its own writing through a `BackgroundHandler` to a string."""
    stream = io.StringIO()
    handler = BackgroundHandler(stream)
    handler.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("session_inbox.tests.log_writer")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler, stream
    logger.removeHandler(handler)
    handler.close()


def test_a_flush_returns_once_every_line_before_it_is_written(
    written: tuple[logging.Logger, BackgroundHandler, io.StringIO],
) -> None:
    logger, handler, stream = written
    begin(b"r-1")
    for n in range(5000):
        logger.info("line %d of %s", n, "five thousand")

    handler.flush()

    assert stream.getvalue().splitlines() == [f"r-1 line {n} of five thousand" for n in range(5000)]


def test_close_writes_what_is_queued_and_a_later_line_at_once(
    written: tuple[logging.Logger, BackgroundHandler, io.StringIO],
) -> None:
    logger, handler, stream = written
    begin(b"r-2")
    for n in range(1000):
        logger.info("queued %d", n)

    handler.close()
    logger.info("after close")

    lines = stream.getvalue().splitlines()
    assert lines == [*(f"r-2 queued {n}" for n in range(1000)), "r-2 after close"]


class HeldStream(io.StringIO):
    """A stream whose first write waits until `release` is set, `entered` set meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        if not self.release.wait(DEADLINE_S):
            raise TimeoutError("never released")
        return super().write(text)


def test_arguments_that_may_change_are_formatted_as_logged() -> None:
    stream = HeldStream()
    handler = BackgroundHandler(stream)
    logger = logging.getLogger("session_inbox.tests.log_writer.held")
    logger.addHandler(handler)
    logger.propagate = False
    items = ["a"]
    try:
        logger.warning("first")
        # The thread is writing the first line: the next is formatted after the list changes.
        assert stream.entered.wait(DEADLINE_S)
        logger.warning("items %s", items)
        items.append("b")
        stream.release.set()
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()

    assert stream.getvalue().splitlines() == ["first", "items ['a']"]


def test_the_caller_never_writes(
    written: tuple[logging.Logger, BackgroundHandler, io.StringIO],
) -> None:
    logger, handler, _stream = written
    writers: set[str] = set()
    original = handler.format

    def format_noted(record: logging.LogRecord) -> str:
        writers.add(threading.current_thread().name)
        return original(record)

    handler.format = format_noted  # type: ignore[method-assign]
    logger.info("one")
    handler.flush()

    assert writers == {"log-writer"}


def test_the_request_id_is_the_callers(
    written: tuple[logging.Logger, BackgroundHandler, io.StringIO],
) -> None:
    logger, handler, stream = written

    async def request(given: bytes) -> None:
        begin(given)
        await asyncio.sleep(0)
        logger.info("served")

    async def both() -> None:
        await asyncio.gather(request(b"r-a"), request(b"r-b"))

    asyncio.run(both())
    handler.flush()

    assert sorted(stream.getvalue().splitlines()) == ["r-a served", "r-b served"]


def test_the_text_format_is_unchanged_through_the_thread() -> None:
    stream = io.StringIO()
    handler = BackgroundHandler(stream)
    handler.setFormatter(TextFormatter())
    record = logging.makeLogRecord(
        {"name": "session_inbox.access", "levelno": 20, "levelname": "INFO", "msg": "%s %d"}
    )
    record.args = ("GET /healthz", 200)
    try:
        handler.handle(record)
        handler.flush()
    finally:
        handler.close()

    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO session_inbox.access \[-\] GET /healthz 200\n",
        stream.getvalue(),
    )


async def test_a_sigterm_after_a_burst_loses_no_access_line(
    tmp_path: Path, tmp_sqlite_url: str
) -> None:
    with Servers(tmp_path, DATABASE_URL=tmp_sqlite_url, RUN_MIGRATIONS="true") as servers:
        server = await servers.start("burst")
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as http:
            answers = await asyncio.gather(
                *(http.get("/healthz", headers={"X-Request-ID": f"b-{n}"}) for n in range(BURST))
            )
        assert {answer.status_code for answer in answers} == {200}
        assert server.stop() == 0
        output = server.output()

    found = set(re.findall(r"\[(b-\d+)\] GET /healthz 200 ", output))
    assert found == {f"b-{n}" for n in range(BURST)}
