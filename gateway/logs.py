"""Structured logs: one JSON object per line on stderr.

JSON lines were chosen over key=value because log pipelines (Loki, CloudWatch,
Elastic) parse them without a grammar. Tokens never reach a log line: callers pass
fields explicitly and nothing formats a credential into a message.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    # aiohttp's access log prints request lines with query strings, where tokens
    # travel (access_token=...): it is never enabled (issue 2, item 3).
    logging.getLogger("aiohttp.access").disabled = True


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields`` (never pass a credential here)."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})
