"""`dagd doctor`'s checks of the machine: the config file, the data directory (writable,
free space, a local file system), the database, the port, the service unit, the Python
and SQLite versions, the inotify limit. (The DAGs, watched folders and SMTP are in
doctor_dags.py; cli_doctor.py runs them all and prints.)

Each check is a small function returning a `Result` (ok, warn or FAIL, what it found,
and what to do about it); what it reads from the system (mount table, disk usage,
systemctl's answers) can be handed in, so each verdict is tested on its own. A check
never raises for what it finds: a broken thing is a FAIL result.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import re
import socket
import sqlite3
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dagd.config import Settings, find_config, load_settings
from dagd.errors import ConfigError
from dagd.lock import Holder

OK, WARN, FAIL = "ok", "warn", "FAIL"

MB = 1000**2
GIB = 1024**3
SPACE_FAIL = 100 * MB  # below: the next big log or migration may not fit
SPACE_WARN = GIB
SPACE_WARN_SHARE = 0.05
WAL_WARN = 256 * MB
MIN_PYTHON = (3, 11)
# SQLite features by the release that brought them, found in the store's SQL (its
# queries and migrations) to tell the oldest SQLite this dagd can use; json_each (JSON1,
# a compile-time option before 3.38) is probed instead.
SQLITE_FEATURES = (
    ((3, 24, 0), r"ON\s+CONFLICT\b[^;]*\bDO\s+UPDATE", "upsert"),
    ((3, 25, 0), r"\bOVER\s*\(", "window functions"),
    ((3, 25, 0), r"\bRENAME\s+COLUMN\b", "RENAME COLUMN"),
    ((3, 30, 0), r"\bFILTER\s*\(\s*WHERE\b", "aggregate FILTER"),
    ((3, 31, 0), r"\bGENERATED\s+ALWAYS\b", "generated columns"),
    ((3, 35, 0), r"\bRETURNING\b", "RETURNING"),
    ((3, 35, 0), r"\bDROP\s+COLUMN\b", "DROP COLUMN"),
    ((3, 37, 0), r"\)\s*STRICT\b", "STRICT tables"),
    ((3, 38, 0), r"->>|\bunixepoch\s*\(", "->> and unixepoch()"),
)
# File systems where SQLite's locking (fcntl locks, the -shm shared memory of WAL)
# cannot be trusted: several machines, or a user-space daemon, stand between.
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "afs", "9p",
    "davfs", "ncpfs", "gpfs", "beegfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse",
    "fuse.rclone", "fuse.glusterfs", "fuse.cephfs", "fuse.juicefs", "fuse.goofys",
})


@dataclass(frozen=True)
class Result:
    check: str
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""


def user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def existing_ancestor(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (something always does: /)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# -- the config ----------------------------------------------------------------------
def _salvage(path: Path | None, base: Settings) -> Settings:
    """From a file load_settings refused, the paths and the address that can still be
    read, so the other checks look where the daemon would."""
    if path is None:
        return base
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):  # TOMLDecodeError, 5000 digits
        return base
    found: dict[str, Any] = {}
    for section, key, kind in (("core", "data_dir", Path), ("core", "dags_folder", Path),
                               ("core", "plugins_folder", Path), ("server", "host", str),
                               ("server", "port", int)):
        value = raw.get(section, {}).get(key) if isinstance(raw.get(section), dict) else None
        if isinstance(value, str) and value and kind is Path:
            found[key] = _expanded(value)
        elif isinstance(value, kind) and not isinstance(value, bool) and kind is not Path:
            found[key] = value
    return replace(base, **found)


_PATHS = ("dags_folder", "data_dir", "plugins_folder")


def _expanded(value: str | Path) -> Path:
    """`value` with ~ made the home folder; as written when that user is unknown (the
    config check has said so)."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        return Path(value)


