"""sd_notify messages as systemd reads them, and when the watchdog is ours to feed."""

from __future__ import annotations

import pytest

from dagd import systemd


def test_a_message_is_one_key_value_line_per_field_in_order() -> None:
    assert systemd.message(READY=1, STATUS="serving on http://127.0.0.1:8080 (3 DAGs)") == (
        "READY=1\nSTATUS=serving on http://127.0.0.1:8080 (3 DAGs)")
    assert systemd.message(RELOADING=1, MONOTONIC_USEC=123456789) == (
        "RELOADING=1\nMONOTONIC_USEC=123456789")


def test_a_newline_in_a_status_cannot_start_a_field_of_its_own() -> None:
    assert systemd.message(STATUS="loading\nREADY=1") == "STATUS=loading READY=1"


def test_without_a_notify_socket_nothing_is_sent() -> None:
    assert systemd.notify("READY=1", environ={}) is False
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": ""}) is False


SOCKET = {"NOTIFY_SOCKET": "/run/systemd/notify"}


@pytest.mark.parametrize(("env", "interval"), [
    ({**SOCKET, "WATCHDOG_USEC": "30000000"}, 15.0),  # WatchdogSec=30: every 15 s
    ({**SOCKET, "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "4242"}, 0.2),  # for us
    ({**SOCKET, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # for another
    ({**SOCKET, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
    ({**SOCKET, "WATCHDOG_USEC": "0"}, None),
    ({**SOCKET, "WATCHDOG_USEC": "soon"}, None),
    (SOCKET, None),  # no WatchdogSec=
    ({"WATCHDOG_USEC": "30000000"}, None),  # nowhere to send it
])
def test_the_watchdog_interval_is_half_the_timeout_for_our_pid_only(
    env: dict[str, str], interval: float | None
) -> None:
    assert systemd.watchdog_interval(env, pid=4242) == interval
