"""`make run` serves the example DAGs: every module they import must be installed by it,
that is, be in the standard library, dagd, dagd's dependencies or its `examples` extra
(the Makefile's `make run` installs `.[examples]`)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _name(requirement: str) -> str:
    """'scikit-learn>=1.3' -> 'scikit-learn', normalized as PEP 503 does."""
    name = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_by_make_run() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    names |= {_name(r) for r in project["optional-dependencies"]["examples"]}
    return names


def top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_make_run_installs_the_examples_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    run_stamp = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "-e '.[examples]'" in run_stamp


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_import_of_an_example_is_installed_by_make_run(path: Path) -> None:
    wanted = installed_by_make_run()
    providers = packages_distributions()
    local = {p.stem for p in EXAMPLES}  # a sibling helper module of the examples
    missing = []
    for module in sorted(top_level_imports(path)):
        if module in sys.stdlib_module_names or module in local or module == "dagd":
            continue
        dists = {_name(d) for d in providers.get(module, [])}
        if not dists & wanted:
            missing.append(f"{module} (from {', '.join(sorted(dists)) or 'no installed package'})")
    assert missing == [], (
        f"{path.name} imports {missing}: add the package to the `examples` extra in "
        "pyproject.toml, which `make run` installs")
