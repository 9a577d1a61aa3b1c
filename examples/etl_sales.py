"""ETL: sales CSV files -> validated, typed, aggregated -> a SQLite warehouse.

Drop a CSV (columns: order_id, order_date, region, product, quantity, amount) into
`examples/data/incoming/`: a run starts once the file has stopped changing, and when the
run ends the file is moved to `incoming/processed/` (success) or `incoming/failed/`
(failure). Every day at 02:00 a run also sweeps the folder and loads whatever is still
in it (files that arrived while the DAG was paused, say). A run triggered by hand with
no conf sweeps the same way; with conf `{"path": "/some/file.csv"}` it loads that file.

    extract -> anything_to_load -+-> validate -> transform -+-> load -> write_summary
                                 +-> create_tables ----------+

- Bad rows are never dropped silently. Each one goes, with its line number and reason,
  into `DATA/rejects/<name>.<sha>.rejects.csv`; `validate` logs it as a warning and
  counts it (by reason) in its XCom. A file with more than `max_reject_fraction` bad
  rows fails the run, and nothing of it is loaded.
- Loading is idempotent: rows are keyed by the sha256 of the source file's bytes, so
  loading the same file again replaces its rows (in one transaction). A corrected file
  is new bytes: it is loaded beside the old one.
- DATA is `$DAGD_EXAMPLES_DATA`, or `examples/data` next to this file. The warehouse is
  `DATA/warehouse.db`; its schema is `sql/etl_sales_schema.sql`.

The steps do file and SQLite I/O on modest files, so they run in threads
(`isolation="thread"`): no worker process to start. A step that turns CPU-heavy belongs
in a worker process, the default for sync functions.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import uuid
from collections import Counter
from contextlib import closing
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from dagd import DAG, Cron, FileDrop, SqlTask, task

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("DAGD_EXAMPLES_DATA") or HERE / "data").resolve()
INCOMING = DATA / "incoming"
REJECTS = DATA / "rejects"
STAGING = DATA / "staging" / "etl_sales"
WAREHOUSE = DATA / "warehouse.db"
WAREHOUSE_URL = f"sqlite:///{WAREHOUSE}"  # an absolute path: sqlite:////...

COLUMNS = ("order_id", "order_date", "region", "product", "quantity", "amount")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


# -- helpers (plain functions: the tasks below call them) ---------------------------------
def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def files_to_read(conf: dict[str, Any]) -> tuple[str, list[Path]]:
    """Who started the run, and the CSV files it is about."""
    if conf.get("path"):  # one dropped file, or a trigger by hand naming one
        return "file", [Path(conf["path"])]
    if conf.get("files"):  # a FileDrop in batch mode
        return "file", [Path(f["path"]) for f in conf["files"]]
    # A timer run (or a trigger by hand with no file): whatever is in the folder now.
    return "sweep", sorted(p for p in INCOMING.glob("*.csv") if p.is_file())


def parse_csv(name: str, data: bytes) -> list[dict[str, Any]]:
    """The data rows with their line numbers. A file without the expected columns (or
    not UTF-8) is refused as a whole: no row of it can be trusted."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not UTF-8 text ({exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{name}: missing column(s) {', '.join(missing)}; the header must "
                         f"have {', '.join(COLUMNS)} (found: {', '.join(header) or 'none'})")
    reader.fieldnames = header
    rows = []
    for record in reader:
        extra = record.pop(None, None)  # fields past the header
        rows.append({"line": reader.line_num, "fields": record, "extra": extra or []})
    return rows


def parse_amount(value: str) -> Decimal | None:
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def parse_date(value: str) -> date | None:
    value = value.strip()
    if not ISO_DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:  # 2026-11-31, 2026-13-01
        return None


def check_row(row: dict[str, Any], seen: dict[str, int]) -> tuple[str, str] | None:
    """(reason, detail) if the row is bad, else None. `seen`: order ids -> first line."""
    fields: dict[str, str | None] = row["fields"]
    missing = [c for c in COLUMNS if not (fields.get(c) or "").strip()]
    if missing:
        return "missing field", f"{', '.join(missing)} empty or missing"
    values = {c: str(fields[c]).strip() for c in COLUMNS}
    if row["extra"]:
        return "extra fields", f"{len(row['extra'])} field(s) more than the header"
    amount = parse_amount(values["amount"])
    if amount is None:
        return "non-numeric amount", f"amount {values['amount']!r} is not a number"
    if amount < 0:
        return "negative amount", f"amount {values['amount']!r} is negative"
    if not values["quantity"].isdigit() or int(values["quantity"]) == 0:
        return "bad quantity", f"quantity {values['quantity']!r} is not a whole number >= 1"
    if parse_date(values["order_date"]) is None:
        return "bad date", f"order_date {values['order_date']!r} is not a valid YYYY-MM-DD date"
    first = seen.setdefault(values["order_id"], row["line"])
    if first != row["line"]:
        return "duplicate order_id", f"order_id {values['order_id']!r} is already on line {first}"
    return None


