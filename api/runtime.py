"""What the lifespan builds and the routes share: the model (or why not) and its schemas."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import TypeAdapter

from api.model_store import ModelUnavailable, ServedModel, load
from api.observability import Metrics, PredictionLog
from api.schemas import Row, validators
from api.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    log: PredictionLog
    model: ServedModel | None = None
    reason: str = "starting"
    # request validators built from the card: one house, and {"rows": [house, ...]}
    house: TypeAdapter[Row] | None = None
    batch: TypeAdapter[dict[str, list[Row]]] | None = None
    ignored_inputs: list[str] = field(default_factory=list)

    def load_model(self) -> None:
        """Load and verify the model; on failure keep serving /health with the reason."""
        try:
            model = load(self.settings.model_dir)
            house, batch = validators(model.card, self.settings.max_batch_rows)
        except (ModelUnavailable, KeyError, TypeError) as error:
            # A card without the fields the contract promises is as unusable as a missing one.
            reason = (
                str(error) if isinstance(error, ModelUnavailable) else f"malformed card: {error!r}"
            )
            self.model, self.reason = None, reason
            self.metrics.model_loaded.set(0)
            return
        self.model, self.house, self.batch = model, house, batch
        used = set(model.inputs)
        self.ignored_inputs = [f["name"] for f in model.card["features"] if f["name"] not in used]
        self.reason = "ready"
        self.metrics.model_loaded.set(1)
        self.metrics.model_info.labels(model.version, model.card["family"]).set(1)
        self.metrics.watch_inputs(model.profile, model.inputs)