def check_config(
    config: str | Path | None, overrides: Mapping[str, Any], *,
    environ: Mapping[str, str] | None = None,
) -> tuple[Result, Settings]:
    """The settings load_settings builds, or, when it refuses them, a FAIL naming the
    file and key, and the settings the other checks can still use."""
    try:
        settings = load_settings(config, overrides=dict(overrides), environ=environ)
    except ConfigError as exc:
        env = os.environ if environ is None else environ
        found: dict[str, Any] = {}
        for key, var in (("dags_folder", "DAGD_DAGS_FOLDER"), ("data_dir", "DAGD_DATA_DIR")):
            if env.get(var):
                found[key] = _expanded(env[var])
        for key, value in overrides.items():  # the command line's win, as they would
            if value is not None:
                found[key] = _expanded(value) if key in _PATHS else value
        settings = replace(_salvage(find_config(config, env), Settings()), **found)
        return Result("config", FAIL, str(exc), "correct it (config/dagd.toml lists every "
                      "key with its type); the checks below use the defaults for the "
                      "rest"), settings
    if settings.config_file is None:
        return Result("config", OK, "no config file found: the defaults (and DAGD_* "
                      "variables) apply"), settings
    return Result("config", OK, f"{settings.config_file} parsed"), settings


# -- the data directory --------------------------------------------------------------
def check_data_dir(path: Path) -> Result:
    """Exists (or can be made) and this user can write in it: a file is really made."""
    path = path.absolute()
    if path.exists() and not path.is_dir():
        return Result("data dir", FAIL, f"{path} is not a folder",
                      "set [core] data_dir to a folder")
    if not path.exists():
        base = existing_ancestor(path)
        if not base.is_dir():
            return Result("data dir", FAIL, f"{path} cannot be created: {base} is a file",
                          "set [core] data_dir to a path under a folder")
        if not os.access(base, os.W_OK | os.X_OK):
            return Result("data dir", FAIL, f"{path} cannot be created: {base} is not "
                          f"writable by {user()}",
                          f"mkdir -p {path} && chown {user()} {path}")
        return Result("data dir", OK, f"{path} does not exist yet: `dagd run` creates it")
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".doctor-")
    except OSError as exc:
        return Result("data dir", FAIL, f"{path} is not writable by {user()}: "
                      f"{exc.strerror or exc}", f"chown -R {user()} {path}")
    os.close(fd)
    os.unlink(probe)
    return Result("data dir", OK, f"{path}, writable by {user()}")


def space_status(free: int, total: int) -> str:
    if free < SPACE_FAIL:
        return FAIL
    if free < SPACE_WARN or (total > 0 and free < total * SPACE_WARN_SHARE):
        return WARN
    return OK


def check_space(path: Path, usage: Callable[[Path], Any] | None = None) -> Result:
    import shutil

    where = existing_ancestor(path)
    try:
        du = (usage or shutil.disk_usage)(where)
    except OSError as exc:
        return Result("free space", WARN, f"cannot read the free space of {where}: {exc}")
    share = du.free / du.total if du.total else 0.0
    status = space_status(du.free, du.total)
    detail = f"{du.free / GIB:,.1f} GiB free of {du.total / GIB:,.1f} GiB ({share:.0%}) on {where}"
    fix = "" if status == OK else ("free some space, or prune old runs ([retention]); "
                                   "SQLite refuses writes, and the daemon answers 503, "
                                   "once it is full")
    return Result("free space", status, detail, fix)


def _unescape(field: str) -> str:
    """The kernel writes a space in a mount point as \\040 (tab \\011, newline \\012)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mounts(text: str) -> list[tuple[str, str, str]]:
    """(mount point, fs type, source) of each line of /proc/self/mountinfo (or of
    /proc/mounts), in their order: a later mount over the same point hides an earlier."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if " - " in line:  # mountinfo: ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS] - TYPE SRC
            left, _, right = line.partition(" - ")
            point, tail = left.split()[4], right.split()
            if len(tail) >= 2:
                mounts.append((_unescape(point), tail[0], _unescape(tail[1])))
        elif len(fields) >= 3:  # /proc/mounts: SRC POINT TYPE OPTS 0 0
            mounts.append((_unescape(fields[1]), fields[2], _unescape(fields[0])))
    return mounts


