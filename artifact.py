"""The model artifact contract: what export writes beside the model, and how readers check it.

Export, the API and monitoring all import this one module, so the file names, schema versions and
integrity checks live in one place. It uses the standard library only: the serving image carries it
without the pipeline's dependencies.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CARD_NAME = "model_card.json"
PROFILE_NAME = "reference_profile.json"
CARD_SCHEMA = 1
PROFILE_SCHEMA = 1


class ArtifactError(Exception):
    """A card, artifact or profile that cannot be used; the message says which file and why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_version(artifact_sha256: str) -> str:
    """Derived from the artifact's bytes, so the same model always has the same version."""
    return artifact_sha256[:12]


def read_card(model_dir: Path) -> dict[str, Any]:
    card = _read_json(model_dir / CARD_NAME, "model card", "run `make repro` first")
    if card.get("schema_version") != CARD_SCHEMA:
        raise ArtifactError(
            f"model card {model_dir / CARD_NAME} has schema_version "
            f"{card.get('schema_version')!r}; this code reads {CARD_SCHEMA}"
        )
    return card


def read_profile(model_dir: Path, card: dict[str, Any]) -> dict[str, Any]:
    """The reference profile of the card's model, after checking its hash and version against it."""
    named = card.get("reference_profile")
    if not named:
        raise ArtifactError(f"model card in {model_dir} names no reference profile")
    path = model_dir / named["file"]
    if path.is_file() and sha256_of(path) != named["sha256"]:
        raise ArtifactError(f"reference profile {path} does not match the sha256 in the card")
    profile = _read_json(path, "reference profile", "it is written by the export stage")
    if profile.get("schema_version") != PROFILE_SCHEMA:
        raise ArtifactError(
            f"reference profile {path} has schema_version {profile.get('schema_version')!r}; "
            f"this code reads {PROFILE_SCHEMA}"
        )
    if profile.get("model_version") != card.get("model_version"):
        raise ArtifactError(
            f"reference profile {path} is for model {profile.get('model_version')}, "
            f"the card for {card.get('model_version')}"
        )
    return profile


def _read_json(path: Path, what: str, hint: str) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{what} {path} not found; {hint}") from None
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{what} {path} is unreadable: {error}") from None
    return loaded
