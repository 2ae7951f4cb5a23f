"""Export writes the artifact contract the API reads: a hashed artifact and its card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sklearn

from api.model_store import ModelUnavailable, load, sha256_of
from stages.contract import FEATURE_NAMES
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
    with (tmp_path / "model.joblib").open("ab") as artifact:
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
