"""Service settings, read from environment variables prefixed BOSTON_API_ (see README)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOSTON_API_", extra="ignore")

    model_dir: Path = Field(Path("models"), description="folder holding model_card.json")
    api_key: SecretStr | None = Field(
        None, description="when set, prediction routes require it in the X-API-Key header"
    )
    max_batch_rows: int = Field(10_000, ge=1, description="row cap of one batch request")
    max_body_bytes: int = Field(
        2_000_000, ge=1_024, description="request bodies beyond this many bytes get 413"
    )
    log_sink: str = Field(
        "stdout", description="prediction log: 'stdout', 'stderr' or a file path to append to"
    )
    log_sample_rate: float = Field(
        1.0, ge=0.0, le=1.0, description="share of predictions written to the prediction log"
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
