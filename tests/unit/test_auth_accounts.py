"""The pure parts of authentication: password hashes, names and roles, the users file,
and which `next` targets count as this site's own paths."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dagd.accounts import AccountsFile, check_name, hash_password, verify_password
from dagd.errors import ConfigError, InvalidInput, NotFound
from dagd.web.sessions import local_next


def test_a_password_hash_is_salted_and_checked() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("s3cret!", first)
    assert not verify_password("s3cret", None)  # an unknown user: never a match
    assert not verify_password("s3cret", "scrypt$2$1$1$bad")
    assert not verify_password("s3cret", "md5$x$y$z$a$b")


@pytest.mark.parametrize("name", ["", "a b", "-lead", "x" * 65, "é", "a/b", "a\n"])
def test_bad_names_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(InvalidInput, match="letters, digits"):
        check_name(name)


def test_the_users_file(tmp_path: Path) -> None:
    users = AccountsFile(tmp_path)
    assert users.current().users == {}
    users.add_user("ada", "pw", role="operator")
    assert stat.S_IMODE((tmp_path / "users.json").stat().st_mode) == 0o600
    with pytest.raises(InvalidInput, match="already exists"):
        users.add_user("ada", "pw2")
    with pytest.raises(InvalidInput, match="unknown role 'admin'"):
        users.add_user("bob", "pw", role="admin")
    token = users.create_token("ci")
    assert token not in (tmp_path / "users.json").read_text()
    reader = AccountsFile(tmp_path)
    assert reader.current().users["ada"].role == "operator"
    users.remove_user("ada")
    assert "ada" not in reader.current().users  # read again: it changed
    with pytest.raises(NotFound, match="no user named 'ada'"):
        users.remove_user("ada")
    (tmp_path / "users.json").write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        AccountsFile(tmp_path).current()


@pytest.mark.parametrize("target", [
    "//evil.com", "https://evil.com", "/\\evil.com", "%2F%2Fevil.com", "/%2F/evil.com",
    "/%5Cevil.com", "/%252F%252Fevil.com", "/%25252F%25252Fevil.com", "javascript:x",
    "/\t/evil.com", "/\n/evil.com", "/%09/evil.com", "", "evil.com", "\\\\evil.com", "/x\n",
    "/x%0A", "/x%0d%0aSet-Cookie:%20a=b",
])
def test_a_next_elsewhere_becomes_the_home_page(target: str) -> None:
    assert local_next(target) == "/"


@pytest.mark.parametrize("target", ["/", "/dags/x", "/runs/4/tasks/t?try=2",
                                    "/dags/a%20b", "/events?dag=x&limit=5"])
def test_a_path_of_this_site_is_kept(target: str) -> None:
    assert local_next(target) == target
