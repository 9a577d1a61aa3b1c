"""The environment a task's process starts with: clean by default.

A task (a worker process for a sync Python task, a shell command) does not inherit the
daemon's environment, which holds its secrets (the SMTP password, connection passwords,
webhook secrets). It gets the names of `ALLOWED` (and any starting with one of
`ALLOWED_PREFIXES`) from the daemon's environment, the names the task asks for
(`allow`), what the task itself declares (`extra`), and dagd's own variables (`DAGD_*`
run facts, set by the caller). `inherit_env=True` on a task passes the whole
environment, for the author who means it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

# What programs need to run as the daemon's user would expect, and no secret.
ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
    "TMPDIR", "TMP", "TEMP", "PWD",
    # Python: where dagd and the DAGs' packages are
    "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED", "PYTHONIOENCODING", "PYTHONHASHSEED",
    # TLS trust stores, and the proxies a machine behind one needs to reach anything
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    # where the plugins are (the worker imports them)
    "DAGD_PLUGINS_FOLDER",
    # set by `dagd test` and `dagd tasks test` only (Airflow's test_mode)
    "DAGD_TEST_MODE",
})
ALLOWED_PREFIXES = ("LC_",)


def task_environment(
    environ: Mapping[str, str] | None = None,
    *,
    inherit: bool = False,
    allow: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for one task's process (before the caller adds DAGD_* facts)."""
    source = os.environ if environ is None else environ
    if inherit:
        env = dict(source)
    else:
        wanted = ALLOWED | set(allow)
        env = {name: value for name, value in source.items()
               if name in wanted or name.startswith(ALLOWED_PREFIXES)}
    if extra:
        env.update(extra)
    return env
