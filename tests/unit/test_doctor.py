"""The pure verdicts of `dagd doctor`: free space, the mount table, the inotify limit,
systemctl's answers, the Python and SQLite versions, whether email is used."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dagd.authoring.dag import DAG
from dagd.config import Settings
from dagd.doctor import (
    FAIL,
    GIB,
    MB,
    OK,
    WARN,
    check_port,
    check_python,
    check_service,
    check_sqlite,
    inotify_status,
    judge_mount,
    mount_of,
    parse_mounts,
    space_status,
    sqlite_floor,
)
from dagd.doctor_dags import smtp_used
from dagd.lock import Holder

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 253:1 / / rw,relatime - ext4 /dev/vda1 rw
40 27 0:50 / /srv/shared rw,relatime - nfs4 files.example:/export rw,vers=4.2
41 40 0:51 / /srv/shared/local rw,relatime - xfs /dev/vdb1 rw
42 27 0:52 / /mnt/my\\040disk rw,relatime - fuse.sshfs me@host:/data rw
43 27 0:53 / /mnt/other rw,relatime - fuse.mergerfs pool rw
44 27 0:54 / /srv/win rw,relatime - cifs //nas/share rw
"""


@pytest.mark.parametrize(("free", "total", "expected"), [
    (50 * MB, 1000 * GIB, FAIL),
    (500 * MB, 2 * GIB, WARN),  # under 1 GiB
    (10 * GIB, 1000 * GIB, WARN),  # 1 %: under 5 %
    (10 * GIB, 20 * GIB, OK),
])
def test_free_space_thresholds(free: int, total: int, expected: str) -> None:
    assert space_status(free, total) == expected


def test_mountinfo_and_proc_mounts_both_parse() -> None:
    mounts = parse_mounts(MOUNTINFO)
    assert ("/mnt/my disk", "fuse.sshfs", "me@host:/data") in mounts
    assert parse_mounts("/dev/vda1 / ext4 rw 0 0\nserver:/x /data nfs rw 0 0\n") == [
        ("/", "ext4", "/dev/vda1"), ("/data", "nfs", "server:/x")]


@pytest.mark.parametrize(("path", "status", "kind"), [
    ("/var/lib/dagd", OK, "ext4"),
    ("/srv/shared/dagd", FAIL, "nfs4"),
    ("/srv/shared/local/dagd", OK, "xfs"),  # a local disk mounted inside the NFS share
    ("/srv/sharedness", OK, "ext4"),  # a prefix of the string, not of the path
    ("/mnt/my disk/dagd", FAIL, "fuse.sshfs"),
    ("/mnt/other/dagd", WARN, "fuse.mergerfs"),
    ("/srv/win/dagd", FAIL, "cifs"),
])
def test_network_file_systems_fail(path: str, status: str, kind: str) -> None:
    result = judge_mount(Path(path), parse_mounts(MOUNTINFO))
    assert result.status == status, result
    assert kind in result.detail
    if status == FAIL:
        assert "local disk" in result.fix


def test_the_last_mount_over_a_point_wins() -> None:
    mounts = parse_mounts("1 0 0:1 / / rw - ext4 a rw\n2 1 0:2 / / rw - nfs b:/ rw\n")
    assert mount_of(Path("/x"), mounts) == ("/", "nfs", "b:/")


@pytest.mark.parametrize(("needed", "limit", "expected"), [
    (10, 8192, OK), (5000, 8192, WARN), (9000, 8192, FAIL)])
def test_inotify_limit(needed: int, limit: int, expected: str) -> None:
    assert inotify_status(needed, limit) == expected


def fake_systemctl(answers: dict[str, tuple[int, str]]):  # type: ignore[no-untyped-def]
    """A runner answering `systemctl ...` from a table keyed by its arguments."""

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        code, out = answers.get(" ".join(argv[1:]), (1, ""))
        return subprocess.CompletedProcess(argv, code, out, "")

    return run


