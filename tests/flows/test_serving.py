"""The served folder: which files make a model is the card's to say, and a promotion and a
rollback swap whole models, the one replaced kept in `.previous/`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifact import CARD_NAME, CARD_SCHEMA
from flows.serving import (
    PREVIOUS,
    install,
    kept_version,
    model_files,
    replace_keeping_previous,
    swap_with_previous,
)


def model(folder: Path, version: str, artifact: str) -> Path:
    """A model folder as export writes it, its artifact under the name the card gives."""
    folder.mkdir(parents=True)
    card = {
        "schema_version": CARD_SCHEMA,
        "model_version": version,
        "artifact": {"file": artifact, "sha256": "not checked here"},
        "reference_profile": {"file": "profile.json", "sha256": "not checked here"},
    }
    (folder / artifact).write_text(f"model {version}")
    (folder / "profile.json").write_text(f"profile {version}")
    (folder / CARD_NAME).write_text(json.dumps(card))
    return folder


def version(folder: Path) -> str:
    return str(json.loads((folder / CARD_NAME).read_text())["model_version"])


def test_the_card_names_the_files_it_last(tmp_path: Path) -> None:
    folder = model(tmp_path / "m", "v1", "model.pkl")
    assert model_files(folder) == ("model.pkl", "profile.json", CARD_NAME)


def test_install_copies_the_files_the_source_card_names_and_no_partial_file(
    tmp_path: Path,
) -> None:
    source = model(tmp_path / "new", "v2", "model.pkl")
    target = model(tmp_path / "served", "v1", "model.joblib")
    install(source, target)
    assert version(target) == "v2"
    assert (target / "model.pkl").read_text() == "model v2"
    assert (target / "profile.json").read_text() == "profile v2"
    assert not list(target.glob(".*.partial"))


def test_a_promotion_keeps_the_replaced_model_and_a_rollback_swaps_them_back(
    tmp_path: Path,
) -> None:
    served = model(tmp_path / "served", "v1", "model.joblib")
    challenger = model(tmp_path / "new", "v2", "model.pkl")
    backup = replace_keeping_previous(challenger, served)
    assert backup == served / PREVIOUS
    assert (version(served), version(backup)) == ("v2", "v1")
    assert (backup / "model.joblib").read_text() == "model v1"
    assert kept_version(served) == "v1"

    swap_with_previous(served)
    assert (version(served), version(backup)) == ("v1", "v2")
    assert (served / "model.joblib").read_text() == "model v1"
    assert (backup / "model.pkl").read_text() == "model v2"


def test_a_rollback_with_nothing_kept_says_so(tmp_path: Path) -> None:
    served = model(tmp_path / "served", "v1", "model.pkl")
    with pytest.raises(FileNotFoundError, match="nothing to roll back to"):
        kept_version(served)
