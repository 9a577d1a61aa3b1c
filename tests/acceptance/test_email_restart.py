"""Email across a daemon's death: notifications owed when `dagd run` is killed (-9) are
sent after the restart, none twice; a daemon killed while sending repeats at most the
message in flight, with the same Message-ID; `dagd notifications list` and `retry`
against the running daemon."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from acceptance.harness import Dagd, table_rows
from integration.smtp_server import Inbox, free_port, smtp_server

pytestmark = pytest.mark.slow

FAILING = """
    from dagd import DAG, task

    @task(retries=0)
    async def fail():
        raise RuntimeError("the warehouse is down")

    with DAG("alerts", default_args={{"email": "oncall@example.com"}}):
        for i in range({count}):
            fail.override(task_id=f"load_{{i:02d}}")()
"""


def configure(dagd: Dagd, port: int) -> None:
    dagd.config.write_text(dagd.config.read_text() + (
        f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsender = "dagd@test.example"\n'
        "timeout = 5.0\ndeadline = 10.0\n\n"
        "[notifications]\nretry_delay = 0.2\nmax_attempts = 20\n"))


def write_dag(dagd: Dagd, count: int) -> None:
    import textwrap

    (dagd.dags_folder / "alerts.py").write_text(textwrap.dedent(FAILING.format(count=count)))


def states(dagd: Dagd) -> Counter[str]:
    return Counter(state for (state,) in dagd.query("SELECT state FROM notification"))


def test_emails_owed_at_a_kill_are_sent_after_the_restart_once(dagd: Dagd) -> None:
    port = free_port()
    configure(dagd, port)
    write_dag(dagd, 5)
    daemon = dagd.start()
    assert dagd.cli("trigger", "alerts").code == 0
    # The server is down: every email is owed and tried at least once.
    dagd.wait(lambda: dagd.query(
        "SELECT count(*) FROM notification WHERE state = 'pending' AND attempts >= 1")
        == [(5,)], timeout=30, what="five emails owed and tried")
    daemon.signal(signal.SIGKILL)
    daemon.wait_exit(10)
    with smtp_server(port) as inbox:
        dagd.start()
        dagd.wait(lambda: states(dagd) == Counter(sent=5), timeout=40,
                  what="the owed emails sent after the restart")
        ids = [str(m.message["Message-ID"]) for m in inbox.received]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert sorted(str(m.message["Subject"]).split(" run ")[0] for m in inbox.received) == [
        f"[dagd] FAILED alerts.load_{i:02d}" for i in range(5)]


def test_a_kill_while_sending_repeats_at_most_the_message_in_flight(dagd: Dagd) -> None:
    port = free_port()
    configure(dagd, port)
    write_dag(dagd, 20)
    inbox = Inbox(delay=0.25)  # a slow server: the kill lands mid-burst
    with smtp_server(port, inbox):
        daemon = dagd.start()
        assert dagd.cli("trigger", "alerts").code == 0
        dagd.wait(lambda: len(inbox.received) >= 5, timeout=30, what="five emails in")
        daemon.signal(signal.SIGKILL)
        daemon.wait_exit(10)
        assert 0 < len(inbox.received) < 20
        dagd.start()
        dagd.wait(lambda: states(dagd) == Counter(sent=20), timeout=60,
                  what="every email sent after the restart")
        received = list(inbox.received)
    ids = Counter(str(m.message["Message-ID"]) for m in received)
    assert len(ids) == 20  # every one arrived
    repeated = [mid for mid, n in ids.items() if n > 1]
    # At most the one in flight at the kill, and as the same message (same Message-ID).
    assert len(received) <= 21 and len(repeated) <= 1, ids


def test_notifications_list_and_retry_through_the_daemon(dagd: Dagd) -> None:
    port = free_port()
    configure(dagd, port)
    write_dag(dagd, 1)
    inbox = Inbox(refuse={"oncall@example.com": "550 5.1.1 <oncall@example.com>: mailbox "
                          "unavailable"})
    with smtp_server(port, inbox):
        daemon = dagd.start()
        assert dagd.cli("trigger", "alerts").code == 0
        dagd.wait(lambda: states(dagd) == Counter(failed=1), timeout=30,
                  what="the refused email failed")
        status, body = daemon.request("GET", "/api/v1/notifications?state=failed")
        assert status == 200 and [n["state"] for n in body["notifications"]] == ["failed"]
        assert body["notifications"][0]["payload"]["to"] == ["oncall@example.com"]
        status, body = daemon.request("GET", "/api/v1/notifications?state=lost")
        assert status == 422 and body["field"] == "state"
        listed = dagd.cli("notifications", "list", "--state", "failed")
        assert listed.code == 0, listed
        row = table_rows(listed.stdout)[0]  # its last error wraps onto a second line
        assert row[1] == "failed" and row[2] == "task_failed" and row[3] == "alerts"
        assert "550 5.1.1" in listed.stdout and "mailbox unavailable" in listed.stdout
        assert table_rows(dagd.cli("notifications", "list", "--state", "sent").stdout) == []
        inbox.refuse.clear()  # the mailbox is fixed
        retried = dagd.cli("notifications", "retry", row[0])
        assert retried.code == 0 and "owed again" in retried.stdout, retried
        dagd.wait(lambda: states(dagd) == Counter(sent=1), timeout=30,
                  what="the retried email sent")
        assert len(inbox.received) == 1
        again = dagd.cli("notifications", "retry", row[0])
        assert again.code == 1 and "only a failed one can be retried" in again.stderr
        missing = dagd.cli("notifications", "retry", "999")
        assert missing.code == 1 and "no notification 999" in missing.stderr


def test_notifications_list_and_retry_with_no_daemon_running(dagd: Dagd) -> None:
    port = free_port()
    configure(dagd, port)
    write_dag(dagd, 1)
    inbox = Inbox(refuse={"oncall@example.com": "550 5.1.1 mailbox unavailable"})
    with smtp_server(port, inbox):
        daemon = dagd.start()
        assert dagd.cli("trigger", "alerts").code == 0
        dagd.wait(lambda: states(dagd) == Counter(failed=1), timeout=30,
                  what="the refused email failed")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(20) == 0
        listed = dagd.cli("notifications", "list")  # read from the database
        assert listed.code == 0 and "550 5.1.1 mailbox unavailable" in listed.stdout, listed
        [(notification_id,)] = dagd.query("SELECT id FROM notification")
        retried = dagd.cli("notifications", "retry", str(notification_id))
        assert retried.code == 0 and "no daemon is running" in retried.stdout, retried
        assert states(dagd) == Counter(pending=1)
        inbox.refuse.clear()
        dagd.start()  # owed: sent once the daemon is up
        dagd.wait(lambda: states(dagd) == Counter(sent=1), timeout=30,
                  what="the email sent after the start")
    assert len(inbox.received) == 1