def mount_of(path: Path, mounts: Sequence[tuple[str, str, str]]) -> tuple[str, str, str] | None:
    """The mount holding `path` (an absolute, resolved path): the longest mount point
    above it, the last one mounted there."""
    best: tuple[str, str, str] | None = None
    for mount in mounts:
        point = mount[0]
        if path == Path(point) or Path(point) in path.parents:
            if best is None or len(point) >= len(best[0]):
                best = mount
    return best


def check_filesystem(path: Path, mounts_text: str | None = None) -> Result:
    """SQLite's locking holds on a local file system, not on NFS, SMB or a network FUSE."""
    where = existing_ancestor(path).resolve()
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/self/mountinfo").read_text()
        except OSError:
            try:
                mounts_text = Path("/proc/mounts").read_text()
            except OSError:
                return Result("file system", WARN, "no /proc/self/mountinfo: cannot tell "
                              "which file system holds the data directory")
    return judge_mount(where, parse_mounts(mounts_text))


def judge_mount(where: Path, mounts: Sequence[tuple[str, str, str]]) -> Result:
    """The verdict on the file system holding `where` (absolute, resolved)."""
    mount = mount_of(where, mounts)
    if mount is None:
        return Result("file system", WARN, f"no mount found for {where}")
    point, kind, source = mount
    detail = f"{kind} ({source}) mounted at {point}"
    if kind in NETWORK_FS:
        return Result("file system", FAIL, f"{detail}: a network file system, where "
                      "SQLite's locks are unsafe (two writers can corrupt the database)",
                      "put [core] data_dir on a local disk")
    if kind.startswith("fuse"):
        return Result("file system", WARN, f"{detail}: a FUSE file system; SQLite's "
                      "locks hold only if it is local", "prefer a local disk for "
                      "[core] data_dir")
    return Result("file system", OK, detail)


# -- the database --------------------------------------------------------------------
def check_database(db: Path, *, expected: int, wal_warn: int = WAL_WARN) -> list[Result]:
    """Opens, passes integrity_check, has this dagd's schema version; its -wal's size."""
    from dagd.dbtools import connect_ro, integrity

    if not db.exists():
        return [Result("database", OK, f"{db} does not exist yet: `dagd run` creates it")]
    restore = "restore a backup: `dagd db restore FILE` (daemon stopped)"
    try:
        with connect_ro(db) as conn:
            problems = integrity(conn)
            version = None if problems else conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        return [Result("database", FAIL, f"{db} cannot be opened: {exc}", restore)]
    if problems:
        return [Result("database", FAIL, f"{db} fails integrity_check: "
                       f"{'; '.join(problems[:3])}", restore)]
    results = [Result("database", OK, f"{db}: integrity_check ok")]
    if version == expected:
        results.append(Result("schema", OK, f"version {version}, this dagd's"))
    elif version == 0:
        results.append(Result("schema", FAIL, f"{db} has no schema version: not a dagd "
                              "database", "point [core] data_dir at dagd's data directory"))
    elif version is not None and version < expected:
        results.append(Result("schema", WARN, f"version {version}; this dagd's is "
                              f"{expected}: `dagd run` migrates it at start",
                              "back it up first: `dagd db backup FILE`"))
    else:
        results.append(Result("schema", FAIL, f"version {version} is newer than this "
                              f"dagd's ({expected})", "upgrade dagd"))
    wal = db.with_name(db.name + "-wal")
    size = wal.stat().st_size if wal.exists() else 0
    if size > wal_warn:
        results.append(Result("wal", WARN, f"{wal} is {size / MB:,.0f} MB: a long read "
                              "(an open sqlite3 shell, a stuck backup) held checkpoints "
                              "back, or a burst wrote it", "end the long reader; a restart "
                              "of the daemon checkpoints and removes it"))
    else:
        results.append(Result("wal", OK, f"{size / MB:,.1f} MB"))
    return results


