"""ML with scikit-learn: ingestion -> preprocessing -> training and evaluation of several
candidate models in parallel -> the best one deployed, only if it beats the model in
service.

    ingest -> preprocess.clean -> preprocess.split -> train[0] logistic_regression -+
                                                   -> train[1] random_forest       -+-> pick_best
                                                   -> train[2] gradient_boosting   -+
    pick_best -> decide (a branch) -> deploy | skip_deploy -> report

- Data: the wine recognition dataset (178 samples, 13 features, 3 classes; Forina et al.,
  UCI Machine Learning Repository, CC BY 4.0, as bundled with scikit-learn), shipped as
  `examples/data/samples/wine.csv`: nothing to download. (`wine_extra.csv` beside it is
  synthetic: 30 of those rows with a little seeded noise, for trying the file drop.)
  Every CSV with the same columns that was dropped into `DATA/ml_incoming/` and accepted
  joins the training data.
- Triggers: a CSV dropped into `DATA/ml_incoming/` (moved to `accepted/` when the run
  succeeds, `rejected/` when it fails: a file without the dataset's columns fails
  `ingest`); every Monday at 03:00; and `POST /hooks/retrain` with
  `Authorization: Bearer $DAGD_RETRAIN_TOKEN`, so another system can ask for retraining.
  A webhook's JSON body may override the params (`{"min_improvement": 0.01}`).
- Training: each candidate is an instance of the mapped task `train`, in its own worker
  process, with a fixed random_state. Its score is the macro F1 of a 5-fold stratified
  cross-validation on the training rows; the held-out rows (a stratified split, the same
  for every candidate) give its final test figures, kept in the model's metadata.
- Deployment: `decide` reads the `current` pointer (`DATA/models/current.json`) and
  follows `deploy` only if the best candidate's score beats the deployed model's by
  more than `min_improvement`; else `skip_deploy`. `deploy` writes `DATA/models/vNNNN/`
  (`model.pkl` and `metadata.json`, renamed into place whole) and then replaces the
  pointer with os.replace: a reader sees the old model or the new one, never half.
- DATA is `$DAGD_EXAMPLES_DATA`, or `examples/data` next to this file.

scikit-learn is optional (`pip install 'dagd[examples]'`): this file imports it only
inside `train`, so the DAG loads without it and `train` fails saying what to install.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import pickle
import random
import re
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagd import DAG, Cron, FileDrop, TaskGroup, Webhook, task

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("DAGD_EXAMPLES_DATA") or HERE / "data").resolve()
ML_INCOMING = DATA / "ml_incoming"
ACCEPTED = ML_INCOMING / "accepted"
MODELS = DATA / "models"
CURRENT = MODELS / "current.json"
STAGING = DATA / "staging" / "ml_training"
BASE_DATASET = HERE / "data" / "samples" / "wine.csv"

FEATURES = (
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
    "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
    "od280/od315_of_diluted_wines", "proline",
)
LABEL = "target"
CLASSES = (0, 1, 2)
CANDIDATES = ["logistic_regression", "random_forest", "gradient_boosting"]
METRIC = "f1_macro"
VERSION = re.compile(r"v(\d{4,})")
SKLEARN_MISSING = ("scikit-learn is not installed, and model training needs it: "
                   "pip install 'dagd[examples]' (or pip install scikit-learn)")


# -- helpers -------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV with the dataset's columns; a ValueError naming what is missing."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in (*FEATURES, LABEL) if c not in header]
        if missing:
            raise ValueError(f"{path.name} cannot be training data: it lacks the column(s) "
                             f"{', '.join(missing)} (the columns are those of {BASE_DATASET.name})")
        reader.fieldnames = header
        return [{c: row.get(c) or "" for c in (*FEATURES, LABEL)} for row in reader]


def dropped_file(conf: dict[str, Any]) -> Path | None:
    """The CSV that started this run, if any. Only files inside ML_INCOMING count: a
    webhook's body cannot point the run at an arbitrary file."""
    if not conf.get("path"):
        return None
    path = Path(str(conf["path"])).resolve()
    if not path.is_relative_to(ML_INCOMING):
        raise ValueError(f"conf path {str(path)!r} is not inside {ML_INCOMING}")
    return path


