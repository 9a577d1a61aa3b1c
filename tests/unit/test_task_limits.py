"""memory_limit and inherit_env: how a task, a DAG's default_args and the config say them,
and the errors that name the field."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from dagd import DAG, PythonTask
from dagd.config import format_bytes, load_settings, parse_bytes
from dagd.errors import ConfigError, DagDefinitionError


def noop() -> None:
    return None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (1048576, 1048576),
        ("512MB", 512 * 1000**2),
        ("512 mb", 512 * 1000**2),
        ("2GiB", 2 * 1024**3),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("100KiB", 102400),
        ("4096", 4096),
        ("4096B", 4096),
    ],
)
def test_sizes_are_read_in_bytes(given: Any, expected: int) -> None:
    assert parse_bytes(given) == expected


@pytest.mark.parametrize("given", ["lots", "512M", "-1GB", "0", 0, -5, 1.5, True, "", None])
def test_bad_sizes_are_refused_with_the_forms_accepted(given: Any) -> None:
    with pytest.raises(ValueError, match="bytes"):
        parse_bytes(given)


@pytest.mark.parametrize(
    ("number", "text"),
    [(512 * 1000**2, "512 MB"), (256 * 1024**2, "256 MiB"), (2 * 1024**3, "2 GiB"),
     (10**9, "1 GB"), (1000, "1 KB"), (1234, "1234 bytes")],
)
def test_sizes_are_shown_in_the_unit_they_were_likely_given_in(number: int, text: str) -> None:
    assert format_bytes(number) == text


def test_memory_limit_per_task_and_from_default_args() -> None:
    with DAG("mem", default_args={"memory_limit": "1GiB", "inherit_env": True}) as dag:
        PythonTask(task_id="own", python_callable=noop, memory_limit="512MB",
                   inherit_env=False)
        PythonTask(task_id="defaults", python_callable=noop)
    with DAG("plain") as plain:
        PythonTask(task_id="none", python_callable=noop)
    own, defaults = dag.tasks["own"], dag.tasks["defaults"]
    assert (own.memory_limit, own.inherit_env) == (512 * 1000**2, False)
    assert (defaults.memory_limit, defaults.inherit_env) == (1024**3, True)
    none = plain.tasks["none"]
    assert (none.memory_limit, none.inherit_env) == (None, False)
    assert own.describe()["memory_limit"] == 512 * 1000**2


@pytest.mark.parametrize(("field", "value"), [("memory_limit", "a lot"),
                                              ("memory_limit", 0),
                                              ("inherit_env", "yes")])
def test_bad_task_settings_name_the_task_and_the_field(field: str, value: Any) -> None:
    with DAG("bad"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="t", python_callable=noop, **{field: value})
    exc = info.value
    assert (exc.dag_id, exc.task_id, exc.field) == ("bad", "t", field)
    assert repr(value) in exc.message


async def async_noop() -> None:
    return None


def test_a_memory_limit_that_would_not_be_enforced_is_refused() -> None:
    with DAG("mem"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="threaded", python_callable=noop, isolation="thread",
                   memory_limit="1GB")
    assert (info.value.task_id, info.value.field) == ("threaded", "memory_limit")
    assert "isolation=\"process\"" in info.value.message
    with DAG("mem"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="in_loop", python_callable=async_noop, memory_limit="1GB")
    assert (info.value.task_id, info.value.field) == ("in_loop", "memory_limit")
    assert "plain def" in info.value.message
    # A DAG-wide default is for the tasks it can apply to: the others run as before.
    with DAG("mixed", default_args={"memory_limit": "1GB"}) as dag:
        PythonTask(task_id="threaded", python_callable=noop, isolation="thread")
        PythonTask(task_id="in_loop", python_callable=async_noop)
    assert set(dag.tasks) == {"threaded", "in_loop"}


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dagd.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_config_gives_a_default_memory_limit(tmp_path: Path) -> None:
    assert load_settings(write_config(tmp_path, "")).default_memory_limit is None
    path = write_config(tmp_path, '[core]\ndefault_memory_limit = "2GiB"\n')
    assert load_settings(path).default_memory_limit == 2 * 1024**3
    path = write_config(tmp_path, "[core]\ndefault_memory_limit = 536870912\n")
    assert load_settings(path).default_memory_limit == 512 * 1024**2


def test_a_bad_default_memory_limit_names_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[core]\ndefault_memory_limit = "half"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.field == "core.default_memory_limit"
    assert "'half'" in info.value.message


def test_the_shipped_config_reads_and_sets_no_memory_limit() -> None:
    shipped = Path(__file__).resolve().parents[2] / "config" / "dagd.toml"
    assert "default_memory_limit" in shipped.read_text()
    assert load_settings(shipped).default_memory_limit is None


def test_memory_limit_on_a_kind_that_runs_in_the_loop_is_refused() -> None:
    from dagd import DAG, ShellTask

    with DAG("shelled"), pytest.raises(DagDefinitionError,
                                        match="a shell task runs in the daemon's event loop"):
        ShellTask(task_id="s", command="true", memory_limit="64MB")


def test_a_worker_killed_by_a_real_time_signal_is_named_by_number() -> None:
    from dagd.executors.crash import crash_text as _crash_text

    assert _crash_text(-40, None, None) == (
        "worker process killed by signal 40 before reporting a result")