# -- the port ------------------------------------------------------------------------
def port_problem(host: str, port: int) -> str | None:
    """Why the daemon could not listen on host:port now; None when it could. Bound as
    aiohttp binds (SO_REUSEADDR), then closed."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"{host} does not resolve: {exc.strerror}"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return "held by another program"
                if exc.errno == errno.EACCES:
                    return "a port below 1024 needs CAP_NET_BIND_SERVICE"
                return f"cannot listen there: {exc.strerror}"
    return None


def check_port(host: str, port: int, holder: Holder | None) -> Result:
    if holder is not None and (holder.port == port or port == 0):
        return Result("port", OK, f"{host}:{holder.port} held by this data directory's "
                      f"daemon (pid {holder.pid})")
    if port == 0:
        return Result("port", OK, "0: the daemon takes any free port")
    problem = port_problem(host, port)
    ran = (f"; the daemon (pid {holder.pid}) serves on {holder.port}, so it will not "
           "start there again" if holder is not None else "")
    if problem is None:
        note = (f"; the running daemon (pid {holder.pid}) serves on {holder.port}"
                if holder is not None else "")
        return Result("port", OK, f"{host}:{port} free{note}")
    fix = (f"stop what holds it (`ss -ltnp 'sport = :{port}'` names it) or set "
           "[server] port" if "held" in problem else "set [server] host or port")
    return Result("port", FAIL, f"{host}:{port}: {problem}{ran}", fix)


# -- the service unit ----------------------------------------------------------------
Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def _enabled(answer: subprocess.CompletedProcess[str]) -> str | None:
    """systemctl is-enabled's word, or None when the unit is not installed there."""
    word = answer.stdout.strip().splitlines()[0] if answer.stdout.strip() else ""
    return None if word in ("", "not-found") else word


def check_service(run: Runner = _run, *, which: Callable[[str], str | None] | None = None,
                  unit: str = "dagd.service") -> Result:
    """Installed and enabled, system-wide or for this user. No systemctl, or no running
    manager (a container): a warning, since dagd runs fine under another supervisor."""
    import shutil

    if (which or shutil.which)("systemctl") is None:
        return Result("service", WARN, "no systemctl: not a systemd system",
                      "run `dagd run` under your own supervisor")
    manager = run(["systemctl", "is-system-running"]).stdout.strip()
    offline = manager in ("offline", "")
    note = "; no systemd manager runs here (a container?)" if offline else ""
    for scope, argv in (("system", ["systemctl", "is-enabled", unit]),
                        ("user", ["systemctl", "--user", "is-enabled", unit])):
        word = _enabled(run(argv))
        if word is None:
            continue
        flag = " --user" if scope == "user" else ""
        if word in ("enabled", "enabled-runtime", "static", "indirect", "alias", "linked",
                    "generated"):
            return Result("service", WARN if offline else OK,
                          f"{unit} ({scope}) installed, {word}{note}")
        if word == "masked":
            return Result("service", WARN, f"{unit} ({scope}) is masked{note}",
                          f"systemctl{flag} unmask {unit}")
        return Result("service", WARN, f"{unit} ({scope}) installed, {word}{note}",
                      f"systemctl{flag} enable --now {unit}")
    return Result("service", WARN, f"no {unit} installed{note}",
                  "`dagd service install` (or `--user`) writes one for this installation")


# -- versions and limits -------------------------------------------------------------
def check_python(version: tuple[int, ...]) -> Result:
    shown = ".".join(map(str, version[:3]))
    if tuple(version[:2]) < MIN_PYTHON:
        return Result("python", FAIL, f"{shown}: dagd needs {'.'.join(map(str, MIN_PYTHON))} "
                      "or newer", "install a newer Python and reinstall dagd in its venv")
    return Result("python", OK, shown)


