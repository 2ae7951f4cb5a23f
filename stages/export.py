"""Export: write the served artifact and its model card, then record the run in MLflow.

The card is the contract the API reads: the artifact's sha256 (checked before every load), the
feature contract it builds its request schema from, the metrics, and the library versions the
artifact needs. Everything in it is deterministic; times, hosts and run ids belong to MLflow.
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
import sklearn

from api.model_store import CARD_NAME, SUPPORTED_CARD_SCHEMA, sha256_of
from stages.contract import FEATURES, TARGET
from stages.families import LINEAR
from stages.files import load_params, read_json, write_json


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def model_card(
    *,
    artifact: Path,
    tune_report: dict[str, Any],
    evaluate_report: dict[str, Any],
    alpha: float,
    train_md5: str,
) -> dict[str, Any]:
    """The card for `artifact`; model_version is derived from its sha256, so it is reproducible."""
    sha256 = sha256_of(artifact)
    best = tune_report["best"]
    used = tune_report["features"]
    hyperparameters = dict(best["best_params"])
    if best["family"] in LINEAR:
        hyperparameters["alpha"] = alpha
    return {
        "schema_version": SUPPORTED_CARD_SCHEMA,
        "model_version": sha256[:12],
        "artifact": {"file": artifact.name, "format": "joblib", "sha256": sha256},
        "family": best["family"],
        "hyperparameters": dict(sorted(hyperparameters.items())),
        "model_inputs": used,
        "features": [{**column.as_dict(), "used": column.name in used} for column in FEATURES],
        "target": {**TARGET.as_dict(), "censored_at": TARGET.maximum},
        "training_data": {"md5": train_md5, "rows": tune_report["cv"]["train_rows"]},
        "metrics": {"cv": evaluate_report["cv"], "test": evaluate_report["test"]},
        "libraries": {
            "python": ".".join(platform.python_version_tuple()[:2]),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tuned", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--tune-report", type=Path, required=True)
    parser.add_argument("--evaluate-report", type=Path, required=True)
    parser.add_argument("--plots", type=Path, nargs="+", required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params("export")

    evaluate_report = read_json(args.evaluate_report)
    if not evaluate_report["gate"]["passed"]:
        sys.exit("export: the evaluated model failed the quality gate; nothing exported")
    args.model_dir.mkdir(parents=True, exist_ok=True)
    artifact = args.model_dir / "model.joblib"
    # The tuned file is already the fitted Pipeline; copying keeps its bytes, hence its hash.
    shutil.copyfile(args.tuned, artifact)
    card = model_card(
        artifact=artifact,
        tune_report=read_json(args.tune_report),
        evaluate_report=evaluate_report,
        alpha=params["model"]["alpha"],
        train_md5=md5_of(args.train),
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
    )


if __name__ == "__main__":
    main()
