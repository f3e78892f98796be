"""Logging set-up: plain text lines, or one JSON object a line (`LOG_FORMAT=json`), each naming
the request it was written for (`app.request_id`).

Lines are formatted and written by a thread of their own (`BackgroundHandler`), so the event
loop never waits on a pipe or a disk, and many lines go out in one write; the handler waits for
the last of them when it is flushed or closed (`logging.shutdown`, which runs at exit)."""

from __future__ import annotations

import logging
import logging.config
import sys
import threading
from contextlib import suppress
from datetime import UTC, datetime
from queue import Empty, SimpleQueue
from typing import IO, Any

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
# Arguments a record may keep until the thread formats it: nothing can change them meanwhile.
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})
# The most records written in one go, and how long a flush or close waits for the thread.
_BATCH = 1024
_WAIT_S = 5.0


class RequestIdFilter(logging.Filter):
    """Gives each record the id of the request being served where it was written, if any. On the
    handler, so that it sees the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.current()
        if current is not None:
            record.request_id = current
        return True


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, with `NO_REQUEST` for a line written outside any request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, defaults={"request_id": NO_REQUEST})


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


class _Flushed:
    """Put in the queue by `flush`: set once every record before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class BackgroundHandler(logging.Handler):
    """Writes its records to `stream` (default: stderr) from a thread: the caller only runs the
    filters (the request id is read where the line was written) and queues the record.

    A record keeps its arguments unformatted when none can change before the thread formats it
    (strings, numbers); otherwise its message is formatted as it is queued. After `close`,
    records are written at once, so a line logged at exit is not lost."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stream = sys.stderr if stream is None else stream
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._write_queued, name="log-writer", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: the queue is thread-safe, and the thread is the only writer.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self._closed:
            self._write([record])
            return
        args = record.args
        if args and (
            not isinstance(args, tuple) or any(type(arg) not in _IMMUTABLE for arg in args)
        ):
            record.msg, record.args = record.getMessage(), None
        self._queue.put(record)

    def flush(self) -> None:
        """Returns once every record handed over before the call is written (or after
        `_WAIT_S`, if the stream is stuck)."""
        if self._closed or threading.current_thread() is self._thread:
            self._flush_stream()
            return
        marker = _Flushed()
        self._queue.put(marker)
        marker.done.wait(_WAIT_S)

    def close(self) -> None:
        """Writes what is queued, then stops the thread."""
        if not self._closed:
            self._queue.put(_STOP)
            self._thread.join(_WAIT_S)
            self._closed = True
        super().close()

    def _write_queued(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Whatever else is waiting goes out in the same write.
            try:
                while len(batch) < _BATCH:
                    batch.append(self._queue.get_nowait())
            except Empty:
                pass
            records = [item for item in batch if isinstance(item, logging.LogRecord)]
            self._write(records)
            for item in batch:
                if isinstance(item, _Flushed):
                    item.done.set()
            if any(item is _STOP for item in batch):
                return

    def _write(self, records: list[logging.LogRecord]) -> None:
        lines = []
        for record in records:
            try:
                lines.append(self.format(record) + "\n")
            except Exception:
                self.handleError(record)
        if lines:
            try:
                self.stream.write("".join(lines))
            except Exception:
                self.handleError(records[-1])
        self._flush_stream()

    def _flush_stream(self) -> None:
        # A stream closed under us (an exiting test runner's): nothing left to write to.
        with suppress(OSError, ValueError):
            self.stream.flush()


def lean_records() -> None:
    """What no line of ours writes is not gathered for each record: the caller's file and line
    (a walk up the stack), the thread's and process's names and ids (a system call each). As
    the logging HOWTO's "Optimization" section has it. Called wherever the logging
    configuration is applied (the parent and every worker)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _handler(stream: IO[str] | None = None) -> BackgroundHandler:
    lean_records()
    return BackgroundHandler(stream)


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
                "()": _handler,
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
