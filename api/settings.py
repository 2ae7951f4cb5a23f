"""Service settings, read from environment variables prefixed BOSTON_API_ (docs/api.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.ratelimit import parse_limits, storage_scheme
from rotating_log import ROTATE_FORMS, parse_rotation

_STREAMS = ("stdout", "stderr")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOSTON_API_", extra="ignore")

    model_dir: Path = Field(Path("models"), description="folder holding model_card.json")
    api_key: SecretStr | None = Field(
        None, description="when set, prediction routes require it in the X-API-Key header"
    )
    admin_key: SecretStr | None = Field(
        None,
        description="when set, POST /admin/reload (header X-Admin-Key) reloads the model folder; "
        "unset, that route answers 404",
    )
    max_batch_rows: int = Field(10_000, ge=1, description="row cap of one batch request")
    max_body_bytes: int = Field(
        2_000_000, ge=1_024, description="request bodies beyond this many bytes get 413"
    )
    body_timeout: float = Field(
        10.0, gt=0, description="seconds a client has to send its whole request body (else 408)"
    )
    # 250: nothing shed at saturation, most of the peak served under a flood
    # (docs/decisions/0013-server-launch-settings.md)
    shed_lag_ms: float = Field(
        250.0,
        ge=0,
        description="answer 503 with Retry-After at once while the worker's event loop runs this "
        "many ms late (a queue of requests waiting to start); 0: never",
    )
    log_sink: str = Field(
        "stdout", description="prediction log: 'stdout', 'stderr' or a file path to append to"
    )
    feedback_sink: str | None = Field(
        None,
        description="where POST /feedback's labels go: 'stdout', 'stderr' or a file path to "
        "append to; unset, the prediction log's sink",
    )
    log_rotate: str | None = Field(
        None,
        description=f"rotate a file sink, gzipping each closed file: {ROTATE_FORMS}; unset, "
        "never (docs/operating.md#the-prediction-log)",
    )
    log_sample_rate: float = Field(
        1.0, ge=0.0, le=1.0, description="share of predictions written to the prediction log"
    )
    rate_limit: str | None = Field(
        None,
        description="per-client limit such as '100/second', or '20/second;600/minute' for bursts "
        "of 20 at 10/s on average; off when unset",
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="where the limit's counters live: memory:// (each worker counts on its own) "
        "or redis://HOST:PORT/DB (shared by every worker and replica)",
    )

    @field_validator("rate_limit")
    @classmethod
    def _readable_limit(cls, value: str | None) -> str | None:
        if value is not None:
            parse_limits(value)
        return value

    @field_validator("log_rotate")
    @classmethod
    def _readable_rotation(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rotation(value)
        return value

    @model_validator(mode="after")
    def _rotation_needs_files(self) -> Self:
        # a setting that would silently do nothing is refused: a stream is rotated by whatever
        # collects it
        if self.log_rotate is not None:
            for name, sink in (("LOG_SINK", self.log_sink), ("FEEDBACK_SINK", self.feedback_sink)):
                if sink in _STREAMS:
                    raise ValueError(
                        f"BOSTON_API_LOG_ROTATE rotates files only, and BOSTON_API_{name} is "
                        f"{sink}: there the container runtime rotates the log (docker's json-file "
                        "max-size, the kubelet's containerLogMaxSize); unset BOSTON_API_LOG_ROTATE "
                        "or make the sink a file path"
                    )
        return self

    @field_validator("rate_limit_storage")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        storage_scheme(value)
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
