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

    def line(
        self, created: float, level: str, name: str, message: str, fields: dict[str, Any]
    ) -> str:
        """What `format` makes of a record of these, without one (`LineHandler`)."""
        if self.converter is not time.localtime:
            return self.format(_record(created, level, name, message, fields))
        request = request_id.current() or NO_REQUEST
        return f"{self._time(created, _msecs(created))} {level} {name} [{request}] {message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None or self.converter is not time.localtime:
            return super().formatTime(record, datefmt)
        return self._time(record.created, record.msecs)

    def _time(self, created: float, msecs: float) -> str:
        second = int(created)
        cached, text = self._second
        if cached != second:
            text = time.strftime(self.default_time_format, time.localtime(second))
            # One assignment: a line formatted in another thread reads the pair or its next.
            self._second = (second, text)
        with_msecs = self.default_msec_format
        return with_msecs % (text, msecs) if with_msecs else text


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id (null outside any
    request), the fields the line was given in `extra`, and its traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES}
        entry = _entry(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "request_id", None),
            fields,
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # A field no JSON type holds is written as its str().
        return orjson.dumps(entry, default=str).decode()

    def line(
        self, created: float, level: str, name: str, message: str, fields: dict[str, Any]
    ) -> str:
        """What `format` makes of a record of these, without one (`LineHandler`)."""
        entry = _entry(created, level, name, message, request_id.current(), fields)
        return orjson.dumps(entry, default=str).decode()


def _entry(
    created: float,
    level: str,
    name: str,
    message: str,
    request: str | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    return {
        "time": datetime.fromtimestamp(created, UTC).isoformat(),
        "level": level.lower(),
        "logger": name,
        "message": message,
        "request_id": request,
        **fields,
    }


def _msecs(created: float) -> float:
    """A record's `msecs` for a record `created` then, as `logging.LogRecord` works it out."""
    return int((created - int(created)) * 1000) + 0.0


def _record(
    created: float, level: str, name: str, message: str, fields: dict[str, Any]
) -> logging.LogRecord:
    """The record `Logger.info` would make of these (what a formatter's own ways need)."""
    record = logging.LogRecord(name, logging.getLevelName(level), "", 0, message, (), None)
    record.created = created
    record.msecs = _msecs(created)
    record.__dict__.update(fields)
    request = request_id.current()
    if request is not None:
        record.request_id = request
    return record


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `logging_config` sets up: a `StreamHandler`, which can also write a line it
    is handed without the `LogRecord` that `Logger.info` would make, format and filter.

    The access log writes one line a request, and the record's making costs more than the rest
    of the request's middleware together: it asks `lone_handler` whether its records would
    reach this handler alone, with nothing else on the way, and if so hands it the line."""

    def write_line(self, level: int, name: str, message: str, fields: dict[str, Any]) -> None:
        """Writes what `handle` would of a record of these, made now, in the request's context."""
        if level < self.level:
            return
        created = time.time()
        levelname = logging.getLevelName(level)
        formatter = self.formatter
        try:
            if isinstance(formatter, TextFormatter | JSONFormatter):
                line = formatter.line(created, levelname, name, message, fields)
            else:
                record = _record(created, levelname, name, message, fields)
                line = (formatter or logging.Formatter()).format(record)
            # As `emit` and `flush` would, under the handler's lock taken once.
            with self.lock:  # type: ignore[union-attr] # made by Handler.__init__
                stream = self.stream
                stream.write(line + self.terminator)
                if hasattr(stream, "flush"):
                    stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(_record(created, levelname, name, message, fields))


def lone_handler(logger: logging.Logger) -> LineHandler | None:
    """The `LineHandler` that a record of `logger` would reach, when it would reach no other,
    no filter would see it but the request id's, and records are made as logging makes them;
    None otherwise (someone else's set-up: a test's log capture, the user's own)."""
    if logger.disabled or logger.filters or logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        current = current.parent if current.propagate else None
    if type(found) is not LineHandler:
        return None
    filters = found.filters
    if len(filters) != 1 or type(filters[0]) is not RequestIdFilter:
        return None
    return found


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
                "class": "app.logs.LineHandler",
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