def write_json_atomically(path: Path, value: Any) -> None:
    """Write, flush to disk, then rename over `path`: readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_current() -> dict[str, Any] | None:
    """The deployed model's pointer, or None when nothing is deployed yet."""
    try:
        text = CURRENT.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        pointer: dict[str, Any] = json.loads(text)
        float(pointer["score"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{CURRENT} is not a valid model pointer ({exc}): fix or remove "
                         "it; it is never overwritten blindly") from None
    return pointer


def next_version() -> int:
    found = [int(m.group(1)) for p in MODELS.glob("v*") if (m := VERSION.fullmatch(p.name))]
    return max(found, default=0) + 1


def build_model(name: str, seed: int) -> Any:
    """A fresh, unfitted candidate. Small settings: the example must train in seconds."""
    if name == "logistic_regression":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000,
                                                                  random_state=seed))
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=50, random_state=seed, n_jobs=1)
    if name == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(n_estimators=50, max_depth=2, random_state=seed)
    raise ValueError(f"unknown model {name!r}; the candidates are {', '.join(CANDIDATES)}")


# -- ingestion -----------------------------------------------------------------------------
@task
def ingest(conf: dict[str, Any], run_id: int) -> dict[str, Any]:
    """The shipped dataset, every accepted extra file, and the file that started the run."""
    sources = [BASE_DATASET, *sorted(ACCEPTED.glob("*.csv"))]
    dropped = dropped_file(conf)
    if dropped is not None:
        read_table(dropped)  # a file without the right columns fails the run here
        sources.append(dropped)
    rows: list[dict[str, str]] = []
    used: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in sources:
        sha = sha256_of(path)
        if sha in seen:
            log.warning("%s: the same bytes as an earlier source: skipped", path.name)
            continue
        seen.add(sha)
        try:
            table = read_table(path)
        except ValueError as exc:  # an old accepted file that no longer fits
            log.warning("skipping %s", exc)
            continue
        rows.extend(table)
        used.append({"name": path.name, "rows": len(table), "sha256": sha})
        log.info("ingested %d row(s) from %s", len(table), path)
    run_dir = STAGING / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
    raw = run_dir / "raw.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(rows), encoding="utf-8")
    fingerprint = hashlib.sha256("".join(sorted(seen)).encode()).hexdigest()
    return {"run_dir": str(run_dir), "path": str(raw), "rows": len(rows), "sources": used,
            "fingerprint": fingerprint}


# -- preprocessing -------------------------------------------------------------------------
def parse_sample(row: dict[str, str]) -> tuple[list[float], int] | str:
    """(features, label), or the reason the row cannot be used."""
    try:
        x = [float(row[c]) for c in FEATURES]
    except ValueError:
        return "non-numeric feature"
    if not all(math.isfinite(v) for v in x):
        return "non-finite feature"
    label = row[LABEL].strip()
    if not label.isdigit() or int(label) not in CLASSES:
        return "unknown label"
    return x, int(label)


@task
def clean(raw: dict[str, Any]) -> dict[str, Any]:
    """Drop rows that cannot be used (reported by reason), and exact duplicates."""
    xs: list[list[float]] = []
    ys: list[int] = []
    dropped: dict[str, int] = {}
    seen: set[tuple[float, ...]] = set()
    for number, row in enumerate(json.loads(Path(raw["path"]).read_text(encoding="utf-8"))):
        parsed = parse_sample(row)
        if isinstance(parsed, str):
            dropped[parsed] = dropped.get(parsed, 0) + 1
            log.warning("row %d dropped: %s", number + 1, parsed)
            continue
        x, y = parsed
        key = (*x, float(y))
        if key in seen:
            dropped["duplicate"] = dropped.get("duplicate", 0) + 1
            continue
        seen.add(key)
        xs.append(x)
        ys.append(y)
    path = Path(raw["run_dir"]) / "clean.json"
    path.write_text(json.dumps({"X": xs, "y": ys}), encoding="utf-8")
    log.info("%d usable row(s); dropped: %s", len(ys), dropped or "none")
    return {"path": str(path), "rows": len(ys), "dropped": dropped}


