"""The systemd unit files dagd runs under, as text: the hardened system unit and the
user unit (a laptop, a server without root), for one installation's paths.

Pure: no I/O. `dagd service install` (cli_service.py) writes what this renders, and
systemd/dagd.service is this module's system unit for the default paths (a test keeps
the two the same). Paths are escaped for unit files: `%` is a specifier and `$` a
variable in ExecStart=, so they are doubled; a path with a space is quoted; a newline
cannot be written at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from dagd.errors import InvalidInput

# The checked-in unit's paths: the README's install puts dagd there.
DEFAULT_EXEC = PurePosixPath("/opt/dagd/.venv/bin/dagd")
DEFAULT_CONFIG = PurePosixPath("/etc/dagd/dagd.toml")
STATE_DIR = PurePosixPath("/var/lib/dagd")  # StateDirectory=dagd
DATA_FOLDERS = PurePosixPath("/srv/dagd")  # ReadWritePaths=-/srv/dagd, by convention
# Out of the system unit's reach with ProtectHome=yes.
HOMES = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))


@dataclass(frozen=True)
class UnitPaths:
    exec_path: PurePosixPath  # the `dagd` script of the installation's venv
    config: PurePosixPath  # DAGD_CONFIG
    workdir: PurePosixPath  # WorkingDirectory: where the config's relative paths start
    writable: tuple[PurePosixPath, ...] = ()  # ReadWritePaths beyond /srv/dagd


def _checked(path: PurePosixPath, what: str) -> str:
    text = str(path)
    if "\n" in text or "\r" in text or not path.is_absolute():
        raise InvalidInput(f"{what} {text!r} cannot go into a unit file: it must be an "
                           "absolute path on one line")
    return text.replace("%", "%%")


def _word(path: PurePosixPath, what: str) -> str:
    """One word of a command line (ExecStart=): $ and % doubled, quoted if needed."""
    text = _checked(path, what).replace("$", "$$")
    if any(c in text for c in " \t\"'\\;"):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _env(name: str, path: PurePosixPath, what: str) -> str:
    text = _checked(path, what)
    if any(c in text for c in " \t\"'\\"):
        return '"' + f"{name}={text}".replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name}={text}"


def _list_word(prefix: str, path: PurePosixPath, what: str) -> str:
    """One entry of a space-separated list (ReadWritePaths=): quoted whole, its
    prefix inside, when the path has a space or a quote (else it would be split)."""
    text = prefix + _checked(path, what)
    if any(c in text for c in " \t\"'\\"):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


SYSTEM_UNIT = """\
# dagd as a system service: Type=notify with a watchdog, SIGHUP reload, graceful stop,
# hardened (`systemd-analyze security` exposure 1.5, checked by
# tests/acceptance/test_systemd_unit.py). `dagd service install` writes this unit with
# ExecStart and DAGD_CONFIG set for its installation; the steps by hand are in
# README.md, "Running as a service".
[Unit]
Description=dagd workflow orchestrator
After=network-online.target
Wants=network-online.target

[Service]
# READY=1 once migrations, recovery, the HTTP port and the triggers are all in place;
# STATUS= lines say what it does (systemctl status dagd).
Type=notify
NotifyAccess=main
ExecStart={exec_start} run
# SIGHUP reloads the configuration and the DAG files (RELOADING=1, then READY=1).
ExecReload=/bin/kill -HUP $MAINPID
Environment={config_env}
WorkingDirectory={workdir}

# A static "dagd" user rather than DynamicUser=: the DAGs folder people edit, the
# folders files are dropped into and the data folders tasks write to must be owned by
# (or shared with) the daemon's user before it starts, and the CLI reads the data
# directory as that user (sudo -u dagd dagd runs list); a uid picked anew at each start
# cannot be given any of that. Create it once:
#   useradd --system --home-dir /var/lib/dagd --shell /usr/sbin/nologin dagd
User=dagd
Group=dagd
# /var/lib/dagd, writable: with the default [core] paths and this WorkingDirectory the
# database and logs (.dagd/), the DAGs (dags/) and the plugins (plugins/) live in it.
StateDirectory=dagd
StateDirectoryMode=0700
# What dagd writes (the database, the logs, the users file) is readable by it alone.
UMask=0077

# The event loop sends WATCHDOG=1 every WatchdogSec/2: a loop blocked this long (an
# async task calling time.sleep, say) is killed with SIGABRT and restarted.
WatchdogSec=30
Restart=on-failure
RestartSec=2
# SIGTERM stops gracefully: triggers first, new webhooks get 503 + Retry-After, running
# attempts get [core] shutdown_grace_period (default 10 s), then are stopped and
# retried at the next start; dagd exits within the grace period + 2 s. 30 s leaves room
# for a grace period of up to 25 s: raise it with the grace period. KillMode=mixed:
# SIGTERM to dagd alone (it stops its workers itself), SIGKILL to all at the timeout.
KillMode=mixed
TimeoutStopSec=30
LimitNOFILE=65536
# Secrets: an environment file for the *_env settings (a connection's token_env, [smtp]
# password_env), root's, mode 0600: systemd reads it before dropping to User=.
EnvironmentFile=-/etc/dagd/dagd.env
# ...or credentials: the file is copied to $CREDENTIALS_DIRECTORY, readable by the
# service alone; a relative *_file setting names it (password_file = "smtp-password").
#LoadCredential=smtp-password:/etc/dagd/smtp-password

