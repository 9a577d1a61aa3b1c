"""What the auth middleware decides with: identities, browser sessions, one-time login
links, the throttle on wrong passwords, and where a login may send the browser next.

A session cookie is `<id>.<expiry>.<HMAC-SHA256 of both>` under the data directory's
secret; the session itself (its user, CSRF token and expiry) lives in the daemon's
memory, so a forged or tampered cookie fails the MAC, an expired one the clock, and one
replayed after logout (or after a restart) finds no session. A user's role is read from
the users file at each request, and a session holds a digest of the password hash its
user had at login: a removed user's sessions end at once, and stay ended when a user of
that name is added again (a new hash, with its own salt).
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256
from urllib.parse import unquote

import anyio

from dagd.accounts import (
    AccountsFile,
    is_name,
    load_secret,
    token_digest,
    verify_password,
    write_cli_token,
)
from dagd.config import Settings

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
LINK_SECONDS = 15 * 60  # a link from `dagd login-url`; the start's link lasts a day
START_LINK_SECONDS = 24 * 3600
# A user's own sessions past MAX_PER_USER end, their oldest first; past MAX_SESSIONS in
# all, the oldest of whoever holds the most: one user's logins never end another's.
MAX_SESSIONS, MAX_PER_USER = 10_000, 20
# Passwords waiting for a hash check, from one address and in all: past these a login
# is refused at once (429, 503), so a flood of them cannot leave real logins waiting long.
MAX_CHECKS_PER_CLIENT, MAX_CHECKS = 4, 32
# Wrong passwords: past FREE_TRIES for one (name, address), a wait doubling from 1 s.
# Tracked under a digest of the name, so MAX_TRACKED entries take a few MiB at most.
FREE_TRIES, MAX_WAIT, MAX_TRACKED = 5, 60.0, 10_000
_LOCAL = re.compile(r"^/(?![/\\])[^\x00-\x1f\x7f\\]*$")


def local_next(target: str) -> str:
    """`target` if it is a path on this site ("/dags/x?y=1"), else "/": never "//evil",
    "/\\evil", a scheme, control characters, or any of these percent-encoded."""
    decoded = target
    for _ in range(4):  # "%252F%252F" is "//" decoded twice: each form must be a path
        if not _LOCAL.fullmatch(decoded):
            return "/"
        decoded = unquote(decoded)
    return target


@dataclass(frozen=True)
class Identity:
    name: str
    role: str  # "viewer" or "operator"


@dataclass
class Session:
    id: str
    user: Identity
    kind: str  # "user": its role from the users file at each request; "link": fixed
    csrf: str
    expires: float
    stamp: str = ""  # "user": the digest of the user's password hash at login

    def csrf_matches(self, sent: str) -> bool:
        return bool(sent) and hmac.compare_digest(sent.encode(), self.csrf.encode())


def _stamp(password_hash: str) -> str:
    return sha256(password_hash.encode()).hexdigest()


def _key(name: str, client: str) -> tuple[bytes, str]:
    return sha256(name.encode("utf-8", "surrogateescape")).digest(), client[:64]


@dataclass
class _Tries:
    count: int = 0
    until: float = 0.0


@dataclass
class AuthState:
    """The daemon's sessions and links, and the files it checks them against."""

    accounts: AccountsFile
    secret: bytes
    cli_digest: str
    session_seconds: float
    link_seconds: float = LINK_SECONDS
    now: Callable[[], float] = time.time  # tests move the clock
    sessions: dict[str, Session] = field(default_factory=dict)
    links: dict[str, tuple[Identity, float]] = field(default_factory=dict)
    tries: dict[tuple[bytes, str], _Tries] = field(default_factory=dict)
    checking: dict[str, int] = field(default_factory=dict)  # address -> checks under way
    _hashing: anyio.CapacityLimiter | None = None  # made in the event loop, at first use

    @classmethod
    def create(cls, settings: Settings) -> AuthState:
        """Load (or make) the signing secret; write a fresh CLI token file."""
        data_dir = settings.data_dir
        secret = load_secret(data_dir)
        cli = write_cli_token(data_dir)
        return cls(AccountsFile(data_dir), secret, token_digest(cli),
                   session_seconds=settings.auth_session_hours * 3600)

    # -- bearer tokens -----------------------------------------------------------------
    def by_token(self, token: str) -> Identity | None:
        digest = token_digest(token)
        if hmac.compare_digest(digest, self.cli_digest):
            return Identity("cli", "operator")
        found = self.accounts.current().token_by_digest(digest)
        return Identity(found.name, found.role) if found is not None else None

    # -- passwords ---------------------------------------------------------------------
    def busy(self, client: str) -> int:
        """0 if a password from `client` may be checked now, else the status to refuse
        it with: 429 (this address has enough under way), 503 (everyone has)."""
        if self.checking.get(client[:64], 0) >= MAX_CHECKS_PER_CLIENT:
            return 429
        return 503 if sum(self.checking.values()) >= MAX_CHECKS else 0

    async def check_password(self, name: str, password: str, *, client: str = "?"
                             ) -> tuple[Identity, str] | None:
        """The user, if `name` is one and `password` theirs; a name that cannot be one
        takes the same hash's time, so the answer does not tell which."""
        user = self.accounts.current().users.get(name) if is_name(name) else None
        stored = user.password if user is not None else None
        # scrypt takes tens of milliseconds and 16 MiB: not on the event loop, and two
        # at a time, however many logins arrive at once.
        if self._hashing is None:
            self._hashing = anyio.CapacityLimiter(2)
        client = client[:64]
        self.checking[client] = self.checking.get(client, 0) + 1
        try:
            ok = await anyio.to_thread.run_sync(verify_password, password, stored,
                                                limiter=self._hashing)
        finally:
            self.checking[client] -= 1
            if not self.checking[client]:
                del self.checking[client]
        if not ok or user is None:
            return None
        return Identity(user.name, user.role), _stamp(user.password)

    def attempt(self, name: str, client: str) -> float:
        """Seconds to wait before this (name, address) may try again, or 0: it may now,
        and the try counts as a wrong one until `succeeded` says otherwise. Counted before
        the hash is checked, so tries sent side by side count as they arrive."""
        if not is_name(name):  # no such user can exist: nothing to keep for it
            return 0.0
        now = self.now()
        key = _key(name, client)
        tries = self.tries.get(key)
        if tries is not None and tries.until > now:
            return tries.until - now
        if tries is None:
            if len(self.tries) >= MAX_TRACKED:
                self.tries.pop(next(iter(self.tries)))
            tries = self.tries[key] = _Tries()
        tries.count += 1
        if tries.count >= FREE_TRIES:
            tries.until = now + min(MAX_WAIT, 2.0 ** (tries.count - FREE_TRIES))
        return 0.0

    def succeeded(self, name: str, client: str) -> None:
        self.tries.pop(_key(name, client), None)

    # -- sessions ----------------------------------------------------------------------
    def _mac(self, payload: str) -> str:
        digest = hmac.new(self.secret, payload.encode(), sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def new_session(self, user: Identity, *, kind: str,
                    stamp: str = "") -> tuple[str, Session]:
        """A new session and its cookie's value."""
        now = self.now()
        for sid in [s.id for s in self.sessions.values() if s.expires <= now]:
            del self.sessions[sid]
        held: dict[str, list[str]] = {}  # each user's sessions, the oldest first
        for s in self.sessions.values():
            held.setdefault(s.user.name, []).append(s.id)
        mine = held.get(user.name, [])
        if len(mine) >= MAX_PER_USER:
            del self.sessions[mine.pop(0)]
        if len(self.sessions) >= MAX_SESSIONS:
            most = max(held.values(), key=len)
            del self.sessions[most.pop(0)]
        session = Session(secrets.token_urlsafe(24), user, kind, secrets.token_urlsafe(24),
                          now + self.session_seconds, stamp)
        self.sessions[session.id] = session
        payload = f"{session.id}.{int(session.expires)}"
        return f"{payload}.{self._mac(payload)}", session

    def by_cookie(self, cookie: str) -> tuple[Identity, Session] | None:
        sid, _, rest = cookie.partition(".")
        expires, _, mac = rest.partition(".")
        if not hmac.compare_digest(self._mac(f"{sid}.{expires}").encode(),
                                   mac.encode("utf-8", "surrogateescape")):
            return None
        session = self.sessions.get(sid)
        now = self.now()
        if session is None or not expires.isdigit() or int(expires) != int(session.expires):
            return None
        if session.expires <= now:
            del self.sessions[sid]
            return None
        if session.kind == "link":
            return session.user, session
        user = self.accounts.current().users.get(session.user.name)
        if user is None or not hmac.compare_digest(_stamp(user.password), session.stamp):
            del self.sessions[sid]  # removed (and maybe added again): logged out now
            return None
        return Identity(user.name, user.role), session

    def revoke(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    # -- one-time links ------------------------------------------------------------------
    def mint_link(self, *, role: str = "operator",
                  seconds: float = START_LINK_SECONDS) -> str:
        token = secrets.token_urlsafe(32)
        now = self.now()
        for digest in [d for d, (_, until) in self.links.items() if until <= now]:
            del self.links[digest]
        self.links[token_digest(token)] = (Identity(f"login link ({role})", role),
                                           now + seconds)
        return token

    def use_link(self, token: str) -> Identity | None:
        """The link's identity, once: the link is gone after."""
        found = self.links.pop(token_digest(token), None)
        if found is None or found[1] <= self.now():
            return None
        return found[0]
