"""DAGD_SECTION__KEY environment variables, where each value came from, systemd
credentials, and what a reload applies at once or leaves for a restart."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dagd.config import Settings, load_settings, reload_settings
from dagd.config_sources import environment_keys, key_lines
from dagd.errors import ConfigError
from dagd.reload import differing, merge, restart_needed

FILE = """\
# a comment
[core]
parallelism = 8
log_level = "DEBUG"

[server]
port = 9090

[connections.crm]
base_url = "https://crm.example.com"
headers = { "X-Tenant" = "acme" }
"""


def write(tmp_path: Path, text: str = FILE) -> Path:
    path = tmp_path / "dagd.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_every_key_is_overridden_by_its_variable_typed() -> None:
    settings = load_settings(None, environ={
        "DAGD_SERVER__PORT": "9000", "DAGD_CORE__SHUTDOWN_GRACE_PERIOD": "2.5",
        "DAGD_AUTH__PUBLIC_HEALTH": "yes", "DAGD_SMTP__SENDER": "ops@example.com",
        "DAGD_CORE__DATA_DIR": "~/state", "DAGD_WORKERS__MAX_MEMORY_PER_WORKER": "1GiB",
        "DAGD_CONFIG": "", "DAGD_PLUGINS_FOLDER": "/elsewhere"})
    assert (settings.port, settings.shutdown_grace_period, settings.auth_public_health,
            settings.smtp_sender, settings.workers_max_memory) == (
        9000, 2.5, True, "ops@example.com", 2**30)
    assert settings.data_dir == Path("~/state").expanduser()
    assert settings.plugins_folder == Path("plugins")  # not a SECTION__KEY name
    assert settings.sources["port"] == "environment DAGD_SERVER__PORT"


def test_the_environment_beats_the_file_and_options_beat_both(tmp_path: Path) -> None:
    path = write(tmp_path)
    settings = load_settings(path, environ={"DAGD_SERVER__PORT": "9000",
                                            "DAGD_CORE__PARALLELISM": "4"},
                             overrides={"port": 7000})
    assert (settings.port, settings.parallelism, settings.log_level) == (7000, 4, "DEBUG")
    assert settings.sources == {
        "parallelism": "environment DAGD_CORE__PARALLELISM",
        "log_level": f"{path}:4",
        "port": "--port",
        "connections": f"{path}:9",
    }


@pytest.mark.parametrize(("variable", "text", "message"), [
    ("DAGD_SERVER__PORT", "ninety", "server.port must be a whole number, got 'ninety'"),
    ("DAGD_SERVER__PORT", "70000", "server.port must be between 0 and 65535"),
    ("DAGD_SMTP__TLS", "maybe", "smtp.tls must be true or false (or 1/0, yes/no, on/off), "
                                "got 'maybe'"),
    ("DAGD_CORE__SHUTDOWN_GRACE_PERIOD", "nan", "must be a finite number, got 'nan'"),
    ("DAGD_CORE__PARALLELISM", "2.5", "core.parallelism must be a whole number"),
    ("DAGD_SERVER__PROT", "1", "unknown key server.prot"),
    ("DAGD_WORKERS__MAX_MEMORY_PER_WORKER", "lots", "workers.max_memory_per_worker must be"),
    ("DAGD_SMTP__PASSWORD", "hunter2", "secrets never go in the config file"),
    ("DAGD_CONNECTIONS__CRM__HEADERS", "x", "is a table: set it in the config file"),
    ("DAGD_CONNECTIONS__CRM__BASE_URL", "ftp://x", "connections.crm.base_url must be an "
                                                    "http:// or https:// URL"),
])
def test_a_bad_variable_is_an_error_naming_it_the_key_and_the_type(
        variable: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={variable: text})
    assert caught.value.file == f"environment {variable}"
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_bad_file_value_names_the_file_and_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[core]\n\nparallelism = 0\n[server]\nport = 'x'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value).startswith(f"{path}:5, field 'server.port'")
    path.write_text("[core]\n\nparallelism = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert (caught.value.file, caught.value.line) == (str(path), 3)
    assert caught.value.message == "core.parallelism must be at least 1"


def test_a_connection_from_the_environment_joins_or_adds_to_the_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), environ={
        "DAGD_CONNECTIONS__CRM__TOKEN_ENV": "CRM_TOKEN",
        "DAGD_CONNECTIONS__WAREHOUSE__URL": "postgresql://etl@db/warehouse"})
    assert dict(settings.connections["crm"]) | {} == {
        "base_url": "https://crm.example.com", "headers": {"X-Tenant": "acme"},
        "token_env": "CRM_TOKEN"}
    assert settings.connections["warehouse"]["url"] == "postgresql://etl@db/warehouse"


def test_the_short_names_are_the_same_keys_and_must_agree() -> None:
    assert load_settings(None, environ={"DAGD_DATA_DIR": "/d"}).data_dir == Path("/d")
    same = {"DAGD_DATA_DIR": "/d", "DAGD_CORE__DATA_DIR": "/d"}
    assert load_settings(None, environ=same).data_dir == Path("/d")
    with pytest.raises(ConfigError, match=r"both set core\.data_dir, differently"):
        load_settings(None, environ={"DAGD_DATA_DIR": "/d", "DAGD_CORE__DATA_DIR": "/e"})


def test_empty_variables_count_as_unset() -> None:
    assert environment_keys({"DAGD_SERVER__PORT": "", "DAGD_X": "1", "HOME": "/"}) == []


def test_a_relative_file_setting_is_a_systemd_credential_when_one_is_there(
        tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "smtp-password").write_text("s3cret\n")
    env = {"DAGD_SMTP__PASSWORD_FILE": "smtp-password", "DAGD_SMTP__USERNAME": "dagd",
           "DAGD_SMTP__STARTTLS": "true", "CREDENTIALS_DIRECTORY": str(creds)}
    settings = load_settings(None, environ=env)
    assert settings.smtp_password_file == str(creds / "smtp-password")
    assert settings.sources["smtp_password_file"].endswith(f"(credential in {creds})")
    elsewhere = load_settings(None, environ={**env, "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert elsewhere.smtp_password_file == "smtp-password"


def test_key_lines_find_keys_tables_and_quoted_names() -> None:
    lines = key_lines('[core]\nparallelism = 1\n[connections."my crm"]\n'
                      'base_url = "x"  # c\n[ connections.b ]\n"url" = 1\n')
    assert lines == {"core": 1, "core.parallelism": 2, "connections.my crm": 3,
                     "connections.my crm.base_url": 4, "connections.b": 5,
                     "connections.b.url": 6}


def test_a_reload_reads_the_same_file_and_options_again(tmp_path: Path) -> None:
    path = write(tmp_path)
    first = load_settings(path, overrides={"port": 7000}, environ={})
    path.write_text(FILE.replace("parallelism = 8", "parallelism = 3"))
    again = reload_settings(first, environ={})
    assert (again.parallelism, again.port) == (3, 7000)


def test_a_reload_applies_what_can_change_and_keeps_what_needs_a_restart(
        tmp_path: Path) -> None:
    path = write(tmp_path)
    running = load_settings(path, environ={})
    path.write_text(FILE.replace("parallelism = 8", "parallelism = 3")
                    .replace("port = 9090", "port = 9191"))
    outcome = merge(running, reload_settings(running, environ={}))
    assert outcome.applied == ["parallelism"]
    assert outcome.pending == {"port": 9191}
    assert (outcome.running.parallelism, outcome.running.port) == (3, 9090)
    assert outcome.running.sources["port"] == f"{path}:7"
    assert differing(running, running) == []


def test_which_keys_need_a_restart() -> None:
    assert [name for name in ("port", "data_dir", "workers_size", "auth_enabled")
            if restart_needed(name)] == ["port", "data_dir", "workers_size", "auth_enabled"]
    assert not any(restart_needed(name) for name in (
        "connections", "parallelism", "smtp_host", "log_level", "retention_max_age_days"))
    assert not restart_needed("sources")
    assert Settings().sources == {}


@pytest.mark.parametrize(("variable", "text", "message"), [
    ("DAGD_WORKERS__MAX_MEMORY_PER_WORKER", "9" * 400 + ".5",
     "workers.max_memory_per_worker must be a number of bytes"),
    ("DAGD_SERVER__PORT", "9" * 5000, "server.port must be a whole number"),
    ("DAGD_CORE__PARALLELISM", "\u0661\u0662", "core.parallelism must be a whole number"),
    ("DAGD_CORE__DATA_DIR", "~no-such-user-here/state",
     "core.data_dir names the home of an unknown user"),
])
def test_an_overflowing_or_odd_variable_is_a_config_error_not_a_crash(
        variable: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={variable: text})
    assert caught.value.file == f"environment {variable}"
    assert message in str(caught.value)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(("text", "message"), [
    ("[server]\nport = " + "9" * 5000 + "\n", "not valid TOML"),
    ("[workers]\nmax_memory_per_worker = '" + "9" * 400 + ".5MB'\n",
     "workers.max_memory_per_worker must be a number of bytes"),
    ("[core]\ndags_folder = '~no-such-user-here/dags'\n",
     "core.dags_folder names the home of an unknown user"),
])
def test_an_overflowing_file_value_is_a_config_error_not_a_crash(
        tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.file == str(path)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 400
