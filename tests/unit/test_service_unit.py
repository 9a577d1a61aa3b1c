"""The systemd units dagd writes, as text: the checked-in unit is the generator's, and
paths are escaped the way systemd reads them."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from dagd import service_unit
from dagd.errors import InvalidInput
from dagd.service_unit import UnitPaths

REPO = Path(__file__).resolve().parents[2]
P = PurePosixPath


def lines(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_the_checked_in_unit_is_the_one_dagd_service_install_writes_for_its_paths() -> None:
    checked_in = (REPO / "systemd" / "dagd.service").read_text()
    assert checked_in == service_unit.default_system_unit(), (
        "systemd/dagd.service differs from dagd.service_unit: edit the module, then "
        "write the file from default_system_unit()")


def test_the_system_unit_names_the_installation_and_its_data_directory() -> None:
    text = service_unit.system_unit(UnitPaths(
        P("/opt/venvs/dagd/bin/dagd"), P("/etc/dagd/prod.toml"), P("/var/lib/dagd"),
        (P("/data/dagd"),)))
    assert lines(text, "ExecStart") == ["/opt/venvs/dagd/bin/dagd run"]
    assert lines(text, "Environment") == ["DAGD_CONFIG=/etc/dagd/prod.toml"]
    assert lines(text, "WorkingDirectory") == ["/var/lib/dagd"]
    assert lines(text, "ReadWritePaths") == ["-/srv/dagd", "-/data/dagd"]
    assert lines(text, "User") == ["dagd"]
    assert lines(text, "TimeoutStopSec") == ["30"]
    assert lines(text, "WatchdogSec") == ["30"]


def test_the_user_unit_runs_as_its_user_and_starts_with_the_session() -> None:
    text = service_unit.user_unit(UnitPaths(P("/srv/x/.venv/bin/dagd"), P("/srv/x/dagd.toml"),
                                            P("/srv/x")))
    assert not lines(text, "User") and not lines(text, "DynamicUser")
    assert lines(text, "WantedBy") == ["default.target"]
    assert lines(text, "Type") == ["notify"]
    assert lines(text, "WorkingDirectory") == ["/srv/x"]


def test_paths_are_escaped_as_systemd_reads_them() -> None:
    text = service_unit.user_unit(UnitPaths(P("/opt/my dagd/100%/$HOME/bin/dagd"),
                                            P("/etc/my dagd/50%.toml"), P("/srv/a%b")))
    assert lines(text, "ExecStart") == ['"/opt/my dagd/100%%/$$HOME/bin/dagd" run']
    assert lines(text, "Environment") == ['"DAGD_CONFIG=/etc/my dagd/50%%.toml"']
    assert lines(text, "WorkingDirectory") == ["/srv/a%%b"]



def test_a_writable_path_with_a_space_stays_one_path() -> None:
    """ReadWritePaths= is a list split at spaces: a path with one is quoted whole."""
    text = service_unit.system_unit(UnitPaths(
        P("/opt/dagd/.venv/bin/dagd"), P("/etc/dagd/dagd.toml"), P("/var/lib/dagd"),
        (P('/data/my "dagd" 100%'),)))
    assert lines(text, "ReadWritePaths") == ["-/srv/dagd", '"-/data/my \\"dagd\\" 100%%"']

@pytest.mark.parametrize("bad", [P("relative/dagd"), P("/opt/da\ngd")])
def test_a_path_that_cannot_go_into_a_unit_is_refused(bad: PurePosixPath) -> None:
    with pytest.raises(InvalidInput, match="absolute path on one line"):
        service_unit.system_unit(UnitPaths(bad, P("/etc/dagd/dagd.toml"), P("/var/lib/dagd")))


def test_what_the_system_unit_reaches_and_writes() -> None:
    assert service_unit.outside_reach(P("/home/ada/dags"))
    assert service_unit.outside_reach(P("/root"))
    assert not service_unit.outside_reach(P("/homes/x"))
    assert not service_unit.needs_writable(P("/var/lib/dagd/.dagd"))
    assert not service_unit.needs_writable(P("/srv/dagd/inbox"))
    assert service_unit.needs_writable(P("/data/dagd"))
