"""An ML pipeline: ingestion -> preprocessing -> training and evaluation -> deployment.

Each step waits for the one before and hands its result (a small JSON value) to the
next. The model is a least-squares line fitted to a dataset generated from a fixed seed,
so the example runs anywhere with nothing to download. Artifacts are written under
$DAGD_EXAMPLES_OUT (default: .dagd/examples/ml).
"""

from __future__ import annotations

import json
import os
import random
import statistics
from pathlib import Path

from dagd import dag, task

OUT = Path(os.environ.get("DAGD_EXAMPLES_OUT", ".dagd/examples")) / "ml"


@task(retries=2, retry_delay=1, retry_exponential_backoff=True)
def ingest(run_id: int) -> dict:
    """Data ingestion: write the raw dataset for this run."""
    rng = random.Random(42)
    xs = [rng.uniform(0, 50) for _ in range(500)]
    rows = [(x, 3.0 * x + 7.0 + rng.gauss(0, 2.0)) for x in xs]
    path = OUT / f"run_{run_id}" / "raw.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    print(f"ingested {len(rows)} rows into {path}")
    return {"path": str(path), "rows": len(rows)}


@task
def preprocess(raw: dict) -> dict:
    """Preprocessing: drop outliers, split into train and test sets."""
    rows = json.loads(Path(raw["path"]).read_text())
    ys = [y for _, y in rows]
    mean, sd = statistics.fmean(ys), statistics.pstdev(ys)
    clean = [(x, y) for x, y in rows if abs(y - mean) <= 3 * sd]
    cut = int(len(clean) * 0.8)
    out = Path(raw["path"]).with_name("split.json")
    out.write_text(json.dumps({"train": clean[:cut], "test": clean[cut:]}))
    print(f"kept {len(clean)} of {len(rows)} rows; {cut} for training")
    return {"path": str(out), "dropped": len(rows) - len(clean)}


@task
def train_and_evaluate(split: dict) -> dict:
    """Training and evaluation: fit y = a*x + b, score R^2 on the held-out rows."""
    data = json.loads(Path(split["path"]).read_text())
    xs, ys = zip(*data["train"], strict=True)
    slope, intercept = statistics.linear_regression(xs, ys)
    test = data["test"]
    mean = statistics.fmean(y for _, y in test)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in test)
    ss_tot = sum((y - mean) ** 2 for _, y in test)
    r2 = 1 - ss_res / ss_tot
    print(f"model: y = {slope:.3f} x + {intercept:.3f}, R^2 on test = {r2:.4f}")
    return {"slope": slope, "intercept": intercept, "r2": r2}


@task
def deploy(model: dict, run_id: int) -> dict:
    """Deployment: write the model as a versioned artifact if it is good enough."""
    if model["r2"] < 0.9:
        raise ValueError(f"model R^2 {model['r2']:.3f} is below 0.9: not deploying")
    target = OUT / "models" / f"model_run_{run_id}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(model))
    print(f"deployed {target}")
    return {"artifact": str(target)}


@dag(description="ingest -> preprocess -> train and evaluate -> deploy", tags=["example", "ml"])
def ml_pipeline() -> None:
    deploy(train_and_evaluate(preprocess(ingest())))


ml_pipeline()
