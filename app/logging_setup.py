"""The root logger's one handler: text lines for people or JSON lines for log shippers, tokens redacted in both."""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

from pythonjsonlogger.json import JsonFormatter

from app import logsafe

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# The access log's fields (app.web.log_request); other records have whichever of them they were given.
ACCESS_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "user_id", "remote_ip")


class _JsonLines(JsonFormatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, then the record's extra fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
            json_ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return logsafe.redact(super().formatException(ei))


def configure(level: str, log_format: str = "text") -> None:
    """Replaces the root's handlers with one on stderr in `log_format`, then puts logsafe's filter on it."""
    if log_format not in FORMATS:
        raise ValueError(f"log_format must be text or json, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logsafe.install()  # on the root's handlers: every logger's records, Tornado's and libraries', pass it
