"""A dagd plugin: notifications posted to a chat webhook in Slack's message format.

Slack incoming webhooks (and Mattermost, Rocket.Chat, Discord's /slack endpoint)
accept it. The webhook URL is a secret: it comes from an environment variable, never
from the DAG file.

    from dagd import DAG
    from dagd.plugins import SlackNotifier

    with DAG("etl", notifiers=[SlackNotifier(url_env="SLACK_WEBHOOK_URL",
                                             on=("run_failed", "task_retry"))]):
        ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import aiohttp

from dagd.notify.base import Notification, Notifier

ICONS = {
    "run_success": ":white_check_mark:",
    "run_failed": ":x:",
    "task_failed": ":x:",
    "task_retry": ":repeat:",
}


class SlackNotifier(Notifier):
    """Post each notification to a Slack-compatible incoming webhook."""

    kind = "slack"

    def __init__(
        self,
        *,
        url_env: str = "SLACK_WEBHOOK_URL",
        channel: str | None = None,
        username: str = "dagd",
        name: str | None = None,
        on: Iterable[str] = ("run_failed", "task_failed"),
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name=name, on=on)
        self.url_env = url_env
        self.channel = channel
        self.username = username
        self.timeout = timeout

    def message(self, n: Notification) -> dict[str, Any]:
        """The Slack message: a fallback `text` and blocks with the details."""
        icon = ICONS.get(n.event, ":information_source:")
        fields = [f"*DAG* `{n.dag_id}`", f"*Run* {n.run_id}"]
        if n.task_id:
            fields.append(f"*Task* `{n.task_id}` (try {n.try_number})")
        if n.at:
            fields.append(f"*At* {n.at}")
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{n.title}*"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        ]
        if n.error:
            blocks.append({"type": "section",
                           "text": {"type": "mrkdwn", "text": f"```{n.error[:2800]}```"}})
        message: dict[str, Any] = {"text": f"{icon} {n.text}", "blocks": blocks,
                                   "username": self.username}
        if self.channel:
            message["channel"] = self.channel
        return message

    async def send(self, notification: Notification) -> None:
        url = os.environ.get(self.url_env)
        if not url:
            raise RuntimeError(f"environment variable {self.url_env} (the webhook URL) is not set")
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
            url, json=self.message(notification)
        ) as response:
            if response.status >= 300:
                body = (await response.text())[:200]
                raise RuntimeError(f"webhook answered {response.status}: {body}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url_env": self.url_env, "channel": self.channel}
