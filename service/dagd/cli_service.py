"""`dagd service install [--user]`: write the systemd unit for this installation (cli.py
registers it).

The unit runs this installation's own `dagd` (the running venv's script, its real path)
with DAGD_CONFIG set to the config file this command found (or `--config`, resolved).
The system unit goes to /etc/systemd/system (root only), the user unit to
~/.config/systemd/user ($XDG_CONFIG_HOME); `--unit-dir` writes elsewhere (a package's
staging folder, a test) and then reloads nothing. A different unit already there is
kept unless `--force`; the same one is left as it is. After writing, `systemctl
daemon-reload`: where systemd is not running (a container, an image being built) the
unit stays written, the command says so and prints what to run, and exits 0: the
manager reads the unit when it starts. `--print` shows the unit and writes nothing.
"""

from __future__ import annotations

import argparse
import functools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
from rich.console import Console
from rich.markup import escape

from dagd import service_unit
from dagd.config import Settings
from dagd.errors import ConfigError, InvalidInput
from dagd.service_unit import UnitPaths

UNIT = "dagd.service"
SYSTEM_DIR = Path("/etc/systemd/system")
RELOAD_TIMEOUT = 30.0


def add_parsers(sub: Any) -> None:
    service = sub.add_parser("service", help="run dagd as a systemd service")
    ssub = service.add_subparsers(dest="service_command", required=True)
    install = ssub.add_parser(
        "install", help="write the systemd unit for this installation, then daemon-reload",
        description="Write dagd.service for this installation (this venv's dagd, the "
                    "config file given or found) and run systemctl daemon-reload.")
    install.add_argument("--user", action="store_true",
                         help="a user unit (~/.config/systemd/user), run as you")
    install.add_argument("--force", action="store_true",
                         help="replace a different dagd.service already there")
    install.add_argument("--print", dest="print_only", action="store_true",
                         help="print the unit instead of writing it")
    install.add_argument("--unit-dir", type=Path,
                         help="write the unit into this folder instead, and reload nothing "
                              "(for packaging)")
    install.add_argument("--workdir", type=Path,
                         help="the service's working directory, where the config's "
                              "relative paths start (default: /var/lib/dagd; with "
                              "--user, the current directory)")


def commands(console: Console) -> dict[tuple[str, str | None], Any]:
    """cli.py's COMMANDS entries for these commands."""
    return {("service", "install"): functools.partial(cmd_install, console=console)}


def unit_dir(*, user: bool, environ: dict[str, str] | None = None) -> Path:
    """Where systemd looks for an administrator's units (system) or the user's."""
    if not user:
        return SYSTEM_DIR
    env = os.environ if environ is None else environ
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user"


def installation_dagd() -> Path:
    """The `dagd` script of the environment this command runs in, its real path."""
    candidates = [Path(sys.prefix) / "bin" / "dagd"]
    found = shutil.which("dagd")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    raise ConfigError(f"no dagd script in {Path(sys.prefix) / 'bin'}: install dagd in the "
                      "environment the service is to run (pip install dagd)")


@dataclass(frozen=True)
class Plan:
    paths: UnitPaths
    text: str
    warnings: list[str]  # worth knowing
    hidden: list[str]  # what the system unit cannot reach: it would not start


def plan(settings: Settings, *, user: bool, workdir: Path | None) -> Plan:
    if settings.config_file is None:
        raise ConfigError("no config file found: give one with --config FILE (the unit "
                          "points DAGD_CONFIG at it), e.g. a copy of config/dagd.toml "
                          "in /etc/dagd/dagd.toml")
    config = settings.config_file.resolve()
    work = (workdir or (Path.cwd() if user else Path(service_unit.STATE_DIR))).absolute()
    data_dir = work / settings.data_dir  # relative paths start at WorkingDirectory
    exec_path = installation_dagd()
    warnings: list[str] = []
    hidden: list[str] = []
    writable: tuple[PurePosixPath, ...] = ()
    if not user:
        # The venv's Python too: a venv made with a pyenv or home-built Python runs it
        # from the home folder it was built in.
        python = Path(sys.executable).resolve()
        for what, path in (("dagd", exec_path), ("the venv's Python", python),
                           ("the config file", config)):
            if service_unit.outside_reach(PurePosixPath(path)):
                hidden.append(
                    f"{what} {path} is under /home, /root or /run/user, which the system "
                    "unit hides (ProtectHome=yes): install dagd in a venv of the system's "
                    "Python (/usr/bin/python3 -m venv /opt/dagd/.venv) and its config in "
                    "/etc/dagd, or use --user")
        for what, path in (("data directory", data_dir),
                           ("DAGs folder", work / settings.dags_folder)):
            if service_unit.outside_reach(PurePosixPath(path)):
                warnings.append(f"the {what} {path} is hidden from the system unit "
                                "(ProtectHome=yes): move it under /var/lib/dagd or /srv")
        if service_unit.needs_writable(PurePosixPath(data_dir)):
            writable = (PurePosixPath(data_dir),)
    paths = UnitPaths(PurePosixPath(exec_path), PurePosixPath(config),
                      PurePosixPath(work), writable)
    text = service_unit.user_unit(paths) if user else service_unit.system_unit(paths)
    return Plan(paths, text, warnings, hidden)


