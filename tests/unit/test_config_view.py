"""`dagd config show` and GET /api/v1/config: no secret in a row or in the error of a
refused configuration (header values, credentials in a URL)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from dagd.config import load_settings
from dagd.config_view import rows
from dagd.errors import ConfigError

SECRET = "s3cr3t-value"


def test_credentials_in_any_url_and_header_values_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "dagd.toml"
    path.write_text(f'[server]\nbase_url = "https://ops:{SECRET}@dagd.example.com/"\n'
                    f'[connections.crm]\nbase_url = "https://u:{SECRET}@crm.example.com"\n'
                    f'headers = {{ Authorization = "Bearer {SECRET}" }}\n')
    shown = orjson.dumps(rows(load_settings(path, environ={}))).decode()
    assert SECRET not in shown
    assert "https://***@dagd.example.com/" in shown


@pytest.mark.parametrize("table", [
    f'base_url = "https://crm"\nheaders = {{ Authorization = "Bearer {SECRET}", X = "" }}\n',
    f'base_url = "ftp://u:{SECRET}@crm"\n',
    f'base_url = "https://crm"\nheaders_env = {{ Authorization = "{SECRET}", X = 5 }}\n',
])
def test_a_refused_connection_never_echoes_its_secrets(tmp_path: Path, table: str) -> None:
    path = tmp_path / "dagd.toml"
    path.write_text(f"[connections.crm]\n{table}")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert "connections.crm." in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_value_changed_on_disk_is_masked_too(tmp_path: Path) -> None:
    running = load_settings(None, environ={})
    on_disk = load_settings(None, environ={
        "DAGD_SERVER__BASE_URL": f"https://ops:{SECRET}@dagd.example.com"})
    shown = [row for row in rows(running, on_disk) if "on_disk" in row]
    assert [row["on_disk"] for row in shown] == ["https://***@dagd.example.com"]
