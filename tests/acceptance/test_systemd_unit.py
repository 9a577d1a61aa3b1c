"""The systemd unit, checked with Debian's systemd tools (.ci/run installs them): the
checked-in unit passes `systemd-analyze verify` and scores an exposure of at most 2.0
in `systemd-analyze security --offline=yes`; `dagd service install` writes a unit for
this installation that verifies too, keeps a different unit unless --force, and wants
root for the system unit.

`verify` needs ExecStart's binary to exist: the checked-in unit names /opt/dagd, so the
test verifies the checked-in text with that one path replaced by this venv's `dagd`
(the substitution `dagd service install` makes), every other line as it is."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

import pytest

from acceptance.harness import DAGD, Dagd
from dagd import service_unit

REPO = Path(__file__).resolve().parents[2]
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian's systemd package; "
                            ".ci/run installs it)")
MAX_EXPOSURE = 2.0
VENV_DAGD = (Path(sys.prefix) / "bin" / "dagd").resolve()


def analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd="/", env={**os.environ, **(env or {})})


def verify(unit: Path, *, user: bool = False) -> None:
    # A user manager's verify wants a runtime directory; an empty one of its own will do.
    with tempfile.TemporaryDirectory(prefix="dagd-xdg-") as runtime:
        os.chmod(runtime, 0o700)
        done = analyze(*(["--user"] if user else []), "verify", str(unit),
                       env={"XDG_RUNTIME_DIR": runtime} if user else None)
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), done


def exposure(unit: Path) -> float:
    done = analyze("security", "--offline=yes", str(unit))
    assert done.returncode == 0, done
    last = [line for line in done.stdout.splitlines() if "Overall exposure level" in line]
    assert last, done.stdout
    return float(last[0].split(":", 1)[1].split()[0])


@needs_analyze
def test_the_checked_in_unit_verifies_with_its_execstart_present(tmp_path: Path) -> None:
    checked_in = (REPO / "systemd" / "dagd.service").read_text()
    old = f"ExecStart={service_unit.DEFAULT_EXEC} run\n"
    assert checked_in.count(old) == 1
    unit = tmp_path / "dagd.service"
    unit.write_text(checked_in.replace(old, f"ExecStart={VENV_DAGD} run\n"))
    verify(unit)


@needs_analyze
def test_the_checked_in_unit_is_hardened_to_an_exposure_of_two_or_less() -> None:
    score = exposure(REPO / "systemd" / "dagd.service")
    print(f"systemd-analyze security --offline=yes systemd/dagd.service: exposure {score}")
    assert score <= MAX_EXPOSURE


# -- dagd service install -----------------------------------------------------------


def install(dagd: Dagd, *args: str, unit_dir: Path) -> tuple[int, str]:
    done = dagd.cli("service", "install", "--unit-dir", str(unit_dir), *args)
    return done.code, done.output


@pytest.mark.slow
@needs_analyze
def test_install_writes_a_unit_for_this_installation_that_verifies(
    dagd: Dagd, tmp_path: Path
) -> None:
    units = tmp_path / "units"
    code, out = install(dagd, unit_dir=units)
    assert code == 0, out
    unit = units / "dagd.service"
    text = unit.read_text()
    assert f"ExecStart={VENV_DAGD} run\n" in text
    assert f"Environment=DAGD_CONFIG={dagd.config.resolve()}\n" in text
    assert "WorkingDirectory=/var/lib/dagd\n" in text
    assert "User=dagd\n" in text
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    assert "not reloaded" in out and "systemctl enable --now dagd" in out
    verify(unit)
    assert exposure(unit) <= MAX_EXPOSURE
    # Again: the same unit, left as it is.
    code, out = install(dagd, unit_dir=units)
    assert (code, unit.read_text()) == (0, text), out
    assert "unchanged" in out


@pytest.mark.slow
@needs_analyze
def test_install_user_writes_a_user_unit_that_verifies(dagd: Dagd, tmp_path: Path) -> None:
    units = tmp_path / "user-units"
    code, out = install(dagd, "--user", unit_dir=units)
    assert code == 0, out
    text = (units / "dagd.service").read_text()
    assert "\nUser=" not in text and "\nDynamicUser=" not in text
    assert "WantedBy=default.target\n" in text
    assert f"WorkingDirectory={dagd.root}\n" in text  # where the CLI ran
    assert "systemctl --user enable --now dagd" in out
    verify(units / "dagd.service", user=True)


@pytest.mark.slow
def test_install_keeps_a_different_unit_unless_forced(dagd: Dagd, tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    theirs = "[Service]\nExecStart=/usr/bin/true\n"
    (units / "dagd.service").write_text(theirs)
    code, out = install(dagd, unit_dir=units)
    assert code == 1, out
    assert "error:" in out and "exists and is not the unit for this installation" in out
    assert "Traceback" not in out
    assert (units / "dagd.service").read_text() == theirs
    assert [p.name for p in units.iterdir()] == ["dagd.service"]  # no temp file left
    code, out = install(dagd, "--force", unit_dir=units)
    assert code == 0, out
    assert f"ExecStart={VENV_DAGD} run" in (units / "dagd.service").read_text()


@pytest.mark.slow
def test_print_shows_the_unit_and_writes_nothing(dagd: Dagd, tmp_path: Path) -> None:
    units = tmp_path / "units"
    code, out = install(dagd, "--print", unit_dir=units)
    assert code == 0, out
    assert out.startswith("# dagd as a system service") and f"{VENV_DAGD} run" in out
    assert not units.exists()


@pytest.mark.slow
def test_the_system_unit_needs_root(tmp_path: Path) -> None:
    """Run as an unprivileged user (nobody, when the suite runs as root): a clear error,
    and what to run instead."""
    with tempfile.TemporaryDirectory(prefix="dagd-noroot-") as folder:
        os.chmod(folder, 0o755)  # readable by nobody: the config, the working directory
        config = Path(folder) / "dagd.toml"
        config.write_text("[core]\n")
        config.chmod(0o644)
        demote = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if os.geteuid() == 0 and shutil.which("setpriv") is None:
            pytest.skip("running as root and no setpriv to become another user")
        done = subprocess.run(
            [*(demote if os.geteuid() == 0 else []), *DAGD, "--config", str(config),
             "service", "install"],
            capture_output=True, text=True, timeout=30, cwd=folder, check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("DAGD_")})
    assert done.returncode == 1, done
    assert "error: writing /etc/systemd/system/dagd.service needs root: sudo " in done.stderr
    assert "--user" in done.stderr and "Traceback" not in done.stderr


PYTHON = Path(sys.executable).resolve()
HIDDEN_PYTHON = service_unit.outside_reach(PurePosixPath(PYTHON))


@pytest.mark.slow
@pytest.mark.skipif(not HIDDEN_PYTHON, reason="this venv's Python is outside /home and /root")
def test_a_python_under_home_or_root_is_refused_for_the_system_unit(dagd: Dagd) -> None:
    """A venv of a pyenv Python runs it from /root or /home, which ProtectHome=yes hides:
    the unit would fail at its start. Installed into /etc/systemd/system (a tmpfs in a
    mount namespace of its own, so this machine's is never touched): refused; printed:
    a warning."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /etc/systemd/system")
    argv = " ".join(shlex.quote(a) for a in dagd.argv("service", "install"))
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c",
         f"mount -t tmpfs dagd-test /etc/systemd/system || exit 99; {argv}; code=$?; "
         "ls -A /etc/systemd/system; exit $code"],
        capture_output=True, text=True, timeout=30, cwd=dagd.root, env=dagd.env(),
        check=False)
    if done.returncode == 99:
        pytest.skip(f"no private mount here: {done.stderr.strip()}")
    assert done.returncode == 1, done
    assert f"error: the venv's Python {PYTHON} is under /home, /root or /run/user" in (
        done.stderr)
    assert done.stdout == ""  # nothing written into /etc/systemd/system
    printed = dagd.cli("service", "install", "--print")
    assert printed.code == 0, printed
    assert f"warning: the venv's Python {PYTHON} is under" in printed.stderr
    assert printed.stdout.startswith("# dagd as a system service")