def write_rejects(name: str, sha256: str, bad: list[tuple[dict[str, Any], str]]) -> Path:
    """The rejected rows as they were read, each with its line number and reason."""
    path = REJECTS / f"{Path(name).stem}.{sha256[:12]}.rejects.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "reason", *COLUMNS])
        for row, reason in bad:
            writer.writerow([row["line"], reason, *(row["fields"].get(c) for c in COLUMNS)])
    return path


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    """Typed and tidied: one spelling per region and product, amounts in whole cents."""
    f = {c: str(row["fields"][c]).strip() for c in COLUMNS}
    cents = (Decimal(f["amount"]) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return {
        "source_line": row["line"],
        "order_id": f["order_id"],
        "order_date": f["order_date"],
        "region": " ".join(f["region"].split()).title(),
        "product": " ".join(f["product"].split()).lower(),
        "quantity": int(f["quantity"]),
        "amount_cents": int(cents),
    }


def aggregate(sales: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Orders, units and revenue per (day, region)."""
    totals: dict[tuple[str, str], Counter[str]] = {}
    for s in sales:
        t = totals.setdefault((s["order_date"], s["region"]), Counter())
        t["orders"] += 1
        t["units"] += s["quantity"]
        t["revenue_cents"] += s["amount_cents"]
    return [{"day": day, "region": region, **counts}
            for (day, region), counts in sorted(totals.items())]


# -- the tasks ---------------------------------------------------------------------------
@task
def extract(conf: dict[str, Any], run_id: int) -> dict[str, Any]:
    """Read each file once, key it by the sha256 of its bytes, stage its rows."""
    started_by, paths = files_to_read(conf)
    run_dir = STAGING / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
    files: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in paths:
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        if conf.get("sha256") and conf["sha256"] != sha256:
            # The rows loaded are the bytes read now; the key says so.
            log.warning("%s changed since it was dropped: loading what it holds now", path)
        if sha256 in seen:
            log.warning("%s: the same bytes as another file of this run: skipped", path.name)
            continue
        seen.add(sha256)
        rows = parse_csv(path.name, data)
        staged = run_dir / f"{sha256[:16]}.raw.json"
        write_json(staged, rows)
        log.info("extracted %d row(s) from %s (sha256 %s)", len(rows), path, sha256[:12])
        files.append({"name": path.name, "path": str(path), "sha256": sha256,
                      "rows": len(rows), "staged": str(staged)})
    return {"started_by": started_by, "run_dir": str(run_dir), "files": files}


@task.short_circuit
async def anything_to_load(extracted: dict[str, Any]) -> bool:
    """A sweep of an empty folder skips the rest of the run."""
    if not extracted["files"]:
        log.info("no CSV file to load in %s", INCOMING)
    return bool(extracted["files"])


@task
def validate(extracted: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Check every row; report each bad one (rejects file, log, XCom counts); fail the
    run if a file has more than `max_reject_fraction` bad rows."""
    limit = float(params["max_reject_fraction"])
    checked, too_bad = [], []
    for f in extracted["files"]:
        rows = read_json(f["staged"])
        good: list[dict[str, Any]] = []
        bad: list[tuple[dict[str, Any], str]] = []
        reasons: Counter[str] = Counter()
        seen: dict[str, int] = {}
        for row in rows:
            problem = check_row(row, seen)
            if problem is None:
                good.append(row)
                continue
            reason, detail = problem
            reasons[reason] += 1
            bad.append((row, f"{reason}: {detail}"))
            log.warning("%s line %d rejected: %s: %s", f["name"], row["line"], reason, detail)
        rejects = write_rejects(f["name"], f["sha256"], bad) if bad else None
        valid = Path(f["staged"]).with_suffix(".valid.json")
        write_json(valid, good)
        fraction = len(bad) / len(rows) if rows else 0.0
        log.info("%s: %d valid, %d rejected (%.1f%%)%s", f["name"], len(good), len(bad),
                 100 * fraction, f"; rejects in {rejects}" if rejects else "")
        if fraction > limit:
            too_bad.append(f"{f['name']}: {len(bad)} of {len(rows)} rows are bad "
                           f"({fraction:.0%} > max_reject_fraction {limit:.0%}), "
                           f"see {rejects}")
        checked.append({**f, "valid": len(good), "rejected": len(bad),
                        "reasons": dict(sorted(reasons.items())),
                        "rejects_file": str(rejects) if rejects else None,
                        "valid_staged": str(valid)})
    if too_bad:
        raise ValueError("too many bad rows, nothing loaded: " + "; ".join(too_bad))
    return {
        "files": checked,
        "rows": sum(f["rows"] for f in checked),
        "valid": sum(f["valid"] for f in checked),
        "rejected": sum(f["rejected"] for f in checked),
    }


@task
def transform(validated: dict[str, Any]) -> dict[str, Any]:
    """Type and normalise the valid rows; aggregate them per day and region."""
    out = []
    for f in validated["files"]:
        sales = [normalise(row) for row in read_json(f["valid_staged"])]
        daily = aggregate(sales)
        staged = Path(f["staged"]).with_suffix(".transformed.json")
        write_json(staged, {"sales": sales, "daily": daily})
        log.info("%s: %d sale(s) in %d day/region group(s)", f["name"], len(sales), len(daily))
        out.append({k: f[k] for k in ("name", "sha256", "rows", "valid", "rejected",
                                      "reasons", "rejects_file")}
                   | {"groups": len(daily), "transformed": str(staged)})
    return {"files": out}


@task(retries=3, retry_delay=2, retry_exponential_backoff=True,
      retry_on=sqlite3.OperationalError)  # "database is locked": another writer
def load(transformed: dict[str, Any], extracted: dict[str, Any], run_id: int) -> dict[str, Any]:
    """Replace each file's rows in the warehouse, all files in one transaction."""
    replaced = loaded = 0
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with closing(sqlite3.connect(WAREHOUSE, timeout=30, isolation_level=None)) as db, db:
        db.execute("BEGIN IMMEDIATE")
        for f in transformed["files"]:
            staged = read_json(f["transformed"])
            sha = f["sha256"]
            replaced += db.execute("DELETE FROM sales WHERE source_sha256 = ?", (sha,)).rowcount
            db.execute("DELETE FROM daily_region_sales WHERE source_sha256 = ?", (sha,))
            db.executemany(
                "INSERT INTO sales (source_sha256, source_line, order_id, order_date, region,"
                " product, quantity, amount_cents) VALUES (:sha, :source_line, :order_id,"
                " :order_date, :region, :product, :quantity, :amount_cents)",
                [{"sha": sha, **s} for s in staged["sales"]],
            )
            db.executemany(
                "INSERT INTO daily_region_sales (source_sha256, day, region, orders, units,"
                " revenue_cents) VALUES (:sha, :day, :region, :orders, :units, :revenue_cents)",
                [{"sha": sha, **d} for d in staged["daily"]],
            )
            db.execute(
                "INSERT OR REPLACE INTO loaded_files (sha256, name, rows_read, rows_loaded,"
                " rows_rejected, rejects_file, dag_run_id, loaded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sha, f["name"], f["rows"], len(staged["sales"]), f["rejected"],
                 f["rejects_file"], run_id, now),
            )
            loaded += len(staged["sales"])
    log.info("loaded %d row(s) from %d file(s) into %s; %d earlier row(s) replaced",
             loaded, len(transformed["files"]), WAREHOUSE, replaced)
    shutil.rmtree(extracted["run_dir"], ignore_errors=True)  # committed: staging is done
    return {
        "started_by": extracted["started_by"],
        "files": len(transformed["files"]),
        "file_names": [f["name"] for f in transformed["files"]],
        "rows_read": sum(f["rows"] for f in transformed["files"]),
        "rows_loaded": loaded,
        "rows_rejected": sum(f["rejected"] for f in transformed["files"]),
        "rows_replaced": replaced,
    }


with DAG(
    "etl_sales",
    description="sales CSV -> validate -> transform -> SQLite warehouse, with a summary row",
    triggers=[
        FileDrop(str(INCOMING), pattern="*.csv", stable_for=1.0,
                 on_success="move:processed/", on_failure="move:failed/"),
        Cron("0 2 * * *"),
    ],
    params={"max_reject_fraction": 0.2},
    default_args={"isolation": "thread", "execution_timeout": 600},
    tags=["example", "etl"],
) as etl_sales:
    extracted = extract()
    go = anything_to_load(extracted)
    validated = validate(extracted)
    create_tables = SqlTask(task_id="create_tables", conn=WAREHOUSE_URL,
                            sql="sql/etl_sales_schema.sql", fetch="none")
    loaded = load(transform(validated), extracted)
    go >> [validated, create_tables]
    create_tables >> loaded
    summary = SqlTask(
        task_id="write_summary",
        conn=WAREHOUSE_URL,
        sql=[
            "INSERT INTO load_summary (dag_run_id, started_by, files, file_names, rows_read,"
            " rows_loaded, rows_rejected, rows_replaced) VALUES (:run_id, :started_by,"
            " :files, :file_names, :rows_read, :rows_loaded, :rows_rejected, :rows_replaced)",
            "SELECT * FROM load_summary WHERE id = last_insert_rowid()",
        ],
        parameters={
            "run_id": "{{ run_id }}",
            "started_by": "{{ upstream.load.started_by }}",
            "files": "{{ upstream.load.files }}",
            "file_names": "{{ upstream.load.file_names | tojson }}",
            "rows_read": "{{ upstream.load.rows_read }}",
            "rows_loaded": "{{ upstream.load.rows_loaded }}",
            "rows_rejected": "{{ upstream.load.rows_rejected }}",
            "rows_replaced": "{{ upstream.load.rows_replaced }}",
        },
        fetch="one",
    )
    loaded >> summary
