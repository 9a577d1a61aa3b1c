"""The API's log route on a real aiohttp server: a secret that a task prints anyway is
shown as *** (connections' passwords, tokens and header secrets, the SMTP password, the
DAGs' webhook secrets), read from the daemon's environment when the log is asked for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from dagd.config import Settings
from dagd.kinds.connections import set_connections
from integration.harness import StartEngine, read_text
from integration.test_web_api import api

pytestmark = pytest.mark.anyio

SECRETS = {
    "DAGD_TEST_MASK_DB_PASSWORD": "db-pa55word",
    "DAGD_TEST_MASK_TOKEN": "tok-123456",
    "DAGD_TEST_MASK_API_KEY": "key-abcdef",
    "DAGD_TEST_MASK_SMTP": "smtp-secret",
    "DAGD_TEST_MASK_HOOK": "hook-secret",
    "DAGD_TEST_MASK_RELOADED": "loaded-on-sighup",
    "DAGD_TEST_MASK_SHORT": "abc",  # too short to mask: it would hide ordinary words
}

PRINTS = """
from dagd import DAG, ShellTask, Webhook

with DAG("prints", triggers=[Webhook("prints", secret_env="DAGD_TEST_MASK_HOOK")]) as prints:
    ShellTask(task_id="leak", inherit_env=True, command=(
        'echo "db=$DAGD_TEST_MASK_DB_PASSWORD token=$DAGD_TEST_MASK_TOKEN"; '
        'echo "key=$DAGD_TEST_MASK_API_KEY smtp=$DAGD_TEST_MASK_SMTP"; '
        'echo "hook=$DAGD_TEST_MASK_HOOK reloaded=$DAGD_TEST_MASK_RELOADED"; '
        'echo "short=$DAGD_TEST_MASK_SHORT twice=$DAGD_TEST_MASK_TOKEN$DAGD_TEST_MASK_TOKEN"'
    ))
"""


async def test_a_secret_a_task_prints_is_masked_in_the_log_the_api_serves(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    write_dag("prints.py", PRINTS)
    connections = {
        "warehouse": {"url": "postgresql://etl@db/w", "password_env": "DAGD_TEST_MASK_DB_PASSWORD"},
        "crm": {"base_url": "https://crm.example.com", "token_env": "DAGD_TEST_MASK_TOKEN",
                "headers_env": {"X-Api-Key": "DAGD_TEST_MASK_API_KEY"}},
    }
    configured = replace(settings, connections=connections,
                         smtp_password_env="DAGD_TEST_MASK_SMTP")
    try:
        async with start_engine(configured) as h, api(h) as (http, base):
            # As the daemon does on SIGHUP: a connection the settings do not know.
            set_connections({**connections, "later": {
                "base_url": "https://later.example.com", "token_env": "DAGD_TEST_MASK_RELOADED"}})
            run_id, state = await h.run("prints")
            [attempt] = await h.attempts(run_id, "leak")
            async with http.get(f"{base}/runs/{run_id}/tasks/leak/logs") as resp:
                assert resp.status == 200
                shown = await resp.text()
    finally:
        set_connections({})
    assert state == "success"
    assert "db=*** token=***\n" in shown
    assert "key=*** smtp=***\n" in shown
    assert "hook=*** reloaded=***\n" in shown
    assert "short=abc twice=******\n" in shown
    for value in SECRETS.values():
        if len(value) >= 4:
            assert value not in shown
    # The file keeps what the task wrote: masking is for showing it.
    assert "db=db-pa55word" in await read_text(attempt.log_path)


async def test_the_smtp_password_from_its_file_is_masked_in_the_log_the_api_serves(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "smtp-password"
    secret_file.write_text("FilePassw0rd-xyz\n")
    write_dag("reads.py", f"""
from dagd import DAG, ShellTask

with DAG("reads") as reads:
    ShellTask(task_id="leak", command="echo file=$(cat {secret_file})")
""")
    configured = replace(settings, smtp_password_file=str(secret_file), smtp_starttls=True)
    async with start_engine(configured) as h, api(h) as (http, base):
        run_id, state = await h.run("reads")
        async with http.get(f"{base}/runs/{run_id}/tasks/leak/logs") as resp:
            assert resp.status == 200
            shown = await resp.text()
    assert state == "success"
    assert "file=***\n" in shown
    assert "FilePassw0rd-xyz" not in shown
