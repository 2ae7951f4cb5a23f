"""Export: write the served artifact and its model card, then record the run in MLflow.

The card is the contract the API reads: the artifact's sha256 (checked before every load), the
feature contract it builds its request schema from, the calibrated prediction intervals it serves
with every price, the metrics, and the library versions the artifact needs. Everything in it is
deterministic; times, hosts and run ids belong to MLflow.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn

from artifact import CARD_NAME, CARD_SCHEMA, PROFILE_NAME, model_version, sha256_of
from conformal import Intervals
from stages.contract import FEATURES, TARGET
from stages.families import LINEAR
from stages.files import load_params, read_json, read_table, write_json
from stages.profile import build_profile


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def model_card(
    *,
    artifact: Path,
    tune_report: dict[str, Any],
    evaluate_report: dict[str, Any],
    alpha: float,
    train_md5: str,
    profile_sha256: str,
    intervals: Intervals,
) -> dict[str, Any]:
    """The card for `artifact`; model_version is derived from its sha256, so it is reproducible.

    `intervals` is what the service applies (Intervals.from_dict reads it back); how they did on
    the test split sits beside the other test figures, under metrics.
    """
    sha256 = sha256_of(artifact)
    best = tune_report["best"]
    used = tune_report["features"]
    hyperparameters = dict(best["best_params"])
    if best["family"] in LINEAR:
        hyperparameters["alpha"] = alpha
    return {
        "schema_version": CARD_SCHEMA,
        "model_version": model_version(sha256),
        "artifact": {"file": artifact.name, "format": "joblib", "sha256": sha256},
        "reference_profile": {"file": PROFILE_NAME, "sha256": profile_sha256},
        "family": best["family"],
        "hyperparameters": dict(sorted(hyperparameters.items())),
        "model_inputs": used,
        "features": [{**column.as_dict(), "used": column.name in used} for column in FEATURES],
        "target": {**TARGET.as_dict(), "censored_at": TARGET.maximum},
        "training_data": {"md5": train_md5, "rows": tune_report["cv"]["train_rows"]},
        "intervals": intervals.as_dict(),
        "metrics": {
            "cv": evaluate_report["cv"],
            "test": evaluate_report["test"],
            "intervals": evaluate_report["intervals"],
        },
        "libraries": {
            "python": ".".join(platform.python_version_tuple()[:2]),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
    }


def reference_profile(
    predictions: np.ndarray,
    train: pd.DataFrame,
    features: list[str],
    params: dict[str, Any],
    version: str,
) -> dict[str, Any]:
    """The profile monitoring compares live traffic with: model inputs and the out-of-fold
    predictions calibrate wrote (in-sample ones would be tighter than any on new houses, and the
    drift test would then cry wolf)."""
    return build_profile(
        {name: train[name].to_numpy(dtype=np.float64) for name in features},
        categorical={column.name for column in FEATURES if column.kind != "float"},
        predictions=predictions,
        model_version=version,
        bins=params["monitoring"]["reference_bins"],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tuned", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--tune-report", type=Path, required=True)
    parser.add_argument("--evaluate-report", type=Path, required=True)
    parser.add_argument("--intervals", type=Path, required=True, help="calibrate's intervals")
    parser.add_argument("--oof", type=Path, required=True, help="calibrate's out-of-fold CSV")
    parser.add_argument("--plots", type=Path, nargs="+", required=True)
    parser.add_argument("--trials", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--model-file", required=True, help="the artifact's name in --model-dir")
    args = parser.parse_args(argv)
    params = load_params("export")

    evaluate_report = read_json(args.evaluate_report)
    if not evaluate_report["gate"]["passed"]:
        sys.exit("export: the evaluated model failed the quality gate; nothing exported")
    args.model_dir.mkdir(parents=True, exist_ok=True)
    artifact = args.model_dir / args.model_file
    # The tuned file is already the fitted Pipeline; copying keeps its bytes, hence its hash.
    shutil.copyfile(args.tuned, artifact)
    tune_report = read_json(args.tune_report)
    oof = pd.read_csv(args.oof)  # pandas reads floats back exactly as to_csv wrote them
    profile = reference_profile(
        oof["predicted"].to_numpy(dtype=np.float64), read_table(args.train),
        tune_report["features"], params, model_version(sha256_of(artifact)),
    )  # fmt: skip
    write_json(args.model_dir / PROFILE_NAME, profile)
    card = model_card(
        artifact=artifact,
        tune_report=tune_report,
        evaluate_report=evaluate_report,
        alpha=params["model"]["alpha"],
        train_md5=md5_of(args.train),
        profile_sha256=sha256_of(args.model_dir / PROFILE_NAME),
        intervals=Intervals.from_dict(read_json(args.intervals)),
    )
    write_json(args.model_dir / CARD_NAME, card)

    # Imported here: MLflow is a record of the run, never needed to produce the outputs above.
    from stages import tracking

    tracking.record_run(
        model=joblib.load(artifact),
        card=card,
        params=params,
        tune_report=read_json(args.tune_report),
        train_path=args.train,
        plots=args.plots,
        trials=pd.read_csv(args.trials),
    )


if __name__ == "__main__":
    main()
