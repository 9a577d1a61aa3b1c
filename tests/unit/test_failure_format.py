"""How a failed attempt reads in its log: the cause first, then the user's frames only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dagd.authoring.context import Context
from dagd.executors.failure import format_failure
from dagd.templating import TemplateRenderError, render

HERE = str(Path(__file__).resolve())


def caught(call: Callable[[], object]) -> BaseException:
    with pytest.raises(BaseException) as info:
        call()
    return info.value


def as_if_called_by_dagd(exc: BaseException) -> BaseException:
    """Drop this file's frames from the top of the traceback, as if the executor (not a
    test) had called the code that raised."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == HERE:
        tb = tb.tb_next
    return exc.with_traceback(tb)


def test_a_chain_of_user_exceptions_keeps_every_link_and_no_dagd_frame() -> None:
    def load() -> None:
        try:
            {}["rows"]
        except KeyError as exc:
            raise RuntimeError("cannot load") from exc

    text = format_failure(caught(load))
    lines = text.splitlines()
    assert lines[0] == "RuntimeError: cannot load"
    assert lines[1] == "Traceback (most recent call last):"
    assert "KeyError: 'rows'" in lines
    assert "The above exception was the direct cause of the following exception:" in lines
    assert lines[-1] == "RuntimeError: cannot load"
    assert f'File "{HERE}"' in text
    assert "service/dagd" not in text and "_pytest" not in text  # nor pytest's machinery


def test_a_dagd_error_without_user_frames_is_its_one_line() -> None:
    ctx = Context(dag_id="etl", task_id="load", run_id=1, try_number=1, attempt_id=1)
    exc = as_if_called_by_dagd(caught(lambda: render("{{ conf.nope }}", ctx, field="f")))
    assert isinstance(exc, TemplateRenderError)
    assert format_failure(exc) == (
        "TemplateRenderError: DAG 'etl', task 'load', field 'f': template error: "
        "'dict object' has no attribute 'nope'\n"
    )


def test_a_bug_inside_dagd_keeps_its_whole_traceback() -> None:
    # No user frame, and not an exception of dagd's own: dagd's frames are the story.
    exc = as_if_called_by_dagd(caught(lambda: Context.from_json({})))
    text = format_failure(exc)
    lines = text.splitlines()
    assert lines[0] == "KeyError: 'dag_id'"
    assert lines[1] == "Traceback (most recent call last):"
    assert "dagd/authoring/context.py" in text
    assert lines[-1] == "KeyError: 'dag_id'"


def test_an_exception_without_a_message_is_its_name() -> None:
    def stop() -> None:
        raise KeyboardInterrupt

    assert format_failure(caught(stop)).splitlines()[0] == "KeyboardInterrupt"
