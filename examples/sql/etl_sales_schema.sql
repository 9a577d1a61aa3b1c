-- The sales warehouse of examples/etl_sales.py (SQLite). Every statement is idempotent:
-- the DAG runs this file before each load.

-- One row per source file, keyed by the sha256 of its bytes: loading the same bytes
-- again replaces that file's rows instead of adding them twice.
CREATE TABLE IF NOT EXISTS loaded_files (
    sha256        TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    rows_read     INTEGER NOT NULL,
    rows_loaded   INTEGER NOT NULL,
    rows_rejected INTEGER NOT NULL,
    rejects_file  TEXT,
    dag_run_id    INTEGER NOT NULL,
    loaded_at     TEXT NOT NULL
);

-- The valid rows, typed and normalised. Amounts are whole cents: no float rounding.
CREATE TABLE IF NOT EXISTS sales (
    source_sha256 TEXT NOT NULL,
    source_line   INTEGER NOT NULL,
    order_id      TEXT NOT NULL,
    order_date    TEXT NOT NULL,
    region        TEXT NOT NULL,
    product       TEXT NOT NULL,
    quantity      INTEGER NOT NULL,
    amount_cents  INTEGER NOT NULL,
    PRIMARY KEY (source_sha256, order_id)
);
CREATE INDEX IF NOT EXISTS sales_by_day_region ON sales (order_date, region);

-- The aggregate per day and region, per source file.
CREATE TABLE IF NOT EXISTS daily_region_sales (
    source_sha256 TEXT NOT NULL,
    day           TEXT NOT NULL,
    region        TEXT NOT NULL,
    orders        INTEGER NOT NULL,
    units         INTEGER NOT NULL,
    revenue_cents INTEGER NOT NULL,
    PRIMARY KEY (source_sha256, day, region)
);

-- What a report reads: every loaded file summed per day and region.
CREATE VIEW IF NOT EXISTS daily_region_totals AS
    SELECT day, region, SUM(orders) AS orders, SUM(units) AS units,
           SUM(revenue_cents) / 100.0 AS revenue
    FROM daily_region_sales
    GROUP BY day, region;

-- One row per run that loaded something: what it read, loaded, rejected and replaced.
CREATE TABLE IF NOT EXISTS load_summary (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_run_id    INTEGER NOT NULL,
    started_by    TEXT NOT NULL,
    files         INTEGER NOT NULL,
    file_names    TEXT NOT NULL,
    rows_read     INTEGER NOT NULL,
    rows_loaded   INTEGER NOT NULL,
    rows_rejected INTEGER NOT NULL,
    rows_replaced INTEGER NOT NULL,
    written_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
