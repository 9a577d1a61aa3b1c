"""The web UI of an Airflow DAG file: the DAG page shows its full `doc_md` as
preformatted text, and each `Label` on its edge; HTML or a script in either shows as
text, and the page keeps no inline script or style (the CSP would block them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from integration.harness import StartEngine
from integration.test_ui import XSS, XSS2, assert_clean, get, texts, ui

pytestmark = pytest.mark.anyio

DOC = f"""# Orders

Loads the **orders**, then reports.

- step one {XSS}
- step two {XSS2}
"""

AIRFLOW_DAG = f'''
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.utils.edgemodifier import Label

with DAG("orders", doc_md={DOC!r}) as dag:
    start = EmptyOperator(task_id="start")
    load = EmptyOperator(task_id="load")
    report = EmptyOperator(task_id="report")
    audit = EmptyOperator(task_id="audit")
    start >> Label("fresh data") >> load >> report
    start >> Label({XSS!r}) >> audit
    load.set_downstream(audit, edge_modifier=Label("a label well past eighteen characters"))
'''


async def test_the_dag_page_shows_doc_md_and_edge_labels_as_text(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("orders.py", AIRFLOW_DAG)
    async with start_engine() as h, ui(h) as (http, base):
        await h.run("orders")
        html = await get(http, f"{base}/dags/orders")
    page = assert_clean(html)
    assert XSS2 not in html  # escaped, as every value the page shows
    # The whole doc_md, as written (not rendered: no <h1>, no <strong>), in a <pre>.
    pres = [a for t, a in page.tags if t == "pre" and "data-doc" in a]
    assert len(pres) == 1 and pres[0]["class"] == "doc-text"
    assert DOC.strip() in "".join(page.text)
    assert "**orders**" in texts(page) and "<strong>" not in html
    # Each labelled edge has its text midway, the full text as its tooltip.
    labels = {(a["data-from"], a["data-to"]) for t, a in page.tags
              if t == "text" and a.get("class") == "edge-label"}
    assert labels == {("start", "load"), ("start", "audit"), ("load", "audit")}
    shown = texts(page)
    assert "fresh data" in shown and XSS in shown
    assert "a label well past eighteen characters" in shown  # the tooltip
    assert "a label well past…" in shown  # what is drawn
    edges = {(a["data-from"], a["data-to"]) for t, a in page.tags
             if t == "path" and a.get("class") == "edge"}
    assert edges == labels | {("load", "report")}
