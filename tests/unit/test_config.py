"""Settings: file, then environment, then explicit overrides; clear errors for bad files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dagd.config import Settings, load_settings
from dagd.errors import ConfigError, DagdError


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dagd.toml"
    path.write_text(textwrap.dedent(text))
    return path


FULL = """\
[core]
dags_folder = "/srv/dags"
data_dir = "/var/lib/dagd"
parallelism = 8
default_isolation = "thread"
default_max_active_runs = 2
default_max_active_tasks = 4
shutdown_grace_period = 5
log_level = "DEBUG"

[server]
host = "0.0.0.0"
port = 9090

[logs]
max_bytes = 2048

[xcom]
max_bytes = 4096

[database]
synchronous = "normal"
"""


def test_every_file_value_is_read(tmp_path: Path) -> None:
    path = write_config(tmp_path, FULL)
    settings = load_settings(path, environ={})
    assert settings == Settings(
        dags_folder=Path("/srv/dags"),
        data_dir=Path("/var/lib/dagd"),
        parallelism=8,
        default_isolation="thread",
        default_max_active_runs=2,
        default_max_active_tasks=4,
        shutdown_grace_period=5.0,
        log_level="DEBUG",
        host="0.0.0.0",
        port=9090,
        log_max_bytes=2048,
        xcom_max_bytes=4096,
        synchronous="normal",
        config_file=path,
    )
    assert settings.db_path == Path("/var/lib/dagd/dagd.db")
    assert settings.logs_dir == Path("/var/lib/dagd/logs")
    assert settings.lock_path == Path("/var/lib/dagd/dagd.lock")


def test_keys_missing_from_the_file_keep_their_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\nport = 8181\n')
    settings = load_settings(path, environ={})
    assert settings.port == 8181
    assert settings.dags_folder == Path("dags")
    assert settings.parallelism == 64
    assert settings.synchronous == "full"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "# nothing set\n")
    assert load_settings(path, environ={}) == Settings(config_file=path)


def test_relative_paths_stay_relative_to_the_working_directory(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[core]\ndags_folder = "my/dags"\n')
    assert load_settings(path, environ={}).dags_folder == Path("my/dags")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, FULL)
    settings = load_settings(
        path, environ={"DAGD_DAGS_FOLDER": "/env/dags", "DAGD_DATA_DIR": "/env/data"}
    )
    assert settings.dags_folder == Path("/env/dags")
    assert settings.data_dir == Path("/env/data")
    assert settings.port == 9090  # untouched keys still come from the file


def test_empty_environment_values_are_ignored(tmp_path: Path) -> None:
    path = write_config(tmp_path, FULL)
    settings = load_settings(path, environ={"DAGD_DAGS_FOLDER": "", "DAGD_DATA_DIR": ""})
    assert settings.dags_folder == Path("/srv/dags")
    assert settings.data_dir == Path("/var/lib/dagd")


def test_explicit_overrides_beat_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, FULL)
    settings = load_settings(
        path,
        overrides={"dags_folder": "/cli/dags", "port": 7000, "data_dir": None, "host": None},
        environ={"DAGD_DAGS_FOLDER": "/env/dags", "DAGD_DATA_DIR": "/env/data"},
    )
    assert settings.dags_folder == Path("/cli/dags")
    assert settings.port == 7000
    # None means "not given": the environment and the file still apply.
    assert settings.data_dir == Path("/env/data")
    assert settings.host == "0.0.0.0"


def test_dagd_config_in_the_environment_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, FULL)
    settings = load_settings(environ={"DAGD_CONFIG": str(path)})
    assert settings.config_file == path
    assert settings.port == 9090


def test_an_explicit_file_beats_dagd_config(tmp_path: Path) -> None:
    explicit = write_config(tmp_path, "[server]\nport = 1111\n")
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 2222\n")
    settings = load_settings(explicit, environ={"DAGD_CONFIG": str(other)})
    assert settings.port == 1111


def test_without_any_file_the_defaults_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if Path("/etc/dagd/dagd.toml").is_file():
        pytest.skip("a system-wide /etc/dagd/dagd.toml exists on this machine")
    monkeypatch.chdir(tmp_path)  # no ./config/dagd.toml here
    settings = load_settings(environ={"DAGD_DATA_DIR": "/env/data"})
    assert settings == Settings(data_dir=Path("/env/data"))
    assert settings.config_file is None


def test_the_default_config_file_in_the_working_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "dagd.toml").write_text("[server]\nport = 3333\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.port == 3333
    assert settings.config_file == Path("config/dagd.toml")


# -- errors ------------------------------------------------------------------------


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.file == str(path)
    assert isinstance(info.value, DagdError)
    return info.value


def test_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[core]\nparalelism = 4\n")
    exc = config_error(path)
    assert exc.field == "core.paralelism"
    assert exc.message == "unknown key core.paralelism"
    assert str(exc) == f"{path}:2, field 'core.paralelism': unknown key core.paralelism"


def test_a_known_key_in_the_wrong_section_is_unknown(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[core]\nport = 8080\n")
    assert config_error(path).field == "core.port"


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[mailer]\nhost = "mail"\n')
    exc = config_error(path)
    assert exc.field == "mailer.host"
    assert "unknown key mailer.host" in str(exc)


def test_smtp_settings_are_read_and_checked(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[smtp]\nhost = "mail"\nport = 587\nstarttls = true\n')
    s = load_settings(path, environ={})
    assert (s.smtp_host, s.smtp_port, s.smtp_starttls) == ("mail", 587, True)
    exc = config_error(write_config(tmp_path, '[smtp]\nstarttls = "yes"\n'))
    assert exc.field == "smtp.starttls" and "true or false" in str(exc)
    exc = config_error(write_config(tmp_path, "[smtp]\nstarttls = true\ntls = true\n"))
    assert exc.field == "smtp.tls"


def test_a_key_outside_any_section_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "port = 8080\n")
    exc = config_error(path)
    assert exc.field == "port"
    assert "[port] must be a table" in exc.message


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ('[server]\nport = "8080"\n', "server.port", "must be a whole number, got '8080'"),
        ("[server]\nport = 80.5\n", "server.port", "must be a whole number, got 80.5"),
        ("[core]\nparallelism = true\n", "core.parallelism", "whole number, got True"),
        ('[core]\nshutdown_grace_period = "10s"\n', "core.shutdown_grace_period", "a number"),
        ("[core]\ndags_folder = 3\n", "core.dags_folder", "non-empty path string, got 3"),
        ('[core]\ndata_dir = ""\n', "core.data_dir", "non-empty path string"),
        ("[server]\nhost = 127\n", "server.host", "must be a string, got 127"),
    ],
)
def test_wrong_type_names_the_file_and_the_key(
    tmp_path: Path, text: str, field: str, fragment: str
) -> None:
    exc = config_error(write_config(tmp_path, text))
    assert exc.field == field
    assert exc.message.startswith(field)
    assert fragment in exc.message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[core]\nparallelism = 0\n", "core.parallelism"),
        ("[core]\ndefault_max_active_runs = 0\n", "core.default_max_active_runs"),
        ("[core]\ndefault_max_active_tasks = -1\n", "core.default_max_active_tasks"),
        ('[core]\ndefault_isolation = "fork"\n', "core.default_isolation"),
        ("[core]\nshutdown_grace_period = -1\n", "core.shutdown_grace_period"),
        ('[core]\nlog_level = "LOUD"\n', "core.log_level"),
        ('[core]\nlog_level = "info"\n', "core.log_level"),
        ("[server]\nport = 70000\n", "server.port"),
        ("[logs]\nmax_bytes = 10\n", "logs.max_bytes"),
        ("[xcom]\nmax_bytes = 1\n", "xcom.max_bytes"),
        ('[database]\nsynchronous = "off"\n', "database.synchronous"),
    ],
)
def test_out_of_range_values_name_the_file_and_the_key(
    tmp_path: Path, text: str, field: str
) -> None:
    exc = config_error(write_config(tmp_path, text))
    assert exc.field == field
    assert exc.message.startswith(field)


def test_an_out_of_range_override_is_refused_too(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_settings(path, overrides={"port": 99999}, environ={})
    assert info.value.field == "server.port"


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[core]\nparallelism = \n")
    exc = config_error(path)
    assert exc.message.startswith("not valid TOML: ")
    assert "line 2" in exc.message
    assert str(exc).startswith(f"{path}: not valid TOML")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    exc = config_error(missing)
    assert exc.message == "config file not found"


def test_a_missing_file_named_by_dagd_config_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"DAGD_CONFIG": str(missing)})
    assert info.value.file == str(missing)


def test_the_smtp_and_notifications_keys_are_read(tmp_path: Path) -> None:
    path = write_config(tmp_path, """\
        [server]
        base_url = "https://dagd.example.com"

        [smtp]
        host = "smtp.example.com"
        port = 587
        starttls = true
        username = "dagd"
        password_file = "/run/credentials/dagd.service/smtp"
        ca_file = "/etc/ssl/private-ca.pem"
        deadline = 20

        [notifications]
        templates_folder = "/etc/dagd/email-templates"
        retry_delay = 0.5
        max_attempts = 3
    """)
    s = load_settings(path, environ={})
    assert (s.smtp_host, s.smtp_port, s.smtp_starttls, s.smtp_username) == (
        "smtp.example.com", 587, True, "dagd")
    assert s.smtp_password_file == "/run/credentials/dagd.service/smtp"
    assert s.smtp_ca_file == "/etc/ssl/private-ca.pem" and s.smtp_deadline == 20.0
    assert s.templates_folder == Path("/etc/dagd/email-templates")
    assert (s.notify_retry_delay, s.notify_max_attempts) == (0.5, 3)
    assert s.base_url == "https://dagd.example.com"


@pytest.mark.parametrize(("text", "field", "says"), [
    ('[smtp]\npassword = "hunter2"\n', "smtp.password", "secrets never go in the config"),
    ('[smtp]\nusername = "u"\npassword_env = "P"\n', "smtp.starttls",
     "must be true when a password is set"),
    ('[smtp]\nstarttls = true\npassword_env = "P"\n', "smtp.username", "must be set"),
    ('[smtp]\nstarttls = true\nusername = "u"\npassword_env = "P"\npassword_file = "f"\n',
     "smtp.password_env", "cannot both be set"),
    ('[smtp]\ndeadline = 0\n', "smtp.deadline", "must be more than 0"),
    ('[notifications]\nmax_attempts = 0\n', "notifications.max_attempts", "at least 1"),
    ('[server]\nbase_url = "dagd.example.com"\n', "server.base_url", "http:// or https://"),
])
def test_a_bad_smtp_or_notifications_key_is_refused(tmp_path: Path, text: str, field: str,
                                                    says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path, text), environ={})
    assert caught.value.field == field and says in str(caught.value)
    assert "hunter2" not in str(caught.value)
