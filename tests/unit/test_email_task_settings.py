"""EmailTask as a DAG file writes it (Airflow's EmailOperator names too): literal
addresses checked at load, a subject that is one line, a body or html; each refusal names
the DAG, task and field."""

from __future__ import annotations

from typing import Any

import pytest

from dagd import DAG, DagDefinitionError, EmailTask


def build(**kwargs: Any) -> EmailTask:
    with DAG("mail"):
        return EmailTask(task_id="send", **{"to": "team@example.com", "subject": "hi",
                                            "body": "text", **kwargs})


def test_airflows_names_and_address_lists_are_accepted() -> None:
    task = build(to="a@example.com; b@example.com, c@example.com", body=None,
                 html_content="<p>hi</p>", files=["/tmp/report.csv"], cc="{{ conf.cc }}")
    assert task.to == ["a@example.com", "b@example.com", "c@example.com"]
    assert task.cc == ["{{ conf.cc }}"]  # templated: checked once rendered
    assert task.html == "<p>hi</p>" and task.attachments == ["/tmp/report.csv"]
    assert task.describe()["kind"] == "email"


@pytest.mark.parametrize("kwargs, field, words", [
    ({"to": "not-an-address"}, "to", "'not-an-address' is not an email address"),
    ({"to": []}, "to", "to names no address"),
    ({"bcc": ["ok@example.com", "a@b@c"]}, "bcc", "'a@b@c' is not an email address"),
    ({"to": 42}, "to", "to must be an email address"),
    ({"subject": "hi\nBcc: evil@example.com"}, "subject", "subject must be one line"),
    ({"subject": ""}, "subject", "subject must be a non-empty string"),
    ({"body": None}, "body", "give body (plain text), html, or both"),
    ({"html": "a", "html_content": "b"}, "html_content", "not both"),
    ({"attachments": ["a"], "files": ["b"]}, "files", "not both"),
    ({"attachments": [3]}, "attachments", "must be a list of file paths"),
    ({"max_attachment_bytes": 0}, "max_attachment_bytes", "positive whole number"),
    ({"custom_headers": {"Bcc": "x@example.com"}}, "custom_headers", "set by the task"),
    ({"custom_headers": {"X-A": "one\r\nBcc: x@example.com"}}, "custom_headers",
     "must be one line"),
    ({"custom_headers": {"X A": "v"}}, "custom_headers", "is not a header name"),
    ({"mime_charset": "latin-1"}, "mime_charset", "dagd sends UTF-8"),
    ({"mime_subtype": "alternative"}, "mime_subtype", "multipart/mixed"),
])
def test_bad_settings_are_refused_naming_the_field(kwargs: dict[str, Any], field: str,
                                                   words: str) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        build(**kwargs)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert "DAG 'mail', task 'send'" in str(caught.value)
