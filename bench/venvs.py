"""make bench: isolated venvs under bench/.cache for the orchestrators dagd is measured
against, built once from PyPI and reused (a stamp file in each says what it holds).

Owns: building one (`ensure`), and the environment a command in it runs with (`env`):
its own bin first, none of dagd's Python paths. A venv that cannot be built says why in
one line; the figure that needs it is then skipped, and the bench goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
BUILD_TIMEOUT = 1800.0  # seconds for pip to install a package and its dependencies


def tail(text: str, lines: int = 3) -> str:
    """What went wrong, short: the ERROR lines, else the last lines."""
    found = [line.strip() for line in text.splitlines() if line.startswith("ERROR")]
    shown = " / ".join(found or [line.strip() for line in text.strip().splitlines()[-lines:]])
    return shown if len(shown) <= 300 else shown[:299] + "…"


def ensure(name: str, requirements: list[str], wanted: str) -> tuple[Path | None, str]:
    """The venv `name` with `requirements` installed, its program `wanted` (in bin/)
    present; built on first use. (None, why) when it cannot be."""
    venv = CACHE / name
    program = venv / "bin" / wanted
    stamp = venv / "dagd-bench-stamp.txt"
    what = " ".join(requirements)
    if program.exists() and stamp.exists() and stamp.read_text().strip() == what:
        return program, ""
    print(f"building {venv} with {what} (once; a few minutes)", flush=True)
    steps = ([sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
              "--disable-pip-version-check", *requirements])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, check=False,
                                  timeout=BUILD_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(step[:3])}: {exc}"
        if done.returncode != 0:
            return None, f"{' '.join(step[:3])} failed: {tail(done.stderr or done.stdout)}"
    if not program.exists():
        return None, f"pip installed {what} but no bin/{wanted} appeared"
    stamp.write_text(what + "\n")
    return program, ""


def env(venv: Path, drop_prefixes: tuple[str, ...] = ("DAGD_",),
        **extra: str) -> dict[str, str]:
    """The environment of a command in `venv`: its bin first, none of dagd's paths."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
            and not k.startswith(drop_prefixes)}
    return {**base, "PATH": f"{venv / 'bin'}{os.pathsep}{base.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv), **extra}