def write_unit(target: Path, text: str, *, force: bool) -> bool:
    """Write `text` to `target` (atomically, mode 0644); False if it was already so."""
    try:
        old = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise ConfigError(f"cannot read {target}: {exc.strerror}") from None
    if old == text:
        return False
    if old is not None and not force:
        raise InvalidInput(f"{target} exists and is not the unit for this installation: "
                           "kept; --force replaces it (compare: dagd service install "
                           f"--print | diff {target} -)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dagd.service.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    return True


def daemon_reload(*, user: bool) -> str | None:
    """`systemctl [--user] daemon-reload`; None when done, else why not."""
    argv = ["systemctl", *(["--user"] if user else []), "daemon-reload"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=RELOAD_TIMEOUT,
                              check=False)
    except FileNotFoundError:
        return "no systemctl on this machine"
    except subprocess.TimeoutExpired:
        return f"systemctl did not answer within {RELOAD_TIMEOUT:.0f}s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"systemctl exited with {done.returncode}"
    return None


def _install(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    user = bool(args.user)
    chosen = plan(settings, user=user, workdir=args.workdir)
    folder = args.unit_dir or unit_dir(user=user)
    target = folder / UNIT
    # Into this machine's systemd: refused when the unit could not start here. Printed
    # or written for packaging, it may be meant for another machine: warnings.
    installing = not user and args.unit_dir is None and not args.print_only
    if installing and os.geteuid() != 0:
        raise ConfigError(f"writing {target} needs root: sudo {chosen.paths.exec_path} "
                          f"--config {chosen.paths.config} service install "
                          "(or --user for a unit of your own)")
    if installing and chosen.hidden:
        raise ConfigError(chosen.hidden[0])
    warnings = [*chosen.hidden, *chosen.warnings]
    if args.print_only:
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        sys.stdout.write(chosen.text)
        return 0
    changed = write_unit(target, chosen.text, force=bool(args.force))
    say = functools.partial(console.print, highlight=False, soft_wrap=True)
    say(f"{'wrote' if changed else 'unchanged:'} {escape(str(target))} (ExecStart "
        f"{escape(str(chosen.paths.exec_path))}, DAGD_CONFIG "
        f"{escape(str(chosen.paths.config))})")
    for warning in warnings:
        say(f"[yellow]warning:[/] {escape(warning)}")
    ctl = "systemctl --user" if user else "sudo systemctl"
    journal = "journalctl --user" if user else "journalctl"
    steps: list[str] = []
    if not user and not _user_exists("dagd"):
        steps.append("sudo useradd --system --home-dir /var/lib/dagd "
                     "--shell /usr/sbin/nologin dagd")
    if args.unit_dir is not None:
        say("not reloaded: the unit is in --unit-dir, where the package puts it")
    else:
        why = daemon_reload(user=user)
        if why is not None:
            say(f"[yellow]systemd not reloaded:[/] {escape(why)}; the unit is written, "
                "and read when the manager starts. Once it runs:")
            steps.append(f"{ctl} daemon-reload")
    steps += [f"{ctl} enable --now dagd", f"{ctl.removeprefix('sudo ')} status dagd",
              f"{journal} -u dagd -f"]
    if user:
        steps.append("loginctl enable-linger  # keeps it running while you are logged out")
    say("next:")
    for step in steps:
        say(f"  {escape(step)}")
    return 0


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def cmd_install(settings: Settings, args: argparse.Namespace, *,
                      console: Console) -> int:
    # Files and a subprocess: in a thread, as every blocking call of a command is.
    return await anyio.to_thread.run_sync(_install, settings, args, console)
