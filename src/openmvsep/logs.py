"""Logging configuration: one `dictConfig` for `serve`, uvicorn and the workers, as text or JSON lines on stderr.

Every entry point applies the same dictionary (uvicorn is handed it too, so its own loggers write through the
same handler and format instead of installing theirs). One handler, on the root logger; openmvsep's, uvicorn's
and Celery's loggers log at `log_level`, other libraries only their warnings. A filter on the handler stamps each
record with the id of the HTTP request being served (`REQUEST_ID`, set by api/request_id.py; "-" outside one),
so every line a request causes, in the event loop or in the threadpool its sync code runs in, can be found by it.
"""

from __future__ import annotations

import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

from openmvsep.settings import Settings

# A context variable rather than a thread-local: asyncio tasks and Starlette's threadpool (which copies the
# context into the thread) both see the value of the request they work for.
REQUEST_ID: ContextVar[str] = ContextVar("openmvsep_request_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s [%(request_id)s] %(message)s"

# Our loggers and the servers we run under: the rest of the tree stays at WARNING (SQLAlchemy, httpx, ... are
# chatty at INFO and say nothing an operator needs).
OWN_LOGGERS = ("openmvsep", "uvicorn", "uvicorn.error", "celery")

# What every LogRecord has; anything else on a record came from `extra=` and goes into the JSON object.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
    "color_message",  # uvicorn's copy of its message with ANSI colours
}


class RequestIdFilter(logging.Filter):
    """Stamps `record.request_id` with the request being served ("-" outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, request_id, message, exc_info, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        entry.update(
            time=datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            level=record.levelname,
            logger=record.name,
            process=record.processName,
            request_id=getattr(record, "request_id", REQUEST_ID.get()),
            message=record.getMessage(),
        )
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # default=str: an extra that JSON cannot hold (a Path, a datetime) is written as text, never dropped.
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(settings: Settings) -> dict:
    """The `logging.config.dictConfig` dictionary for these settings (also uvicorn's `log_config`)."""
    level = settings.log_level.upper()
    formatter = {"()": JsonFormatter} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,  # the modules' loggers exist already (made at import)
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"openmvsep": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "openmvsep",
                "filters": ["request_id"],
            }
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            **{name: {"level": level, "handlers": [], "propagate": True} for name in OWN_LOGGERS},
            # uvicorn's access log is a switch of its own (uvicorn empties this logger when it is off).
            "uvicorn.access": {"level": level, "handlers": [], "propagate": settings.access_log},
        },
    }


def configure_logging(settings: Settings) -> None:
    """Applies `logging_config(settings)` to this process."""
    logging.config.dictConfig(logging_config(settings))
    logging.captureWarnings(True)  # a library's warning becomes a line in the same format, not raw stderr text
