"""Log lines as an operator reads them (`app.logs`), from the app served by uvicorn with the
logging configuration `session-inbox serve` gives it: with `LOG_FORMAT=json` every line is one
JSON object naming its request, the access line's fields as fields and a traceback as
`exception`; in text each line names its request too; uvicorn's own access line is gone."""

from __future__ import annotations

import io
import logging
import logging.config
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from app.access_log import AccessLog
from app.config import Settings, load_settings
from app.logs import NO_REQUEST, TEXT_FORMAT, LineHandler, TextFormatter, logging_config
from tests.loopback import serve_on_loopback

DEADLINE_S = 10.0
# The loggers `logging_config` sets, the root's among them.
CONFIGURED = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpx2", "httpcore")
WORK_LOGGER = "session_inbox.tests.work"


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """The logging set-up as it was before the test: uvicorn applies the one under test to the
    whole process."""
    loggers = [logging.getLogger(name or None) for name in CONFIGURED]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    yield
    for logger, handlers, level, propagate, disabled in saved:
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def worker_app() -> Starlette:
    """An app whose one route logs a warning with a traceback while it serves the request, and
    another fails."""

    async def work(_request: Request) -> Response:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logging.getLogger(WORK_LOGGER).warning("work failed, answered anyway", exc_info=True)
        return PlainTextResponse("done")

    async def broken(_request: Request) -> Response:
        raise RuntimeError("a bug")

    routes = [Route("/work/{n}", work), Route("/broken", broken)]
    return Starlette(routes=routes, middleware=[Middleware(AccessLog)])


async def served_lines(settings: Settings, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What the server writes to stderr while answering `GET /work/7` (`X-Request-ID: r-1`),
    then `GET /broken` (`r-2`)."""
    config = logging_config(settings)
    async with serve_on_loopback(worker_app(), lifespan="off", log_config=config) as base:
        logging.getLogger("session_inbox.tests").info("outside any request")
        async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as http:
            response = await http.get("/work/7", headers={"X-Request-ID": "r-1"})
            failed = await http.get("/broken", headers={"X-Request-ID": "r-2"})
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == "r-1"
        assert failed.status_code == 500
    return capsys.readouterr().err.splitlines()


def settings_with(log_format: str) -> Settings:
    return replace(load_settings(environ={}, env_file=None), log_format=log_format)


async def test_json_lines_parse_and_name_their_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = await served_lines(settings_with("json"), capsys)
    entries: list[dict[str, Any]] = [orjson.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "message", "request_id"} <= entry.keys()
        assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    by_logger = {entry["logger"]: entry for entry in entries}

    work = by_logger[WORK_LOGGER]
    assert (work["level"], work["request_id"]) == ("warning", "r-1")
    assert work["exception"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError" in work["exception"]

    by_request = {e["request_id"]: e for e in entries if e["logger"] == "session_inbox.access"}
    assert by_request.keys() == {"r-1", "r-2"}
    assert by_request["r-2"]["status"] == 500
    access = by_request["r-1"]
    assert access["level"] == "info"
    fields = {k: access[k] for k in ("method", "route", "status", "client_gone")}
    assert fields == {"method": "GET", "route": "/work/{n}", "status": 200, "client_gone": False}
    assert isinstance(access["duration_ms"], float)
    assert access["message"].startswith("GET /work/{n} 200 ")

    # The server's line for an error that escaped the app names the request, traceback and all.
    (crash,) = [e for e in entries if e["message"].startswith("Exception in ASGI application")]
    assert (crash["logger"], crash["level"]) == ("uvicorn.error", "error")
    assert crash["request_id"] == "r-2"
    assert "RuntimeError: a bug" in crash["exception"]

    assert by_logger["session_inbox.tests"]["request_id"] is None
    # uvicorn's start and stop lines are JSON too, and its access line is not written.
    assert "uvicorn.error" in by_logger
    assert "uvicorn.access" not in by_logger
    assert sum("GET /work" in line for line in lines) == 1


async def test_text_lines_name_their_request(capsys: pytest.CaptureFixture[str]) -> None:
    lines = await served_lines(settings_with("text"), capsys)
    work = next(line for line in lines if WORK_LOGGER in line)
    assert f"WARNING {WORK_LOGGER} [r-1] work failed, answered anyway" in work
    # The traceback follows its line.
    assert "ZeroDivisionError: division by zero" in lines
    access = [line for line in lines if "GET /work" in line]
    assert len(access) == 1
    assert " INFO session_inbox.access [r-1] GET /work/{n} 200 " in access[0]
    assert any("session_inbox.tests [-] outside any request" in line for line in lines)


def test_a_text_line_is_what_the_text_format_makes_of_it() -> None:
    # The text formatter puts a line together directly, its seconds formatted once a second.
    plain = logging.Formatter(TEXT_FORMAT, defaults={"request_id": NO_REQUEST})
    lean = TextFormatter()
    for i in range(300):
        record = logging.LogRecord(
            "session_inbox.access", logging.INFO, __file__, 1, "%s %d%%", ("GET", i), None
        )
        # Lines 7 ms apart: several in each second, and the seconds change.
        record.created = 1_796_222_935.0 + i * 0.007
        record.msecs = float(int((record.created % 1) * 1000))
        if i % 3:
            record.request_id = f"r-{i}"
        assert lean.format(record) == plain.format(record)


class Kept(logging.Handler):
    """A second handler on the root: the access line then goes through logging's records."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def access_lines(log_format: str, *, second_handler: bool) -> list[str]:
    """The lines the handler `logging_config` sets up writes for three requests to a bare app
    behind `AccessLog` (one an error, one whose client left), with or without another handler
    beside it (which then gets the records)."""
    logging.config.dictConfig(logging_config(settings_with(log_format)))
    root = logging.getLogger()
    (handler,) = root.handlers
    assert isinstance(handler, LineHandler)
    written = io.StringIO()
    handler.setStream(written)
    kept = Kept()
    if second_handler:
        root.addHandler(kept)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = Route("/things/{n}", app)
        if scope["path"] == "/gone":
            await receive()
            return
        await PlainTextResponse("no", 404 if scope["path"] == "/missing" else 200)(
            scope, receive, send
        )

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(_message: Message) -> None:
        pass

    for n, path in enumerate(["/found", "/missing", "/gone"]):
        headers = [(b"x-request-id", f"r-{n}".encode())]
        scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
        await AccessLog(app)(scope, receive, send)
    assert len(kept.records) == (3 if second_handler else 0)
    return written.getvalue().splitlines()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_an_access_line_written_without_a_record_is_what_the_record_makes(
    log_format: str,
) -> None:
    direct = await access_lines(log_format, second_handler=False)
    through_records = await access_lines(log_format, second_handler=True)

    def steady(line: str) -> Any:
        """The line less its time and duration."""
        if log_format == "json":
            entry = orjson.loads(line)
            assert datetime.fromisoformat(entry.pop("time")).tzinfo is not None
            assert isinstance(entry.pop("duration_ms"), float)
            entry["message"] = re.sub(r" [\d.]+ ms", " ms", entry["message"])
            return entry
        stamp, rest = line[:23], line[24:]
        assert datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        return re.sub(r" [\d.]+ ms", " ms", rest)

    assert len(direct) == 3
    assert [steady(line) for line in direct] == [steady(line) for line in through_records]
    if log_format == "text":
        assert [steady(line) for line in direct] == [
            "INFO session_inbox.access [r-0] GET /things/{n} 200 ms",
            "INFO session_inbox.access [r-1] GET /things/{n} 404 ms",
            "INFO session_inbox.access [r-2] GET /things/{n} 499 ms client gone",
        ]
