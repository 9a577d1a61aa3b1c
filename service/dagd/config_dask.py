"""The `[executors.dask]` settings, checked: where the Dask cluster is and how to reach it.

Pure; `dagd.config` adds these checks to its own. Nothing here imports `distributed`:
the daemon asks for it only when a cluster is configured (see `dagd.executors.dask`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagd.config import Settings

# What `distributed` connects to: tcp:// (the default), tls:// (with certificates), and
# the other transports it ships.
ADDRESS = re.compile(r"^(tcp|tls|ws|wss|ucx)://[^\s/]+$")
LOCAL = "local"


def dask_checks(s: Settings) -> list[tuple[bool, str, str]]:
    """(ok, key, message) for each rule of `[executors.dask]`."""
    address = s.dask_address
    tls = address.startswith(("tls://", "wss://"))
    return [
        (not address or address == LOCAL or ADDRESS.match(address) is not None,
         "executors.dask.address",
         "must be a scheduler's address such as \"tcp://scheduler:8786\" (or "
         "\"tls://...\"), or \"local\" for a LocalCluster started by the daemon"),
        (s.dask_n_workers >= 0, "executors.dask.n_workers",
         "must be 0 (the number of cores) or more"),
        (s.dask_threads_per_worker >= 1, "executors.dask.threads_per_worker",
         "must be at least 1"),
        (not tls or bool(s.dask_ca_file), "executors.dask.address",
         "is a tls:// address: set executors.dask.ca_file too (the CA that signed the "
         "scheduler's certificate)"),
        (bool(s.dask_cert) == bool(s.dask_key), "executors.dask.cert",
         "and executors.dask.key go together: set both or neither"),
        (tls or not (s.dask_ca_file or s.dask_cert), "executors.dask.ca_file",
         "and cert are for a tls:// address: the address is not one"),
    ]


def security_args(s: Settings) -> dict[str, object]:
    """`distributed.Security`'s arguments for these settings ({} without TLS)."""
    if not s.dask_ca_file:
        return {}
    args: dict[str, object] = {"tls_ca_file": s.dask_ca_file, "require_encryption": True}
    if s.dask_cert:
        args.update(tls_client_cert=s.dask_cert, tls_client_key=s.dask_key)
    return args
