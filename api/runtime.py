"""What the lifespan builds and the routes share: the model being served (or why none is), and how
it is replaced without a restart.

Everything a request needs from one model (the Pipeline, its card, the validators built from that
card) lives in one frozen `Serving`, and `Runtime.serving` is swapped as a whole: a route takes it
once, so every response comes wholly from one model version even when a reload lands mid-request.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import TypeAdapter

from api.columnar import ColumnarValidator
from api.feedback import Answered
from api.model_store import ModelUnavailable, ServedModel, load
from api.schemas import Row, feedback_type, validators
from api.settings import Settings

if TYPE_CHECKING:  # imported by the lifespan, once the metrics folder is known (api.multiprocess)
    from api.observability import Metrics
    from prediction_log import PredictionLog

logger = logging.getLogger(__name__)

# Beside the shared metrics of several workers: the sha256 of the artifact the last reload put in
# service. Every worker polls it, so a reload asked of one worker (POST /admin/reload lands on
# one) reaches all of them.
GENERATION_FILE = "model-generation"


@dataclass(frozen=True)
class Serving:
    """One verified model and the request validators built from its card."""

    model: ServedModel
    # one house, and {"rows": [house, ...]}
    house: TypeAdapter[Row]
    batch: TypeAdapter[dict[str, list[Row]]]
    # column-wise bodies, with the row schema's messages
    columnar: ColumnarValidator
    ignored_inputs: list[str]
    # POST /feedback: one label, or a list of them
    feedback: TypeAdapter[Any]

    @property
    def sha256(self) -> str:
        return str(self.model.card["artifact"]["sha256"])


def prepare(settings: Settings) -> Serving:
    """Load and verify the model in `settings.model_dir`; ModelUnavailable says why not."""
    model = load(settings.model_dir)
    try:
        house, batch = validators(model.card, settings.max_batch_rows)
        columnar = ColumnarValidator(model.card, house, model.inputs)
        used = set(model.inputs)
        ignored = [f["name"] for f in model.card["features"] if f["name"] not in used]
        feedback = feedback_type(model.card, settings.max_batch_rows)
    except (KeyError, TypeError) as error:
        # a card without the fields the contract promises is as unusable as a missing one
        raise ModelUnavailable(f"malformed card: {error!r}") from None
    return Serving(model, house, batch, columnar, ignored, feedback)


@dataclass(frozen=True)
class Reload:
    """What a reload did: `error` is None when the folder's model is serving now."""

    previous_version: str | None
    model_version: str | None
    changed: bool
    error: str | None = None
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    log: PredictionLog
    # where labels go: the prediction log itself unless BOSTON_API_FEEDBACK_SINK names another
    feedback_log: PredictionLog
    serving: Serving | None = None
    reason: str = "starting"
    # the last reload that failed while the model before it kept serving; None once one succeeds
    failed_reload: Reload | None = None
    # several workers: where the last reload is published (None: this process serves alone)
    generation: Path | None = None
    answered: Answered = field(default_factory=Answered)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def model(self) -> ServedModel | None:
        return self.serving.model if self.serving else None

    def load_model(self) -> None:
        """At start-up: load and verify the model; else serve /health with the reason."""
        try:
            self._put(prepare(self.settings))
        except ModelUnavailable as error:
            self.serving, self.reason = None, str(error)
            self.metrics.model_loaded.set(0)

    async def reload(self, *, publish: bool = True) -> Reload:
        """Load the model folder again and swap it in, or keep what serves and say why.

        Loading runs in a thread, so requests keep being answered by the current model meanwhile;
        the swap itself is one assignment in the event loop. Reloads never overlap.
        """
        async with self._lock:
            before = self.serving
            previous = before.model.version if before else None
            try:
                fresh = await anyio.to_thread.run_sync(prepare, self.settings)
            except ModelUnavailable as error:
                outcome = Reload(previous, previous, changed=False, error=str(error))
                if before is None:
                    self.reason = str(error)
                self.failed_reload = outcome if before is not None else None
                logger.error("model reload failed, %s: %s", _still(previous), error)
                return outcome
            changed = before is None or fresh.sha256 != before.sha256
            if changed:
                self._put(fresh, replacing=before)
            self.failed_reload = None
            if publish and self.generation is not None:
                _publish(self.generation, fresh.sha256)
            logger.info("model reload: %s -> %s", previous, fresh.model.version)
            return Reload(previous, fresh.model.version, changed=changed)

    async def follow(self, seconds: float) -> None:
        """With several workers: reload whenever another worker has published a new model."""
        assert self.generation is not None
        seen = _read(self.generation)
        while True:
            await asyncio.sleep(seconds)
            published = _read(self.generation)
            if published == seen:
                continue
            seen = published
            if self.serving is None or published != self.serving.sha256:
                await self.reload(publish=False)

    def reload_on_hangup(self) -> None:
        """SIGHUP reloads the model (the convention of long-running servers); off the main
        thread (as in tests) signals cannot be caught, and none are."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        except (ValueError, RuntimeError, NotImplementedError):
            logger.debug("SIGHUP not handled in this thread or on this platform")

    def _put(self, fresh: Serving, replacing: Serving | None = None) -> None:
        self.serving, self.reason = fresh, "ready"
        model = fresh.model
        if replacing is not None:
            self.metrics.model_info.labels(
                replacing.model.version, replacing.model.card["family"]
            ).set(0)
        self.metrics.model_loaded.set(1)
        self.metrics.model_info.labels(model.version, model.card["family"]).set(1)
        self.metrics.watch_inputs(model.profile, model.inputs)
        _freeze_heap()


def _freeze_heap() -> None:
    """Leave what is alive now (the model's trees and the libraries) out of the garbage
    collector's full passes, which would otherwise walk all of it again and again while the
    service answers. First, whatever a reload just replaced is collected: a frozen object in a
    reference cycle would never be."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _still(previous: str | None) -> str:
    return f"still serving {previous}" if previous else "no model serving"


def _publish(path: Path, sha256: str) -> None:
    # write then rename: a worker polling never reads half a line
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(sha256)
    partial.replace(path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def describe(outcome: Reload) -> dict[str, Any]:
    """The JSON a reload answers with, and /health shows after a failed one."""
    return {
        "model_version": outcome.model_version,
        "previous_version": outcome.previous_version,
        "changed": outcome.changed,
        "error": outcome.error,
        "at": outcome.at,
    }
