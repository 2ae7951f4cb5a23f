"""Load the served model exactly as the card describes it, or say precisely why not.

The artifact is a pickle, which can run code when loaded, so it is only ever loaded after its
sha256 matches the card; a scikit-learn version other than the card's is refused too, because a
Pipeline unpickled by another version may predict differently without any error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from api.fast_path import RowPredictor, compile_row_predictor
from artifact import ArtifactError, read_card, read_profile, sha256_of
from conformal import Intervals

logger = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """The model cannot be served; the message is the reason /health reports."""


@dataclass(frozen=True)
class ServedModel:
    pipeline: Any
    card: dict[str, Any]
    row_predictor: RowPredictor | None = field(default=None, repr=False)
    # the training split's reference for live drift metrics; None when it could not be read
    profile: dict[str, Any] | None = field(default=None, repr=False)
    # the conformal calibration the card carries; None for a model exported before intervals
    intervals: Intervals | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return str(self.card["model_version"])

    @cached_property
    def inputs(self) -> list[str]:
        """The columns the Pipeline takes, in order (read once: matrix() runs on every request)."""
        return list(self.card["model_inputs"])

    @cached_property
    def _take_inputs(self) -> itemgetter[Any]:
        return itemgetter(*self.inputs)

    def matrix(self, rows: Sequence[Mapping[str, float | None]]) -> np.ndarray:
        """Validated rows as a float64 matrix in `inputs` order; None or absent becomes NaN."""
        names = self.inputs
        try:
            values = [self._take_inputs(row) for row in rows]
        except KeyError:  # an optional feature left out of some row
            values = [tuple(row.get(name) for name in names) for row in rows]
        # numpy turns None into NaN in a float array
        return np.array(values, dtype=np.float64).reshape(len(rows), len(names))

    def predict_one(self, row: np.ndarray) -> float:
        """Predict MEDV for one float64 row whose columns follow `inputs`; gaps are NaN."""
        if self.row_predictor is not None:
            return self.row_predictor(row)
        return float(self.predict(row.reshape(1, -1))[0])

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Predict MEDV for a float64 matrix whose columns follow `inputs`; gaps are NaN."""
        # The request schema has already checked every value, so sklearn's own checks are skipped.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return np.asarray(self.pipeline.predict(rows), dtype=np.float64)


def load(model_dir: Path) -> ServedModel:
    """Verify the artifact against its card, then load it; raise ModelUnavailable otherwise."""
    try:
        card = read_card(model_dir)
    except ArtifactError as error:
        raise ModelUnavailable(str(error)) from None
    artifact = model_dir / card["artifact"]["file"]
    if not artifact.is_file():
        raise ModelUnavailable(f"model artifact {artifact} not found (the card names it)")
    actual = sha256_of(artifact)
    if actual != card["artifact"]["sha256"]:
        raise ModelUnavailable(
            f"model artifact {artifact} has sha256 {actual}, but the card says "
            f"{card['artifact']['sha256']}; refusing to load it"
        )
    expected = card["libraries"]["scikit-learn"]
    if sklearn.__version__ != expected:
        raise ModelUnavailable(
            f"the model was trained with scikit-learn {expected}, this service runs "
            f"{sklearn.__version__}; install {expected} to serve it"
        )
    intervals = _intervals_or_none(card)
    pipeline = joblib.load(artifact)
    return ServedModel(
        pipeline=pipeline,
        card=card,
        row_predictor=compile_row_predictor(pipeline),
        profile=_profile_or_none(model_dir, card),
        intervals=intervals,
    )


def _intervals_or_none(card: dict[str, Any]) -> Intervals | None:
    if "intervals" not in card:
        return None
    try:
        return Intervals.from_dict(card["intervals"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelUnavailable(f"malformed card: its intervals are unusable ({error})") from None


def _profile_or_none(model_dir: Path, card: dict[str, Any]) -> dict[str, Any] | None:
    # The model serves without its reference profile; only the live drift metrics need it.
    try:
        return read_profile(model_dir, card)
    except ArtifactError as error:
        logger.warning("serving without live input drift metrics: %s", error)
        return None
