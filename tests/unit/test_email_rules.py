"""Who gets which email (Airflow's defaults), address checks, headers that stay one
line, and Message-IDs fixed by their row. Pure."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dagd import DAG, task
from dagd.errors import DagDefinitionError
from dagd.notify.base import emailed
from dagd.notify.message import header_text, message_id


def make(**default_args: object) -> SimpleNamespace:
    with DAG("d", default_args=default_args) as dag:
        @task
        def t() -> None: ...

        t()
    return SimpleNamespace(dag=dag, task=dag.tasks["t"])


def test_email_alone_alerts_on_failure_and_retry_not_success() -> None:
    made = make(email="oncall@example.com")
    assert made.task.email == ("oncall@example.com",)
    assert emailed(made.dag, made.task, "task_failed", 1) == ("task_failed",
                                                              ("oncall@example.com",))
    assert emailed(made.dag, made.task, "task_retry", 1)[1] == ("oncall@example.com",)
    assert emailed(made.dag, made.task, "task_success", 1)[1] == ()
    # A success after an alerted retry resolves the thread.
    assert emailed(made.dag, made.task, "task_success", 2) == ("task_resolved",
                                                               ("oncall@example.com",))


def test_each_switch_as_airflow_spells_it() -> None:
    made = make(email=["a@example.com", "b@example.com"], email_on_failure=False,
                email_on_retry=False, email_on_success=True)
    assert emailed(made.dag, made.task, "task_failed", 1)[1] == ()
    assert emailed(made.dag, made.task, "task_retry", 1)[1] == ()
    assert emailed(made.dag, made.task, "task_success", 3) == (
        "task_success", ("a@example.com", "b@example.com"))
    assert emailed(make().dag, make().task, "task_failed", 1)[1] == ()  # no email: none


def test_a_comma_separated_string_is_a_list() -> None:
    assert make(email="a@example.com, b@example.com").task.email == ("a@example.com",
                                                                     "b@example.com")


@pytest.mark.parametrize("bad", [
    "not-an-address", "a@example.com\r\nBcc: evil@example.com", "A <a@example.com>",
    "a@b@example.com", "", 42, ["ok@example.com", None],
])
def test_a_bad_address_is_refused_naming_the_task_and_field(bad: object) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        make(email=bad)
    assert caught.value.field == "email" and caught.value.task_id == "t"


def test_a_bad_switch_is_refused() -> None:
    with pytest.raises(DagDefinitionError, match="email_on_retry must be True or False"):
        make(email="a@example.com", email_on_retry="yes")


def test_a_dag_summary_goes_to_its_email_for_the_ends_it_names() -> None:
    with DAG("s", email="ml@example.com", notify_on=("success",)) as dag:
        pass
    assert emailed(dag, None, "run_success", 0) == ("run_success", ("ml@example.com",))
    assert emailed(dag, None, "run_failed", 0)[1] == ()
    with DAG("f", email="ml@example.com") as only_email:  # failure by default
        pass
    assert emailed(only_email, None, "run_failed", 0)[1] == ("ml@example.com",)
    with pytest.raises(DagDefinitionError, match="notify_on needs email="):
        DAG("n", notify_on=("failure",))
    with pytest.raises(DagDefinitionError, match="notify_on must be among"):
        DAG("n", email="ml@example.com", notify_on=("finished",))


def test_header_text_is_one_line() -> None:
    assert header_text("a\r\nBcc: x\tb\x00c") == "a Bcc: x b c"
    assert len(header_text("x" * 1000)) == 250


def test_message_ids_are_fixed_by_the_row() -> None:
    one = message_id(7, 1700000000.123456, "dagd@example.com")
    assert one == message_id(7, 1700000000.123456, "dagd@example.com")
    assert one != message_id(8, 1700000000.123456, "dagd@example.com")
    assert one.startswith("<dagd.7.") and one.endswith("@example.com>")
    assert message_id(1, 1.0, "bad\r\nsender").endswith("@dagd.localhost>")


def test_a_temporary_login_refusal_is_retried_and_a_permanent_one_is_not() -> None:
    import aiosmtplib

    from dagd.notify.smtp import classify

    later = classify("login", aiosmtplib.SMTPAuthenticationError(454, "try again later"))
    never = classify("login", aiosmtplib.SMTPAuthenticationError(535, "bad credentials"))
    assert (later.permanent, never.permanent) == (False, True)
    assert "password" in never.hint and not later.hint


def test_an_address_with_a_final_newline_is_refused_and_semicolons_separate() -> None:
    from dagd.authoring.settings import check_address, check_email

    assert not check_address("ops@example.com\n")
    assert check_email("a@example.com; b@example.com") == ("a@example.com", "b@example.com")
