"""Who may use the web UI and the API: the users file and the secrets in the data directory.

`users.json` (mode 0600, written whole and renamed into place) holds the users (name,
role, scrypt hash of the password with its own salt) and the API tokens (name, role,
SHA-256 of the token, when it was made): never a password or a token itself. `dagd users`
and `dagd tokens` edit it; the daemon reads it again whenever it changes, so a removed
user, a revoked token or a changed role counts from the next request on.

Beside it: `auth-secret` (the key that signs session cookies, made on the first start)
and `cli-token` (a fresh operator token at each start of the daemon, which `dagd`
commands on the same machine send, so that they never ask for a password). Both 0600.

Nothing here is async and nothing imports the web side: the CLI uses it too.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from dagd.errors import ConfigError, InvalidInput, NotFound

ROLES = ("viewer", "operator")
USERS_FILE = "users.json"
CLI_TOKEN_FILE = "cli-token"
SECRET_FILE = "auth-secret"
TOKEN_PREFIX = "dagd_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# scrypt: 16 MiB and about 50 ms per hash; kept in each hash, so they may rise later.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
_MAX_N = 2**20


def is_name(name: str) -> bool:
    """Whether `name` could be a user's or a token's name (what `check_name` lets in)."""
    return len(name) <= 64 and _NAME.fullmatch(name) is not None


def check_name(name: str, what: str = "name") -> str:
    if not is_name(name):
        raise InvalidInput(
            f"{what} {name[:80]!r} is not allowed: 1 to 64 letters, digits, '.', '_', '-' "
            "or '@', starting with a letter or digit", field=what)
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role[:40]!r}: use {' or '.join(ROLES)}",
                           field="role")
    return role


# -- passwords and tokens ------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """"scrypt$N$r$p$salt$hash", the salt random for each password."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=SCRYPT_LEN)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


@functools.cache
def _dummy() -> str:
    return hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches the stored hash; with no hash (an unknown user) a hash
    is computed all the same, so the answer takes as long either way."""
    try:
        kind, n, r, p, salt, digest = (stored or _dummy()).split("$")
        cost = (int(n), int(r), int(p))
        if kind != "scrypt" or not 1 < cost[0] <= _MAX_N or cost[1] * cost[2] > 64:
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=cost[0], r=cost[1],
                             p=cost[2], dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected) and stored is not None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


# -- private files -------------------------------------------------------------------------
def write_private(path: Path, data: bytes) -> None:
    """`path` replaced whole by `data`, mode 0600 from its first byte (a reader sees the
    old file or the new one, never a part)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_secret(data_dir: Path) -> bytes:
    """The key that signs session cookies: made on the first start, kept after."""
    path = data_dir / SECRET_FILE
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        secret = b""
    if len(secret) < 32:
        secret = secrets.token_bytes(32)
        write_private(path, secret)
    return secret


def write_cli_token(data_dir: Path) -> str:
    """A fresh token for `dagd` commands on this machine; the old one stops working."""
    token = new_token()
    write_private(data_dir / CLI_TOKEN_FILE, token.encode() + b"\n")
    return token


def read_cli_token(data_dir: Path) -> str | None:
    try:
        return (data_dir / CLI_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


# -- the users file ------------------------------------------------------------------------
@dataclass(frozen=True)
class User:
    name: str
    role: str
    password: str  # the scrypt hash


@dataclass(frozen=True)
class ApiToken:
    name: str
    role: str
    sha256: str
    created: str


@dataclass
class Accounts:
    """The users file's content."""

    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, ApiToken] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes, where: str) -> Accounts:
        try:
            data = orjson.loads(raw) if raw.strip() else {}
            users = {u["name"]: User(str(u["name"]), check_role(u["role"]), str(u["password"]))
                     for u in data.get("users", [])}
            tokens = {t["name"]: ApiToken(str(t["name"]), check_role(t["role"]),
                                          str(t["sha256"]), str(t.get("created", "")))
                      for t in data.get("tokens", [])}
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError,
                InvalidInput) as exc:
            raise ConfigError(f"the users file is damaged ({exc}); fix or remove it",
                              file=where) from None
        return cls(users, tokens)

    def dump(self) -> bytes:
        return orjson.dumps({
            "users": [vars(u) for u in sorted(self.users.values(), key=lambda u: u.name)],
            "tokens": [vars(t) for t in sorted(self.tokens.values(), key=lambda t: t.name)],
        }, option=orjson.OPT_INDENT_2) + b"\n"

    def token_by_digest(self, digest: str) -> ApiToken | None:
        found = None
        for token in self.tokens.values():  # every one compared: no early exit to time
            if hmac.compare_digest(token.sha256, digest):
                found = token
        return found


class AccountsFile:
    """The users file, read again when it changes (its inode, size and mtime)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / USERS_FILE
        self._seen: tuple[int, int, int] | None = None
        self._accounts = Accounts()

    def current(self) -> Accounts:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._accounts = None, Accounts()
            return self._accounts
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen != self._seen:
            self._accounts = Accounts.parse(self.path.read_bytes(), str(self.path))
            self._seen = seen
        return self._accounts

    @contextlib.contextmanager
    def editing(self) -> Iterator[Accounts]:
        """The file's content to change, written back at the end; one editor at a time."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(USERS_FILE + ".lock"), "a+b") as lock:
            os.fchmod(lock.fileno(), 0o600)
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                raw = b""
            accounts = Accounts.parse(raw, str(self.path))
            yield accounts
            write_private(self.path, accounts.dump())

    # -- the verbs of `dagd users` and `dagd tokens` ---------------------------------------
    def add_user(self, name: str, password: str, *, role: str = "viewer") -> User:
        check_name(name, "NAME")
        check_role(role)
        if not password:
            raise InvalidInput("the password is empty", field="password")
        with self.editing() as accounts:
            if name in accounts.users:
                raise InvalidInput(f"a user named {name!r} already exists; remove it first "
                                   "(`dagd users remove`) to change it", field="NAME")
            user = accounts.users[name] = User(name, role, hash_password(password))
        return user

    def remove_user(self, name: str) -> None:
        with self.editing() as accounts:
            if accounts.users.pop(name, None) is None:
                raise NotFound(f"no user named {name[:80]!r}")

    def create_token(self, name: str, *, role: str = "operator") -> str:
        check_name(name, "NAME")
        check_role(role)
        token = new_token()
        with self.editing() as accounts:
            if name in accounts.tokens:
                raise InvalidInput(f"a token named {name!r} already exists; revoke it first "
                                   "(`dagd tokens revoke`)", field="NAME")
            accounts.tokens[name] = ApiToken(name, role, token_digest(token),
                                             datetime.now(UTC).isoformat(timespec="seconds"))
        return token

    def revoke_token(self, name: str) -> None:
        with self.editing() as accounts:
            if accounts.tokens.pop(name, None) is None:
                raise NotFound(f"no token named {name[:80]!r}")


def describe(accounts: Accounts) -> dict[str, Any]:
    """What `list` shows: names, roles, dates; never a hash."""
    return {
        "users": [{"name": u.name, "role": u.role} for u in accounts.users.values()],
        "tokens": [{"name": t.name, "role": t.role, "created": t.created}
                   for t in accounts.tokens.values()],
    }
