"""The house rules on who imports whom, read from the source with `ast`.

Every module of dagd belongs to one part (see the README's Development section). Run-time
imports count, at module level and inside functions; imports under `if TYPE_CHECKING:`
name types for annotations only and do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "service" / "dagd"

GROUND = {"errors", "version", "config", "config_sources", "config_connections", "config_dask",
          "config_view", "dburl", "lock", "systemd", "states", "retry", "events", "changes",
          "supervise", "accounts", "service_unit"}
FACE = {"__init__", "cli", "cli_mail", "cli_auth", "cli_config", "daemon", "reload",
        "client", "testrun", "plugins", "check", "tables", "cli_db", "dbtools", "cli_doctor",
        "doctor", "doctor_dags", "cli_service", "logformat", "cli_places", "doctor_dask"}
FOLDERS = {"authoring", "kinds", "triggers", "scheduler", "executors", "store", "notify",
           "web", "compat"}
ASYNC_LIBRARIES = {"anyio", "asyncio", "aiohttp", "aiosqlite", "aiosmtplib", "asyncpg",
                   "watchfiles", "sniffio"}
# A DAG's `schedule=` becomes a Cron or Interval: authoring may import that declaration
# (timers.py is pure: no I/O, no clock, no other part of dagd).
DECLARATIONS = {"dagd.triggers.timers"}
# The loader imports DAG files with the `airflow` import hook on; the hook is pure
# (importlib and the module map; the names it serves are imported by name when used).
AIRFLOW_HOOK = {"dagd.compat.hook"}


def part_of(module: str) -> str:
    """'dagd.scheduler.loop' -> 'scheduler'; 'dagd.templating' -> 'kinds'."""
    name = module.split(".")[1] if "." in module else "__init__"
    if name in FOLDERS:
        return name
    if name == "templating":
        return "kinds"  # the task kinds' Jinja2 rendering
    if name in GROUND:
        return "ground"
    if name in FACE:
        return "face"
    raise AssertionError(f"{module} belongs to no part: add it to the README's parts and here")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        yield ".".join(parts), path


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def imports(path: Path, module: str) -> set[str]:
    """Every module `path` imports at run time (absolute names)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            # `from dagd.web import hooks` imports the module dagd.web.hooks
            found.update(f"{name}.{alias.name}" for alias in node.names
                         if (PACKAGE.parent / Path(*f"{name}.{alias.name}".split("."))
                             ).with_suffix(".py").exists())
    return found


GRAPH = {module: imports(path, module) for module, path in modules()}


def inner(module: str) -> set[str]:
    return {name for name in GRAPH[module] if name == "dagd" or name.startswith("dagd.")}


def offenders(part: str, refused: set[str]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module in GRAPH if part_of(module) == part
        for name in inner(module)
        if part_of(name) in refused and name not in DECLARATIONS
    )


def test_every_module_belongs_to_a_part() -> None:
    for module in GRAPH:
        part_of(module)


def test_triggers_import_no_scheduler_store_web_or_executor() -> None:
    assert offenders("triggers", {"scheduler", "store", "web", "executors", "notify",
                                  "face"}) == []


def test_authoring_is_pure() -> None:
    found = offenders("authoring", FOLDERS - {"authoring"} | {"face"})
    assert [f for f in found if f.split(" imports ")[1] not in AIRFLOW_HOOK] == []
    for module in GRAPH:
        if part_of(module) == "authoring":
            used = {name.split(".")[0] for name in GRAPH[module]} & ASYNC_LIBRARIES
            assert not used, f"{module} imports {sorted(used)}: authoring imports nothing async"


def test_store_imports_no_other_part() -> None:
    assert offenders("store", FOLDERS - {"store"} | {"face"}) == []


def test_ground_floor_imports_no_part() -> None:
    assert offenders("ground", FOLDERS | {"face"}) == []


def test_compat_imports_no_scheduler_store_web_or_executor() -> None:
    """The Airflow names are authoring names: they build tasks, and run them in a
    worker or the loop like any task kind."""
    assert offenders("compat", {"scheduler", "store", "web", "executors", "notify",
                                "face"}) == []


def test_the_airflow_hook_imports_only_the_module_map() -> None:
    assert inner("dagd.compat.hook") - {"dagd.compat.airflow.names", "dagd.errors"} == set()


def test_scheduler_imports_no_task_kind_or_web() -> None:
    assert offenders("scheduler", {"kinds", "web", "notify", "face"}) == []


def test_only_the_face_imports_the_face() -> None:
    for part in FOLDERS | {"ground"}:
        assert offenders(part, {"face"}) == [], part


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.count(".") >= 1))
def test_no_module_imports_itself_in_a_circle(module: str) -> None:
    """Following run-time imports inside dagd never leads back to where it started."""
    seen: set[str] = set()
    todo = [name for name in inner(module) if name in GRAPH]
    while todo:
        name = todo.pop()
        if name == module:
            pytest.fail(f"{module} imports itself through a circle")
        if name in seen:
            continue
        seen.add(name)
        # A package import runs its __init__ (dagd's own __init__ is the public API,
        # which imports most of dagd; it is not followed).
        todo.extend(n for n in inner(name) if n in GRAPH and n != "dagd")
