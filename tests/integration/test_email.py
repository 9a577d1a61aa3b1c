"""Email notifications through a real SMTP server (aiosmtpd) on 127.0.0.1: an
EmailNotifier's failure and retry, the `default_args` email keys as Airflow users write
them (retries, failure and the "resolved" message in one thread, both parts, the log's
tail), run summaries, a burst of 200 failures over few connections, a server down for a
while, a 550 for one recipient, and CR/LF that cannot make a header."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from dagd.authoring.loader import load_folder
from dagd.config import Settings
from dagd.notify import email
from dagd.notify.outbox import Outbox
from integration.harness import Harness, StartEngine, outbox_running, wait_until
from integration.smtp_server import Inbox, free_port, smtp_server

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def default_mail_settings() -> Iterator[None]:
    """Each test configures the daemon's [smtp] its own way: none leaks into the next."""
    yield
    email.configure(Settings())

MAILED = """
    from dagd import DAG, task
    from dagd.notify.email import EmailNotifier

    @task(retries=1, retry_delay=0)
    async def load():
        raise ConnectionError("the warehouse refused the connection")

    with DAG("mailed", notifiers=[EmailNotifier(to=["oncall@example.com"],
                                                on=("run_failed", "task_retry"))]):
        load()
"""


def configure(settings: Settings, port: int) -> None:
    email.configure(replace(settings, smtp_host="127.0.0.1", smtp_port=port,
                            smtp_sender="dagd@test.example", smtp_timeout=5.0))


async def run_with_outbox(h: Harness, dag_id: str) -> None:
    outbox = Outbox(h.store, lambda: h.engine.dags)
    h.engine.notification_listeners.append(outbox.wake)
    async with anyio.create_task_group() as tg:
        await tg.start(outbox.run)
        _, state = await h.run(dag_id)
        assert state == "failed"

        async def both_sent() -> bool:
            rows = await h.store.list_notifications(dag_id)
            return len(rows) == 2 and all(r.state == "sent" for r in rows)

        await wait_until(both_sent, deadline=20, what="both notifications sent")
        tg.cancel_scope.cancel()