# Sizes to suit the host (the worker pool recycles a worker past [workers] max_memory,
# 512 MB by default; TasksMax counts every thread and process of the service).
#MemoryMax=4G
#TasksMax=4096

# Hardening. The file system is read-only but for the StateDirectory, PrivateTmp and
# these paths ("-": skipped when missing): add the data folders DAGs write into and the
# FileDrop folders (a drop's processed/failed folders are written to).
ProtectSystem=strict
{writable}
# /home, /root and /run/user are out of reach: keep DAG data under /srv or /var/lib.
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateIPC=yes
PrivateMounts=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictSUIDSGID=yes
RemoveIPC=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
LockPersonality=yes
RestrictRealtime=yes
RestrictNamespaces=yes
DevicePolicy=closed
KeyringMode=private
# TCP and UDP over IPv4/6 (the API, HTTP tasks, SMTP) and Unix sockets (asyncio, the
# notify socket); no netlink, packet or Bluetooth sockets.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
# What a service needs, which covers forking workers, running shell tasks, rlimits (a
# task's memory limit) and prctl (workers die with the daemon); EPERM for the rest.
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
# ...but chown(2) back: with no capabilities it only gives its own files one of its own
# groups, which cp -p, rsync -a and tar do.
SystemCallFilter=@chown
SystemCallErrorNumber=EPERM
SystemCallArchitectures=native
# Not MemoryDenyWriteExecute=yes: tasks run arbitrary Python in the workers, and JITs
# (numba, llvmlite) and ctypes/cffi callbacks need writable executable memory.
MemoryDenyWriteExecute=no
# Not ProcSubset=pid: it hides /proc/meminfo and /proc/cpuinfo, which libraries in
# tasks read (psutil, joblib, torch) and `free` needs.

[Install]
WantedBy=multi-user.target
"""

USER_UNIT = """\
# dagd as a user service (systemctl --user): Type=notify with a watchdog, SIGHUP
# reload, graceful stop. Written by `dagd service install --user`. No User= (it runs
# as you) and only the hardening a user manager applies without privileges: the
# namespace options of the system unit (ProtectSystem=, PrivateTmp=, ...) need
# unprivileged user namespaces there, which many hosts turn off.
[Unit]
Description=dagd workflow orchestrator

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start} run
ExecReload=/bin/kill -HUP $MAINPID
Environment={config_env}
WorkingDirectory={workdir}
UMask=0077
WatchdogSec=30
Restart=on-failure
RestartSec=2
# The grace period ([core] shutdown_grace_period, 10 s) + 2 s, with room to spare.
KillMode=mixed
TimeoutStopSec=30
EnvironmentFile=-%h/.config/dagd/dagd.env
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
SystemCallArchitectures=native

[Install]
WantedBy=default.target
"""


def system_unit(paths: UnitPaths) -> str:
    writable = [DATA_FOLDERS, *(p for p in paths.writable if p != DATA_FOLDERS)]
    return SYSTEM_UNIT.format(
        exec_start=_word(paths.exec_path, "ExecStart"),
        config_env=_env("DAGD_CONFIG", paths.config, "the config file"),
        workdir=_checked(paths.workdir, "WorkingDirectory"),
        writable="\n".join(f"ReadWritePaths={_list_word('-', p, 'ReadWritePaths')}"
                           for p in writable),
    )


def user_unit(paths: UnitPaths) -> str:
    return USER_UNIT.format(
        exec_start=_word(paths.exec_path, "ExecStart"),
        config_env=_env("DAGD_CONFIG", paths.config, "the config file"),
        workdir=_checked(paths.workdir, "WorkingDirectory"),
    )


def default_system_unit() -> str:
    """systemd/dagd.service: the system unit for the README's paths."""
    return system_unit(UnitPaths(DEFAULT_EXEC, DEFAULT_CONFIG, STATE_DIR))


def outside_reach(path: PurePosixPath) -> bool:
    """True for a path the system unit cannot reach (ProtectHome=yes)."""
    return any(path == home or home in path.parents for home in HOMES)


def needs_writable(path: PurePosixPath) -> bool:
    """True for a folder the system unit must name in ReadWritePaths= to write it."""
    return not any(path == base or base in path.parents for base in (STATE_DIR, DATA_FOLDERS))
