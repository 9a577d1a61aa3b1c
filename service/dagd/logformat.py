"""The daemon's own log on stderr (the journal, under systemd): one line per record.

`[core] log_format = "text"` (the default) is `time LEVEL logger: message`, a traceback
below its record. `"json"` is one JSON object per line, for log shippers: `time` (ISO
8601, UTC), `level`, `logger`, `message`, then the fields a record carries about what it
concerns (`extra=`): `dag`, `run`, `task`, `try`, `attempt`, `event`, `notification`,
`action`, each only when present, and `exception` (the traceback's text) when there is
one. Either way the configured secrets are masked first (`LOG_SECRETS`, a filter on the
handler: the message and the traceback alike).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from dagd.executors.logs import LOG_SECRETS

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A record's attribute (as `extra=` sets it) -> its key in a JSON line.
FIELDS = (("dag_id", "dag"), ("run_id", "run"), ("task_id", "task"),
          ("try_number", "try"), ("attempt_id", "attempt"), ("event_id", "event"),
          ("notification_id", "notification"), ("action", "action"))


def _iso(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One record as one line of JSON (newlines inside it escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": _iso(record.created), "level": record.levelname,
                                "logger": record.name, "message": record.getMessage()}
        for attr, key in FIELDS:
            value = getattr(record, attr, None)
            if value is not None:
                line[key] = value
        # exc_text first: the secrets filter has masked it already when it had to.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:  # a lone surrogate (a file name os decoded), an int past 64 bits
            return orjson.dumps({key: _plain(value) for key, value in line.items()}).decode()


def _plain(value: object) -> object:
    """`value` as orjson takes it whatever it is: text with any lone surrogate as its
    \\udcxx escape, a number past 64 bits as its digits."""
    if isinstance(value, bool | float) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str, log_format: str, *, stream: IO[str] | None = None) -> None:
    """The root logger writes to stderr in `log_format` ("text" or "json"), secrets
    masked; warnings become log records too (else they would be bare stderr lines)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(LOG_SECRETS)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # one line per change else
