"""Export writes the artifact contract the API and monitoring read: a hashed artifact, its card,
and the reference profile tied to both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn

from api.model_store import ModelUnavailable, load
from artifact import PROFILE_NAME, ArtifactError, read_card, read_profile, sha256_of
from stages.calibrate import out_of_fold_predictions
from stages.contract import FEATURE_NAMES, TARGET, model_features
from stages.families import build
from tests.conftest import export_tiny_model


def test_card_describes_the_artifact(tmp_path: Path) -> None:
    card = export_tiny_model(tmp_path)
    artifact = tmp_path / card["artifact"]["file"]
    assert card["artifact"]["sha256"] == sha256_of(artifact)
    assert card["model_version"] == card["artifact"]["sha256"][:12]
    assert card["family"] == "ridge"
    assert card["hyperparameters"]["alpha"] == 1.0
    assert card["libraries"]["scikit-learn"] == sklearn.__version__
    assert {"python", "numpy", "joblib"} <= set(card["libraries"])
    assert card["target"]["name"] == "MEDV" and card["target"]["censored_at"] == 50.0
    assert card["metrics"]["test"]["rmse"] == 1.0


def test_card_feature_contract_covers_every_raw_column(tmp_path: Path) -> None:
    card = export_tiny_model(tmp_path)
    features = {f["name"]: f for f in card["features"]}
    assert list(features) == list(FEATURE_NAMES)
    assert features["B"]["used"] is False
    assert card["model_inputs"] == [name for name in FEATURE_NAMES if name != "B"]
    assert features["LSTAT"]["nullable"] is True and features["RM"]["nullable"] is False
    assert features["CHAS"]["kind"] == "binary"
    for feature in card["features"]:
        assert feature["minimum"] < feature["maximum"]


def test_the_card_is_deterministic(tmp_path: Path) -> None:
    first = export_tiny_model(tmp_path / "a")
    second = export_tiny_model(tmp_path / "b")
    assert first == second


def test_loading_verifies_the_hash(tmp_path: Path) -> None:
    card = export_tiny_model(tmp_path)
    assert load(tmp_path).version == card["model_version"]
    with (tmp_path / card["artifact"]["file"]).open("ab") as artifact:
        artifact.write(b"tampered")
    with pytest.raises(ModelUnavailable, match=r"has sha256 .* but the card says .*refusing"):
        load(tmp_path)


def test_loading_refuses_another_sklearn_version(tmp_path: Path) -> None:
    export_tiny_model(tmp_path)
    card_path = tmp_path / "model_card.json"
    card = json.loads(card_path.read_text())
    card["libraries"]["scikit-learn"] = "0.24.2"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelUnavailable, match=r"trained with scikit-learn 0.24.2"):
        load(tmp_path)


def test_the_card_names_its_reference_profile_and_the_profile_its_model(model_dir: Path) -> None:
    card = read_card(model_dir)
    profile = read_profile(model_dir, card)
    assert card["reference_profile"]["sha256"] == sha256_of(model_dir / PROFILE_NAME)
    assert profile["model_version"] == card["model_version"]
    assert set(profile["features"]) == set(card["model_inputs"])
    chas = profile["features"]["CHAS"]
    assert chas["kind"] == "categorical"
    assert chas["shares"] == pytest.approx(
        {
            level: count / sum(chas["categories"].values())
            for level, count in chas["categories"].items()
        }
    )
    assert sorted(profile["features"]["RM"]["values"]) == profile["features"]["RM"]["values"]


def test_a_tampered_profile_is_refused(model_dir: Path) -> None:
    path = model_dir / PROFILE_NAME
    path.write_text(path.read_text().replace('"rows"', '"rows" ', 1))
    with pytest.raises(ArtifactError, match="does not match the sha256 in the card"):
        read_profile(model_dir, read_card(model_dir))


def test_a_profile_of_another_model_is_refused(model_dir: Path) -> None:
    card = read_card(model_dir)
    path = model_dir / PROFILE_NAME
    path.write_text(path.read_text().replace(card["model_version"], "0" * 12))
    card["reference_profile"]["sha256"] = sha256_of(path)
    with pytest.raises(ArtifactError, match=r"is for model 000000000000, the card for"):
        read_profile(model_dir, card)


def test_reference_predictions_are_out_of_fold(tiny_table: pd.DataFrame) -> None:
    """In-sample predictions hug the training targets; out-of-fold ones are as far off as new."""
    features = model_features(["B"])
    model = build("ridge", alpha=1.0, seed=0)
    oof = out_of_fold_predictions(model, tiny_table, features, folds=5, seed=0)
    y = tiny_table[TARGET.name].to_numpy()
    in_sample = model.fit(tiny_table[features].to_numpy(), y).predict(
        tiny_table[features].to_numpy()
    )
    assert oof.shape == y.shape
    assert np.mean((oof - y) ** 2) > np.mean((in_sample - y) ** 2)
    again = out_of_fold_predictions(model, tiny_table, features, folds=5, seed=0)
    assert np.array_equal(oof, again)
