"""Database URLs: the shapes dagd accepts (`sqlite:///path` and `postgresql://...`).

Ground floor: the standard library only, so that the config file's `[connections.NAME]
url = ...` and `SqlTask(conn=...)` are checked by the same rule without the settings
importing a task kind.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")


def check_url(url: str) -> SplitResult:
    """Refuse an unknown scheme, a malformed SQLite URL, or a password in the URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ValueError(f"a SQLite URL is sqlite:///relative/path.db or "
                             f"sqlite:////absolute/path.db, got {url!r}")
    elif parts.scheme in POSTGRES_SCHEMES:
        if parts.password is not None:
            raise ValueError("the URL holds a password: put the URL in a named connection "
                             "([connections.NAME] url=..., password_env=VAR) and the password "
                             "in that environment variable")
    else:
        raise ValueError(f"unsupported database URL scheme {parts.scheme!r}: use sqlite:/// "
                         "or postgresql://")
    return parts
