"""Logging set-up: plain text lines, or one JSON object a line (`LOG_FORMAT=json`), each naming
the request it was written for (`app.request_id`)."""

from __future__ import annotations

import logging
import logging.config
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from app import request_id
from app.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# A line written outside any request (start-up, the relay) names none.
NO_REQUEST = "-"
# What every record holds: the rest came in `extra` (the access line's method, route, status…).
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "request_id",
    # uvicorn's coloured copy of its message.
    "color_message",
}


class RequestIdFilter(logging.Filter):
    """Gives each record the id of the request being served where it was written, if any. On the
    handler, so that it sees the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.current()
        if current is not None:
            record.request_id = current
        return True


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, with `NO_REQUEST` for a line written outside any request.

    Every request writes a line through it, so a line without a traceback is put together
    directly, as `TEXT_FORMAT` would put it, and the time's seconds are formatted once a
    second (a line's time is its second, as `formatTime` writes it, and its milliseconds)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, defaults={"request_id": NO_REQUEST})
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        request = record.__dict__.get("request_id", NO_REQUEST)
        return f"{record.asctime} {record.levelname} {record.name} [{request}] {record.message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if datefmt is not None or self.converter is not time.localtime:
            return super().formatTime(record, datefmt)
        cached, text = self._second
        if cached != second:
            text = time.strftime(self.default_time_format, time.localtime(second))
            # One assignment: a line formatted in another thread reads the pair or its next.
            self._second = (second, text)
        with_msecs = self.default_msec_format
        return with_msecs % (text, record.msecs) if with_msecs else text


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id (null outside any
    request), the fields the line was given in `extra`, and its traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # A field no JSON type holds is written as its str().
        return orjson.dumps(entry, default=str).decode()


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` for `settings`. uvicorn applies it in every worker process,
    where configuring logging in the parent alone would not reach."""
    formatter = JSONFormatter if settings.log_format == "json" else TextFormatter
    level = settings.log_level.upper()
    # The HTTP clients log every request at INFO; only their problems are worth a line.
    quiet = max(logging.WARNING, logging.getLevelName(level))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error")},
            # `app.access_log` writes the access lines, with the route and request id. A logger
            # with no handler that does not propagate makes uvicorn skip its own altogether.
            "uvicorn.access": {"handlers": [], "propagate": False},
            **{name: {"level": quiet} for name in ("httpx", "httpx2", "httpcore")},
        },
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))
