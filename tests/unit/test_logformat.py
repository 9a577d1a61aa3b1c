"""The daemon's log lines: JSON, one object per line, with the record's fields and its
exception, the configured secrets masked; the text format as it always was."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest

from dagd.executors.logs import SecretFilter
from dagd.logformat import JsonFormatter, configure, formatter

SECRET = "hunter2-very-secret"


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing JSON into a buffer, through a secrets filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    secrets = SecretFilter()
    secrets.secrets = [SECRET]
    handler.addFilter(secrets)
    log = logging.getLogger("dagd.test.logformat")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    try:
        yield log, out
    finally:
        log.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    text = out.getvalue()
    assert text.endswith("\n")
    return [orjson.loads(line) for line in text.splitlines()]


def test_a_record_is_one_json_line_with_its_fields(
    logger: tuple[logging.Logger, io.StringIO]
) -> None:
    log, out = logger
    log.error("%s failed: %s", "etl.load[run 42 #2]", "boom\nsecond line",
              extra={"dag_id": "etl", "run_id": 42, "task_id": "load", "try_number": 2,
                     "attempt_id": 7})
    [line] = lines(out)
    assert line == {
        "time": line["time"], "level": "ERROR", "logger": "dagd.test.logformat",
        "message": "etl.load[run 42 #2] failed: boom\nsecond line",
        "dag": "etl", "run": 42, "task": "load", "try": 2, "attempt": 7,
    }
    stamp = str(line["time"])
    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).utcoffset().total_seconds() == 0


def test_fields_absent_or_none_are_left_out(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = logger
    log.info("dagd ready")
    log.info("etl[run 3] started", extra={"dag_id": "etl", "run_id": 3, "task_id": None})
    first, second = lines(out)
    assert set(first) == {"time", "level", "logger", "message"}
    assert (second["dag"], second["run"]) == ("etl", 3) and "task" not in second


def test_the_exception_is_a_field_and_secrets_are_masked(
    logger: tuple[logging.Logger, io.StringIO]
) -> None:
    log, out = logger
    try:
        raise RuntimeError(f"cannot log in with {SECRET}")
    except RuntimeError:
        log.exception("connecting with password %s failed", SECRET)
    [line] = lines(out)
    assert line["message"] == "connecting with password *** failed"
    exception = str(line["exception"])
    assert exception.startswith("Traceback (most recent call last):")
    assert "RuntimeError: cannot log in with ***" in exception
    assert SECRET not in out.getvalue()


def test_text_is_the_format_it_always_was() -> None:
    record = logging.LogRecord("dagd.daemon", logging.INFO, __file__, 1, "dagd %s", ("ready",),
                               None)
    text = formatter("text").format(record)
    assert text.endswith(" INFO dagd.daemon: dagd ready")
    assert isinstance(formatter("json"), JsonFormatter)


def test_configure_replaces_the_root_handlers() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    out = io.StringIO()
    try:
        configure("WARNING", "json", stream=out)
        logging.getLogger("dagd.somewhere").warning("careful")
        logging.getLogger("dagd.somewhere").info("not shown")
        [line] = lines(out)
        assert (line["level"], line["logger"], line["message"]) == (
            "WARNING", "dagd.somewhere", "careful")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)


def test_undecodable_text_and_a_huge_number_still_make_one_json_line(
        logger: tuple[logging.Logger, io.StringIO], capsys: pytest.CaptureFixture[str]) -> None:
    log, out = logger
    log.info("loaded %s", "caf\udcff.py")  # a file name that is not UTF-8, as os gives it
    log.info("big", extra={"run_id": 2**70})
    found = lines(out)
    assert [line["message"] for line in found] == ["loaded caf\\udcff.py", "big"]
    assert found[1]["run"] == str(2**70)
    assert "Logging error" not in capsys.readouterr().err


def test_a_record_whose_arguments_do_not_fit_is_logged_masked_not_raised(
        logger: tuple[logging.Logger, io.StringIO], capsys: pytest.CaptureFixture[str]) -> None:
    log, out = logger
    log.info("retrying %d", SECRET)  # a third-party logger's mistake: %d of a string
    (line,) = lines(out)
    assert "retrying %d" in str(line["message"])
    assert SECRET not in out.getvalue() + capsys.readouterr().err