@task
def split(cleaned: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A stratified train/test split from a fixed seed: every candidate sees the same."""
    data = json.loads(Path(cleaned["path"]).read_text(encoding="utf-8"))
    rng = random.Random(int(params["seed"]))
    fraction = float(params["test_fraction"])
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(data["y"]):
        by_class.setdefault(y, []).append(i)
    test: set[int] = set()
    for indices in by_class.values():
        rng.shuffle(indices)
        test.update(indices[: max(1, round(len(indices) * fraction))])
    parts: dict[str, dict[str, list[Any]]] = {"train": {"X": [], "y": []},
                                               "test": {"X": [], "y": []}}
    for i, (x, y) in enumerate(zip(data["X"], data["y"], strict=True)):
        part = parts["test" if i in test else "train"]
        part["X"].append(x)
        part["y"].append(y)
    path = Path(cleaned["path"]).with_name("split.json")
    path.write_text(json.dumps(parts), encoding="utf-8")
    counts = {str(c): len(v) for c, v in sorted(by_class.items())}
    log.info("train %d row(s), test %d row(s); per class %s", len(parts["train"]["y"]),
             len(parts["test"]["y"]), counts)
    return {"path": str(path), "train_rows": len(parts["train"]["y"]),
            "test_rows": len(parts["test"]["y"]), "class_counts": counts}


# -- training and evaluation ---------------------------------------------------------------
@task(isolation="process", execution_timeout=900)
def train(split: dict[str, Any], model_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Score one candidate by 5-fold cross-validation on the training rows (its `score`),
    fit it on all of them, and measure it once on the held-out rows."""
    try:
        import sklearn
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.model_selection import StratifiedKFold, cross_val_score
    except ImportError:
        raise RuntimeError(SKLEARN_MISSING) from None
    seed = int(params["seed"])
    data = json.loads(Path(split["path"]).read_text(encoding="utf-8"))
    x_train, y_train = data["train"]["X"], data["train"]["y"]
    started = time.perf_counter()
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    cv = cross_val_score(build_model(model_name, seed), x_train, y_train, cv=folds,
                         scoring=METRIC)
    model = build_model(model_name, seed).fit(x_train, y_train)
    seconds = time.perf_counter() - started
    predicted = model.predict(data["test"]["X"])
    truth = data["test"]["y"]
    metrics = {
        f"cv_{METRIC}": round(float(cv.mean()), 6),
        f"cv_{METRIC}_std": round(float(cv.std()), 6),
        f"test_{METRIC}": round(float(f1_score(truth, predicted, average="macro")), 6),
        "test_accuracy": round(float(accuracy_score(truth, predicted)), 6),
    }
    artifact = Path(split["path"]).with_name(f"{model_name}.pkl")
    artifact.write_bytes(pickle.dumps(model))
    # What deploy will ship must load and predict the same: check it here, once.
    reloaded = pickle.loads(artifact.read_bytes())
    if list(reloaded.predict(data["test"]["X"])) != list(predicted):
        raise RuntimeError(f"{artifact} does not predict like the model it was saved from")
    log.info("%s: cv %s=%.4f (+/- %.4f), test %s=%.4f, accuracy=%.4f (%.2fs)", model_name,
             METRIC, metrics[f"cv_{METRIC}"], metrics[f"cv_{METRIC}_std"], METRIC,
             metrics[f"test_{METRIC}"], metrics["test_accuracy"], seconds)
    return {"model_name": model_name, "score": metrics[f"cv_{METRIC}"],
            "metric": f"cv_{METRIC}", "metrics": metrics, "artifact": str(artifact),
            "seconds": round(seconds, 3), "sklearn_version": sklearn.__version__}


@task
async def pick_best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest score wins; a tie goes to the simpler model (earlier in CANDIDATES)."""
    board = sorted(results, key=lambda r: (-r["score"], CANDIDATES.index(r["model_name"])))
    for rank, r in enumerate(board, 1):
        log.info("#%d %s %s=%.4f", rank, r["model_name"], r["metric"], r["score"])
    return {"best": board[0],
            "leaderboard": [{"model_name": r["model_name"], "score": r["score"]} for r in board]}


# -- deployment ----------------------------------------------------------------------------
@task.branch
def decide(picked: dict[str, Any], params: dict[str, Any]) -> str:
    """Follow `deploy` only if the best candidate beats the deployed model."""
    best, current = picked["best"], read_current()
    margin = float(params["min_improvement"])
    if current is None:
        log.info("no model deployed yet: deploying %s (%.4f)", best["model_name"], best["score"])
        return "deploy"
    if best["score"] > float(current["score"]) + margin:
        log.info("%s (%.4f) beats %s %s (%.4f) by more than %g: deploying",
                 best["model_name"], best["score"], current["version"],
                 current["model_name"], current["score"], margin)
        return "deploy"
    log.info("%s (%.4f) does not beat %s %s (%.4f) by more than %g: keeping it",
             best["model_name"], best["score"], current["version"], current["model_name"],
             current["score"], margin)
    return "skip_deploy"


@task
def deploy(picked: dict[str, Any], ingested: dict[str, Any], run_id: int,
           dag_id: str) -> dict[str, Any]:
    """Write models/vNNNN/ (model.pkl + metadata.json) whole, then move the pointer."""
    best = picked["best"]
    MODELS.mkdir(parents=True, exist_ok=True)
    previous = read_current()
    tmp = MODELS / f".incoming-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    shutil.copyfile(best["artifact"], tmp / "model.pkl")
    metadata = {
        "model_name": best["model_name"], "metric": best["metric"], "score": best["score"],
        "metrics": best["metrics"], "leaderboard": picked["leaderboard"],
        "features": list(FEATURES), "label": LABEL, "classes": list(CLASSES),
        "trained_on": {"rows": ingested["rows"], "sources": ingested["sources"],
                       "fingerprint": ingested["fingerprint"]},
        "sklearn_version": best["sklearn_version"], "dag_id": dag_id, "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "previous_version": previous["version"] if previous else None,
    }
    write_json_atomically(tmp / "metadata.json", metadata)
    while True:  # claim the next free version name; rename fails if it is taken
        version = f"v{next_version():04d}"
        target = MODELS / version
        try:
            os.rename(tmp, target)
            break
        except OSError:
            if not target.exists():
                raise
    pointer = {"version": version, "path": str(target / "model.pkl"),
               "metadata": str(target / "metadata.json"), "model_name": best["model_name"],
               "metric": best["metric"], "score": best["score"], "run_id": run_id,
               "deployed_at": metadata["created_at"]}
    write_json_atomically(CURRENT, pointer)
    log.info("deployed %s %s (%s=%.4f) at %s; current -> %s", version, best["model_name"],
             best["metric"], best["score"], target, version)
    return pointer


@task
def skip_deploy(picked: dict[str, Any]) -> dict[str, Any]:
    """Nothing to do but say what stays in service."""
    current = read_current() or {}
    return {"kept": current.get("version"), "kept_score": current.get("score"),
            "candidate": picked["best"]["model_name"], "candidate_score": picked["best"]["score"]}


@task(trigger_rule="none_failed_min_one_success")
def report(picked: dict[str, Any], deployed: dict[str, Any] | None,
           kept: dict[str, Any] | None, ingested: dict[str, Any]) -> dict[str, Any]:
    """The run's outcome in one XCom; the run's staging files are removed."""
    shutil.rmtree(ingested["run_dir"], ignore_errors=True)
    in_service = deployed["version"] if deployed else (kept or {}).get("kept")
    outcome = {"deployed": deployed is not None, "version": in_service,
               "best": picked["best"]["model_name"], "score": picked["best"]["score"],
               "leaderboard": picked["leaderboard"]}
    log.info("%s; in service: %s", "deployed" if deployed else "not deployed", in_service)
    return outcome


with DAG(
    "ml_training",
    description="wine classifier: ingest -> preprocess -> train candidates -> deploy the best",
    triggers=[
        FileDrop(str(ML_INCOMING), pattern="*.csv", stable_for=1.0,
                 on_success="move:accepted/", on_failure="move:rejected/"),
        Cron("0 3 * * 1"),
        Webhook("retrain", auth="bearer", secret_env="DAGD_RETRAIN_TOKEN"),
    ],
    params={"min_improvement": 0.0, "test_fraction": 0.25, "seed": 42},
    # Light file I/O runs in threads; `train` asks for a worker process of its own.
    default_args={"isolation": "thread", "execution_timeout": 600},
    max_active_runs=1,  # one training at a time: runs queue up
    tags=["example", "ml"],
) as ml_training:
    ingested = ingest()
    with TaskGroup("preprocess"):
        prepared = split(clean(ingested))
    results = train.partial(split=prepared).expand(model_name=CANDIDATES)
    picked = pick_best(results)
    deployed = deploy(picked, ingested)
    kept = skip_deploy(picked)
    decide(picked) >> [deployed, kept]
    report(picked, deployed, kept, ingested)
