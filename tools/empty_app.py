"""The benchmark's baseline: an empty FastAPI POST endpoint, the ceiling of the web stack."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.post("/empty")
async def empty() -> dict[str, str]:
    return {}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