async def test_a_failure_and_its_retry_arrive_by_email(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("mailed.py", MAILED)
    port = free_port()
    configure(settings, port)
    with smtp_server(port) as inbox:
        async with start_engine() as h:
            await run_with_outbox(h, "mailed")
    assert len(inbox.received) == 2
    bodies = [m.raw.decode() for m in inbox.received]
    assert all(m.rcpt_tos == ["oncall@example.com"] for m in inbox.received)
    assert all(m.mail_from == "dagd@test.example" for m in inbox.received)
    retry = next(b for b in bodies if "will be retried" in b)
    assert "Subject: [dagd] RETRY mailed.load run 1, try 1/2" in retry
    assert "the warehouse refused the connection" in retry
    assert "dagd logs mailed 1 load --try 1" in retry
    assert any("Subject: [dagd] FAILED mailed run 1: 1 of 1 tasks failed" in b for b in bodies)


async def test_an_smtp_server_that_is_down_is_retried_until_it_is_back(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("mailed.py", MAILED)
    port = free_port()
    configure(settings, port)
    async with start_engine() as h:
        outbox = Outbox(h.store, lambda: h.engine.dags)
        h.engine.notification_listeners.append(outbox.wake)
        async with anyio.create_task_group() as tg:
            await tg.start(outbox.run)
            _, state = await h.run("mailed")
            assert state == "failed"

            async def refused() -> bool:
                rows = await h.store.list_notifications("mailed")
                return len(rows) == 2 and all(r.attempts >= 1 for r in rows)

            await wait_until(refused, what="a first, refused try")
            rows = await h.store.list_notifications("mailed")
            assert all(r.state == "pending" and r.last_error for r in rows)
            with smtp_server(port) as inbox:  # the server comes back

                async def sent() -> bool:
                    rows = await h.store.list_notifications("mailed")
                    return all(r.state == "sent" for r in rows)

                await wait_until(sent, deadline=20, what="the retried sends")
            tg.cancel_scope.cancel()
    assert len(inbox.received) == 2


# -- email as Airflow users write it, with a real SMTP server ---------------------------

AIRFLOW_STYLE = """
    from pathlib import Path
    from dagd import DAG, task

    COUNT = Path(__file__).with_suffix(".count")

    @task(retries=2, retry_delay=0)
    def flaky():
        n = int(COUNT.read_text()) if COUNT.exists() else 0
        COUNT.write_text(str(n + 1))
        for i in range(60):
            print(f"line {i} <b>not bold</b>")
        if n < 2:
            raise ValueError("the source is not ready <script>alert(1)</script>")
        return n

    @task(retries=0)
    def breaks():
        raise KeyError("no column 'amount'")

    with DAG("etl_sales", default_args={"email": ["oncall@example.com", "lead@example.com"],
                                        "email_on_failure": True}):
        flaky()
        breaks()
"""

SUMMARY = """
    from dagd import DAG, task

    @task
    async def extract():
        return 1

    @task
    async def load(x):
        raise RuntimeError("the warehouse is read-only")

    with DAG("nightly", email="ml-team@example.com", notify_on=("failure", "success")):
        load(extract())

    with DAG("fine", email=["ml-team@example.com"], notify_on=["success"]):
        extract()
"""


def mail_settings(settings: Settings, port: int, **more: Any) -> Settings:
    chosen = replace(settings, smtp_host="127.0.0.1", smtp_port=port,
                     smtp_sender="dagd@test.example", smtp_timeout=5.0, smtp_deadline=10.0,
                     notify_retry_delay=0.2, **more)
    email.configure(chosen)
    return chosen


async def settled(h: Harness, dag_id: str | None = None, count: int | None = None,
                  deadline: float = 20) -> list[Any]:
    """Every notification (of `dag_id`) sent or failed, and `count` of them if given."""

    async def done() -> bool:
        rows = await h.store.list_notifications(dag_id, limit=1000)
        return (count is None or len(rows) == count) and bool(rows) and all(
            r.state != "pending" for r in rows)

    await wait_until(done, deadline=deadline, what="the notifications settled")
    return await h.store.list_notifications(dag_id, limit=1000)


async def test_default_args_email_alerts_retries_failure_and_resolution_in_one_thread(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("etl_sales.py", AIRFLOW_STYLE)
    port = free_port()
    mail_settings(settings, port)
    with smtp_server(port) as inbox:
        async with start_engine() as h, outbox_running(h):
            run_id, state = await h.run("etl_sales")
            assert state == "failed"
            rows = await settled(h, "etl_sales", count=4)
    assert {r.state for r in rows} == {"sent"}
    subjects = sorted(inbox.subjects())
    assert subjects == sorted([
        f"[dagd] RETRY etl_sales.flaky run {run_id}, try 1/3",
        f"[dagd] RETRY etl_sales.flaky run {run_id}, try 2/3",
        f"[dagd] RESOLVED etl_sales.flaky run {run_id}, try 3/3",
        f"[dagd] FAILED etl_sales.breaks run {run_id}, try 1/1",
    ])
    for mail in inbox.received:
        assert mail.rcpt_tos == ["oncall@example.com", "lead@example.com"]
        assert mail.message["To"] == "oncall@example.com, lead@example.com"
        assert mail.mail_from == "dagd@test.example"
        assert mail.message["Message-ID"].endswith("@test.example>")
    by_subject = {str(m.message["Subject"]): m for m in inbox.received}
    first = by_subject[f"[dagd] RETRY etl_sales.flaky run {run_id}, try 1/3"].message
    second = by_subject[f"[dagd] RETRY etl_sales.flaky run {run_id}, try 2/3"].message
    resolved = by_subject[f"[dagd] RESOLVED etl_sales.flaky run {run_id}, try 3/3"].message
    # One thread: each answers the one before, and all reference the first.
    assert "In-Reply-To" not in first
    assert second["In-Reply-To"] == first["Message-ID"]
    assert resolved["In-Reply-To"] == second["Message-ID"]
    assert resolved["References"].split() == [first["Message-ID"], second["Message-ID"]]
    failed = by_subject[f"[dagd] FAILED etl_sales.breaks run {run_id}, try 1/1"]
    assert "In-Reply-To" not in failed.message
    # Both parts: the error, its type, the tries, the times, the trigger, the log tail.
    text = by_subject[f"[dagd] RETRY etl_sales.flaky run {run_id}, try 1/3"].part("plain")
    assert "Error (ValueError):" in text
    assert "the source is not ready <script>alert(1)</script>" in text
    assert "Try:       1 of 3 (2 retries left)" in text
    assert "Started:   " in text and "Duration:  " in text
    assert "triggered by manual" in text
    # The last 50 lines of the log: 60 printed, then the error and its traceback (5).
    assert "The last 50 lines of the log of try 1:" in text
    assert "line 59 <b>not bold</b>" in text and "line 15 <b>" in text
    assert "line 14 <b>" not in text
    assert f"dagd logs etl_sales {run_id} flaky --try 1" in text
    html = by_subject[f"[dagd] RETRY etl_sales.flaky run {run_id}, try 1/3"].part("html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "line 59 &lt;b&gt;not bold&lt;/b&gt;" in html and "<b>not bold" not in html
    assert "KeyError" in failed.part("plain") and "no column" in failed.part("plain")


async def test_a_run_summary_per_run_for_notify_on(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("summary.py", SUMMARY)
    port = free_port()
    mail_settings(settings, port, base_url="https://dagd.example.com")
    with smtp_server(port) as inbox:
        async with start_engine() as h, outbox_running(h):
            failed_run, state = await h.run("nightly")
            assert state == "failed"
            fine_run, state = await h.run("fine")
            assert state == "success"
            await settled(h, count=2)
    assert sorted(inbox.subjects()) == sorted([
        f"[dagd] FAILED nightly run {failed_run}: 1 of 2 tasks failed",
        f"[dagd] SUCCESS fine run {fine_run}: 1 of 1 tasks succeeded",
    ])
    nightly = next(m for m in inbox.received if "nightly" in str(m.message["Subject"]))
    assert nightly.rcpt_tos == ["ml-team@example.com"]
    text = nightly.part("plain")
    assert "success" in text and "extract" in text and "failed" in text and "load" in text
    assert "load: RuntimeError: the warehouse is read-only" in text
    assert f"https://dagd.example.com/runs/{failed_run}" in text
    assert f'href="https://dagd.example.com/runs/{failed_run}"' in \
        nightly.part("html")


async def test_200_failures_at_once_arrive_as_200_messages_over_few_connections(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("burst.py", """
        from dagd import DAG, task

        @task
        async def fail():
            raise RuntimeError("down")

        with DAG("burst", default_args={"email": "oncall@example.com"}):
            for i in range(200):
                fail.override(task_id=f"t{i:03d}")()
    """)
    port = free_port()
    mail_settings(settings, port)
    with smtp_server(port) as inbox:
        async with start_engine() as h, outbox_running(h) as outbox:
            _, state = await h.run("burst")
            assert state == "failed"
            rows = await settled(h, "burst", count=200, deadline=60)
    assert all(r.state == "sent" for r in rows)
    assert len(inbox.received) == 200
    assert len({m.message["Message-ID"] for m in inbox.received}) == 200
    # One connection per pass of the outbox over what is due (100 messages each at most).
    assert outbox.mailer.connections <= 4, outbox.mailer.connections
    assert len(inbox.peers) <= 4


async def test_a_server_down_for_a_while_gets_every_email_exactly_once(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("etl_sales.py", AIRFLOW_STYLE)
    port = free_port()
    mail_settings(settings, port)
    inbox = Inbox()
    async with start_engine() as h, outbox_running(h):
        _, state = await h.run("etl_sales")
        assert state == "failed"

        async def all_refused_once() -> bool:
            rows = await h.store.list_notifications("etl_sales")
            return len(rows) == 4 and all(r.attempts >= 1 for r in rows)

        await wait_until(all_refused_once, what="a first, refused try of each")
        rows = await h.store.list_notifications("etl_sales")
        assert all(r.state == "pending" and "connect" in (r.last_error or "") for r in rows)
        inbox.data_failures = 2  # back, but answering 451 twice first
        with smtp_server(port, inbox):
            rows = await settled(h, "etl_sales", count=4, deadline=30)
    assert all(r.state == "sent" for r in rows)
    assert len(inbox.received) == 4
    assert len({m.message["Message-ID"] for m in inbox.received}) == 4


async def test_a_550_for_a_recipient_fails_at_once_with_the_servers_answer(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("one.py", """
        from dagd import DAG, task

        @task(email=["nobody@example.com"])
        async def breaks():
            raise RuntimeError("x")

        @task(email=["nobody@example.com", "oncall@example.com"])
        async def also():
            raise RuntimeError("y")

        with DAG("one"):
            breaks()
            also()
    """)
    port = free_port()
    mail_settings(settings, port)
    inbox = Inbox(refuse={"nobody@example.com": "550 5.1.1 <nobody@example.com>: no such "
                          "user"})
    with smtp_server(port, inbox):
        async with start_engine() as h, outbox_running(h):
            await h.run("one")
            rows = {r.payload["task_id"]: r for r in await settled(h, "one", count=2)}
    assert rows["breaks"].state == "failed" and rows["breaks"].attempts == 1
    assert "550 5.1.1 <nobody@example.com>: no such user" in (rows["breaks"].last_error or "")
    # The other recipient of `also` got it; the refusal is noted on the sent row.
    assert rows["also"].state == "sent"
    assert "nobody@example.com: 550" in (rows["also"].last_error or "")
    assert [m.rcpt_tos for m in inbox.received] == [["oncall@example.com"]]


async def test_crlf_in_an_error_or_a_task_id_adds_no_header(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    tmp_path: Path,
) -> None:
    write_dag("inject.py", """
        from dagd import DAG, task

        @task(email="oncall@example.com")
        async def breaks():
            raise RuntimeError("boom\\r\\nBcc: evil@example.com\\r\\nSubject: pwned")

        with DAG("inject"):
            breaks()
    """)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "bad_id.py").write_text(textwrap.dedent("""
        from dagd import DAG, task
        from dagd.authoring.tasks import PythonTask

        with DAG("bad_id", default_args={"email": "oncall@example.com"}):
            PythonTask(task_id="load\\r\\nBcc: evil@example.com", python_callable=print)
    """))
    (bad / "bad_address.py").write_text(textwrap.dedent("""
        from dagd import DAG, task

        @task
        async def t():
            pass

        with DAG("bad_address", default_args={"email": ["ok@example.com",
                                                        "x@example.com\\r\\nBcc: e@x.com"]}):
            t()
    """))
    errors = {Path(e.file).name: e.message for e in load_folder(bad).errors}
    assert "task_id must be" in errors["bad_id.py"]
    assert "is not an email address" in errors["bad_address.py"]
    assert "field 'email'" in errors["bad_address.py"]
    port = free_port()
    mail_settings(settings, port)
    with smtp_server(port) as inbox:
        async with start_engine() as h, outbox_running(h):
            await h.run("inject")
            await settled(h, "inject", count=1)
    [mail] = inbox.received
    assert mail.rcpt_tos == ["oncall@example.com"]
    assert "Bcc" not in mail.message and "evil" not in str(mail.message["To"])
    assert str(mail.message["Subject"]).startswith("[dagd] FAILED inject.breaks")
    headers = mail.raw.split(b"\r\n\r\n", 1)[0]
    assert b"pwned" not in headers and b"evil" not in headers


async def test_templates_from_the_configured_folder_replace_the_built_in_ones_sandboxed(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    tmp_path: Path,
) -> None:
    write_dag("one.py", """
        from dagd import DAG, task

        @task(email="oncall@example.com")
        async def breaks():
            raise RuntimeError("x")

        with DAG("one"):
            breaks()
    """)
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "subject.txt").write_text("{{ label }} in {{ dag_id }}: {{ task_id }}\r\nBcc: x\n")
    (folder / "body.txt").write_text("Custom: {{ error }} ({{ error_type }})\n")
    port = free_port()
    mail_settings(settings, port, templates_folder=folder)
    with smtp_server(port) as inbox:
        async with start_engine() as h, outbox_running(h):
            await h.run("one")
            [row] = await settled(h, "one", count=1)
            assert row.state == "sent"
            # A template that reaches for Python internals is refused by the sandbox.
            (folder / "body.txt").write_text("{{ error.__class__.__mro__[1].__subclasses__() }}")
            await h.run("one")
            rows = await settled(h, "one", count=2)
    [mail] = inbox.received
    assert str(mail.message["Subject"]) == "FAILED in one: breaks Bcc: x"  # one line
    assert "Bcc" not in [k for k, _ in mail.message.items()]
    assert mail.part("plain").strip() == "Custom: RuntimeError: x (RuntimeError)"
    assert "FAILED" in mail.part("html")  # the built-in HTML part, still there
    refused = rows[0]
    assert refused.state == "failed"
    assert "email template (templates_folder" in (refused.last_error or "")
    assert "SecurityError" in (refused.last_error or "")


async def test_a_slow_mail_server_does_not_slow_the_scheduler(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("burst.py", """
        from dagd import DAG, task

        @task
        async def fail():
            raise RuntimeError("down")

        @task
        async def quick():
            return 1

        with DAG("burst", default_args={"email": "oncall@example.com"}):
            for i in range(100):
                fail.override(task_id=f"t{i:03d}")()

        with DAG("quick"):
            quick()
    """)
    port = free_port()
    mail_settings(settings, port)
    inbox = Inbox(delay=0.05)  # 100 messages: 5 s of sending at least
    with smtp_server(port, inbox):
        async with start_engine() as h, outbox_running(h):
            await h.run("burst")
            await wait_until(lambda: len(inbox.received) >= 1, what="the sending begun")
            took = []
            for _ in range(5):
                started = anyio.current_time()
                _, state = await h.run("quick")
                assert state == "success"
                took.append(anyio.current_time() - started)
            assert len(inbox.received) < 100, "the runs were not measured while sending"
            await settled(h, "burst", count=100, deadline=60)
    assert max(took) < 1.0, took


async def test_no_answer_to_a_messages_data_is_not_sent_again_on_its_own(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    # The server takes the message, then answers after the deadline: it may have
    # accepted it, so a resend could deliver it twice; the row says so instead.
    write_dag("slow.py", """
        from dagd import DAG, task

        @task(email=["oncall@example.com"])
        async def breaks():
            raise RuntimeError("x")

        with DAG("slow"):
            breaks()
    """)
    port = free_port()
    email.configure(replace(mail_settings(settings, port), smtp_timeout=1.0,
                            smtp_deadline=2.0))
    inbox = Inbox(delay=3.0)
    with smtp_server(port, inbox):
        async with start_engine() as h, outbox_running(h):
            await h.run("slow")
            [row] = await settled(h, "slow", count=1)
    # One try, not one per retry: failed with why, for a person to decide.
    assert row.state == "failed" and row.attempts == 1
    assert "the server may have accepted it" in (row.last_error or "")
    assert "dagd notifications retry" in (row.last_error or "")
    assert len(inbox.received) <= 1