def which(_: str) -> str:
    return "/usr/bin/systemctl"


def test_service_enabled_on_a_running_system() -> None:
    run = fake_systemctl({"is-system-running": (0, "running\n"),
                          "is-enabled dagd.service": (0, "enabled\n")})
    result = check_service(run, which=which)
    assert (result.status, result.detail) == (OK, "dagd.service (system) installed, enabled")


def test_service_disabled_says_how_to_enable() -> None:
    run = fake_systemctl({"is-system-running": (0, "degraded\n"),
                          "--user is-enabled dagd.service": (1, "disabled\n")})
    result = check_service(run, which=which)
    assert result.status == WARN
    assert result.fix == "systemctl --user enable --now dagd.service"


def test_service_masked() -> None:
    run = fake_systemctl({"is-system-running": (0, "running\n"),
                          "is-enabled dagd.service": (1, "masked\n")})
    assert check_service(run, which=which).fix == "systemctl unmask dagd.service"


def test_no_unit_and_no_manager_is_a_warning_that_says_so() -> None:
    run = fake_systemctl({"is-system-running": (1, "offline\n")})
    result = check_service(run, which=which)
    assert result.status == WARN
    assert "no dagd.service installed" in result.detail
    assert "no systemd manager runs here" in result.detail
    assert "dagd service install" in result.fix


def test_no_systemctl_is_a_warning() -> None:
    result = check_service(fake_systemctl({}), which=lambda _: None)
    assert result.status == WARN
    assert "no systemctl" in result.detail


@pytest.mark.parametrize(("sql", "floor"), [
    ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2;", ((3, 24, 0), "upsert")),
    ("UPDATE t SET a = 1 WHERE b = 2\nRETURNING id;", ((3, 35, 0), "RETURNING")),
    ("SELECT 1; UPDATE t SET a = 1 RETURNING id; INSERT INTO t VALUES (1) ON CONFLICT DO "
     "NOTHING;", ((3, 35, 0), "RETURNING")),
    ("SELECT data ->> '$.a' FROM t;", ((3, 38, 0), "->> and unixepoch()")),
    ("SELECT 1;", ((3, 8, 3), "WAL and partial indexes")),
])
def test_the_oldest_sqlite_follows_what_the_sql_uses(
        sql: str, floor: tuple[tuple[int, int, int], str]) -> None:
    assert sqlite_floor(sql) == floor


def test_python_and_sqlite_floors() -> None:
    assert check_python((3, 10, 12)).status == FAIL
    assert check_python((3, 11, 0)).status == OK
    returning = "UPDATE t SET a = 1 RETURNING id;"
    old = check_sqlite((3, 34, 1), sql=returning, probe=lambda: None)
    assert (old.status, old.detail) == (FAIL, "3.34.1: dagd needs 3.35.0 or newer (RETURNING)")
    assert check_sqlite((3, 40, 1), sql=returning, probe=lambda: None).status == OK
    missing = check_sqlite((3, 37, 2), sql=returning,
                           probe=lambda: "no JSON1 (json_each): no such table")
    assert missing.status == FAIL
    assert "JSON1" in missing.detail


def test_the_port_held_by_this_daemon_is_ok() -> None:
    holder = Holder(pid=4242, host="127.0.0.1", port=8080)
    result = check_port("127.0.0.1", 8080, holder)
    assert result.status == OK
    assert "pid 4242" in result.detail


def test_email_is_used_when_smtp_is_set_or_a_dag_sends_any() -> None:
    assert smtp_used(Settings(), []) is None
    assert smtp_used(Settings(smtp_host="mail.example"), []) == "[smtp] host set"
    quiet, loud = DAG("quiet"), DAG("loud", email="ops@example.com")
    assert smtp_used(Settings(), [quiet]) is None
    assert smtp_used(Settings(), [quiet, loud]) == "DAG(s) loud send email"