def sqlite_floor(sql: str) -> tuple[tuple[int, int, int], str]:
    """The oldest SQLite that runs `sql`, and the feature that decides it."""
    found = [(version, name) for version, pattern, name in SQLITE_FEATURES
             if re.search(pattern, sql, re.IGNORECASE)]
    return max(found, default=((3, 8, 3), "WAL and partial indexes"))


def store_sql() -> str:
    """The text of the store's queries and migrations."""
    from importlib import resources

    folder = resources.files("dagd.store")
    parts = [folder.joinpath("queries.sql").read_text("utf-8")]
    parts += [m.read_text("utf-8") for m in folder.joinpath("migrations").iterdir()
              if m.name.endswith(".sql")]
    return "\n".join(parts)


def check_sqlite(version: tuple[int, ...], *, sql: str | None = None,
                 probe: Callable[[], str | None] | None = None) -> Result:
    shown = ".".join(map(str, version))
    floor, feature = sqlite_floor(store_sql() if sql is None else sql)
    need = ".".join(map(str, floor))
    if tuple(version) < floor:
        return Result("sqlite", FAIL, f"{shown}: dagd needs {need} or newer ({feature})",
                      "a Python built with a newer SQLite (python.org or your distribution's "
                      "python3 of a newer release)")
    missing = (probe or sqlite_missing)()
    if missing:
        return Result("sqlite", FAIL, f"{shown}: {missing}", "a Python whose SQLite has "
                      "JSON1 (every SQLite from 3.38 does)")
    return Result("sqlite", OK, f"{shown} (dagd needs {need}, for {feature}; JSON1 present)")


def sqlite_missing() -> str | None:
    """What this SQLite lacks of what the store uses, tried on a memory database."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE TABLE t (a PRIMARY KEY, b)")
        db.execute("INSERT INTO t VALUES (1, 1) ON CONFLICT (a) DO UPDATE SET b = 2")
    except sqlite3.Error as exc:
        return f"no upsert (INSERT ... ON CONFLICT DO UPDATE): {exc}"
    try:
        db.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.Error as exc:
        return f"no JSON1 (json_each): {exc}"
    finally:
        db.close()
    return None


def inotify_status(needed: int, limit: int) -> str:
    if needed > limit:
        return FAIL
    return WARN if needed > limit // 2 else OK


def count_dirs(folder: Path, cap: int = 1_000_000) -> int:
    """Folders under `folder`, itself included: one inotify watch each."""
    if not folder.is_dir():
        return 0
    n = 1
    for _root, dirs, _files in os.walk(folder):
        n += len(dirs)
        if n >= cap:
            break
    return n


def check_inotify(folders: Sequence[Path], limit_text: str | None = None) -> Result:
    """Watches the daemon needs (a folder each, recursively: the DAGs folder and every
    watched folder) against fs.inotify.max_user_watches, which this user's other
    programs share."""
    needed = sum(count_dirs(f) for f in {f.resolve() for f in folders})
    if limit_text is None:
        with contextlib.suppress(OSError):
            limit_text = Path("/proc/sys/fs/inotify/max_user_watches").read_text()
    try:
        limit = int((limit_text or "").strip())
    except ValueError:
        return Result("inotify", WARN, f"{needed} watches needed; the limit is unknown "
                      "(no /proc/sys/fs/inotify/max_user_watches)")
    status = inotify_status(needed, limit)
    fix = "" if status == OK else ("echo fs.inotify.max_user_watches=524288 | sudo tee "
                                   "/etc/sysctl.d/90-dagd.conf && sudo sysctl --system")
    return Result("inotify", status, f"{needed:,} watches needed of max_user_watches "
                  f"{limit:,} (shared with this user's other programs)", fix)


def failed(results: Sequence[Result]) -> bool:
    return any(r.status == FAIL for r in results)
