"""Per-attempt logs: a capped, append-only file per attempt, and the capture that
routes `print` and `logging` output of in-loop and thread tasks into it.

The file is created on the first write, so an attempt that prints nothing costs no
file. Past `max_bytes`, one notice is written and further output is discarded.
`mask` hides configured secrets' values in a log's text when it is shown.
"""

from __future__ import annotations

import contextvars
import io
import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

_current_log: contextvars.ContextVar[AttemptLog | None] = contextvars.ContextVar(
    "dagd_attempt_log", default=None
)


def attempt_log_path(
    logs_dir: Path | str, dag_id: str, run_id: int, task_id: str, try_number: int,
    map_index: int = -1,
) -> str:
    """LOGS/DAG/run_RUN/TASK[MAP]/attempt_TRY.log (a str: built once per attempt)."""
    # "[i]" cannot appear in a task id, so a mapped instance never meets another task.
    task_dir = task_id if map_index < 0 else f"{task_id}[{map_index}]"
    return f"{logs_dir}/{dag_id}/run_{run_id}/{task_dir}/attempt_{try_number}.log"


class AttemptLog:
    def __init__(self, path: str | Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.written = 0
        self.truncated = False
        self.sealed = False
        self._file: io.BufferedWriter | None = None
        # A thread task and the loop may both touch the log (the loop seals it at a
        # timeout while the abandoned thread still prints).
        self._lock = threading.Lock()

    def write(self, data: str | bytes) -> None:
        with self._lock:
            self._write(data)

    def _write(self, data: str | bytes) -> None:
        if self.truncated or self.sealed:
            return
        chunk = data.encode("utf-8", "replace") if isinstance(data, str) else data
        if not chunk:
            return
        if self._file is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._file = open(self.path, "ab")
        room = self.max_bytes - self.written
        if len(chunk) > room:
            self._file.write(chunk[: max(room, 0)])
            self._file.write(
                f"\n[dagd] log truncated at {self.max_bytes} bytes; "
                "further output of this attempt is discarded\n".encode()
            )
            self.truncated = True
            self.written = self.max_bytes
        else:
            self._file.write(chunk)
            self.written += len(chunk)
        self._file.flush()

    def close(self) -> None:
        """Close the file; a later write opens it again (for the executor's own notes)."""
        if self._file is None:  # most attempts never wrote: nothing to close
            return
        with self._lock:
            self._close()

    def seal(self) -> None:
        """Close for good: later writes, such as an abandoned thread's, are dropped."""
        with self._lock:
            self.sealed = True
            self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


MASK = b"***"
MASK_MIN_CHARS = 4  # a shorter value would hide ordinary words and numbers, not secrets


def secret_values(
    *, smtp_password_env: str | None, connections: Iterable[Mapping[str, Any]],
    webhook_secret_envs: Iterable[str | None], environ: Mapping[str, str] | None = None,
    smtp_password_file: str = "",
) -> list[str]:
    """The values of the configured secrets, read now: the environment variables that
    connections (`password_env`, `token_env`, `headers_env`), SMTP and webhooks name,
    and the SMTP password's file."""
    names: set[str | None] = {smtp_password_env, *webhook_secret_envs}
    for table in connections:
        names.update((table.get("password_env"), table.get("token_env")))
        names.update((table.get("headers_env") or {}).values())
    env = os.environ if environ is None else environ
    values = [env.get(name, "") for name in names if name]
    if smtp_password_file:
        try:
            values.append(Path(smtp_password_file).read_text("utf-8").strip())
        except (OSError, UnicodeDecodeError):
            pass  # unreadable here: nothing of it can be in a log read here either
    return values


def open_log(path: str) -> BinaryIO:
    """An attempt's log file, for reading, never through a symbolic link: a task that
    puts one in its log's place (to another file of the data directory) gets nothing
    served but its own log. A link raises OSError (ELOOP)."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


def configured_secrets(settings: Any, dags: Iterable[Any]) -> list[str]:
    """The values of every secret the configuration and the DAGs name, read now: SMTP's,
    the connections' (the config's, and those a SIGHUP loaded since) and the webhooks'."""
    from dagd.kinds.connections import connection_names, get_connection

    return secret_values(
        smtp_password_env=settings.smtp_password_env,
        smtp_password_file=settings.smtp_password_file,
        connections=[*settings.connections.values(),
                     *map(get_connection, connection_names())],
        webhook_secret_envs=[getattr(trigger, "secret_env", None)
                             for dag in dags for trigger in dag.triggers])


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """`mask` for text."""
    for value in sorted({s for s in secrets if len(s) >= MASK_MIN_CHARS}, key=len,
                        reverse=True):
        text = text.replace(value, MASK.decode())
    return text


class SecretFilter(logging.Filter):
    """Masks the configured secrets in every record of the daemon's own log (an error a
    task raised, an import error, may carry one); `secrets` is set again at each load."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            try:
                message = record.getMessage()
            except Exception:  # arguments that do not fit (a library's "%d" of a str):
                # shown with the message, masked, rather than raised at the caller.
                message = f"{record.msg} (arguments: {record.args!r})"
                record.msg, record.args = message, None
            masked = mask_text(message, self.secrets)
            if masked != message:
                record.msg, record.args = masked, None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = mask_text(record.exc_text, self.secrets)
        return True


# The filter the daemon's log handlers carry (cli `run` installs it).
LOG_SECRETS = SecretFilter()


def mask(text: bytes, secrets: Iterable[str]) -> bytes:
    """`text` with every occurrence of each secret's value replaced by `***`; values that
    are empty or shorter than MASK_MIN_CHARS are left alone. Longest first, so a secret
    that holds another is hidden whole."""
    values = sorted({s.encode() for s in secrets if len(s) >= MASK_MIN_CHARS},
                    key=len, reverse=True)
    for value in values:
        text = text.replace(value, MASK)
    return text


def current_log() -> AttemptLog | None:
    return _current_log.get()


def set_current_log(log: AttemptLog | None) -> contextvars.Token[AttemptLog | None]:
    return _current_log.set(log)


def reset_current_log(token: contextvars.Token[AttemptLog | None]) -> None:
    _current_log.reset(token)


class _Router(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: text goes to the running attempt's log."""

    def __init__(self, original: Any) -> None:
        self.original = original

    def write(self, text: str) -> int:
        log = _current_log.get()
        if log is not None:
            log.write(text)
        else:
            self.original.write(text)
        return len(text)

    def flush(self) -> None:
        if _current_log.get() is None:
            self.original.flush()

    def fileno(self) -> int:
        return int(self.original.fileno())

    def isatty(self) -> bool:
        return bool(self.original.isatty())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.original, "encoding", "utf-8"))


class _AttemptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log = _current_log.get()
        if log is not None:
            try:
                log.write(self.format(record) + "\n")
            except Exception:
                self.handleError(record)


class OutsideAttempts(logging.Filter):
    """Keeps a task's own log records out of the daemon's console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _current_log.get() is None


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_installed = False


def install_capture() -> None:
    """Route print/logging of in-loop and thread tasks into their attempt logs. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    sys.stdout = _Router(sys.stdout)
    sys.stderr = _Router(sys.stderr)
    handler = _AttemptHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    for existing in logging.getLogger().handlers:
        if existing is not handler:
            existing.addFilter(OutsideAttempts())
