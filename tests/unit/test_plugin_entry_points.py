"""Plugins from installed packages: an entry point in the group `dagd.plugins`, found
through the package metadata on sys.path, as pip would install it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dagd import plugins


def install(site: Path, name: str, module_source: str) -> None:
    """Lay out a package and its dist-info the way an installed wheel has them."""
    (site / name).mkdir()
    (site / name / "__init__.py").write_text(textwrap.dedent(module_source))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[dagd.plugins]\n{name} = {name}\n")


def test_an_installed_plugin_is_found_and_a_broken_one_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, "dagd_pager", """
        from dagd.notify.base import Notifier

        class PagerNotifier(Notifier):
            kind = "pager"

            async def send(self, notification):
                pass
    """)
    install(tmp_path, "dagd_broken_pkg", "raise RuntimeError('cannot reach the licence server')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # The process's plugin state is global: this test's broken plugin stays its own.
    monkeypatch.setattr(plugins, "errors", [])
    monkeypatch.setattr(plugins, "_loaded", set())
    failures = plugins.load_entry_points()
    assert [f.message for f in failures] == [
        "plugin failed to load: RuntimeError: cannot reach the licence server"
    ]
    assert "dagd_broken_pkg" in failures[0].file
    from dagd.plugins import PagerNotifier  # type: ignore[attr-defined]

    assert PagerNotifier.kind == "pager"
    assert plugins.registry.origin["PagerNotifier"].startswith("entry point dagd_pager")
