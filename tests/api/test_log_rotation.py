"""The real server with two workers and a prediction log rotated every few kilobytes: under
concurrent requests, every row the clients sent is in the live file or one gzipped closed file,
exactly once, each line whole."""

from __future__ import annotations

import gzip
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from api.schemas import FIRST_TRACT
from tests.conftest import running_api

CLIENTS = 6
REQUESTS_PER_CLIENT = 40


def _send(url: str, client: int) -> list[tuple[str, int]]:
    """One client's requests, single rows and batches of up to four; the rows it was answered
    for, as (request id, row)."""
    sent = []
    with httpx.Client(base_url=url, timeout=30) as session:
        for number in range(REQUESTS_PER_CLIENT):
            rows = 1 + (client + number) % 4
            if rows == 1:
                response = session.post("/predict", json=FIRST_TRACT)
            else:
                batch = [{**FIRST_TRACT, "RM": 5.0 + row / 10} for row in range(rows)]
                response = session.post("/predict/batch", json={"rows": batch})
            assert response.status_code == 200, response.text
            sent += [(response.headers["X-Request-ID"], row) for row in range(rows)]
    return sent


@pytest.mark.e2e
def test_two_workers_rotating_the_log_keep_every_line_once(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the workers' metrics folder is made
    logs = tmp_path / "logs"
    logs.mkdir()
    sink = logs / "predictions.jsonl"
    with (
        running_api(model_dir, sink, uvicorn_args=("--workers", "2"), log_rotate="4KB") as url,
        ThreadPoolExecutor(CLIENTS) as pool,
    ):
        answered = [
            row for rows in pool.map(_send, [url] * CLIENTS, range(CLIENTS)) for row in rows
        ]
    # the server has stopped: its workers finished gzipping before they exited
    closed = sorted(logs.glob("predictions.*.jsonl.gz"))
    plain_left = [path.name for path in logs.glob("predictions.*.jsonl")]
    assert plain_left == []
    assert len(closed) > 20  # the limit forced many rotations
    chunks = [gzip.decompress(path.read_bytes()) for path in closed] + [sink.read_bytes()]
    assert all(len(chunk) <= 4096 for chunk in chunks[:-1])
    # every line parses: none was split across files
    lines = [orjson.loads(line) for chunk in chunks for line in chunk.splitlines()]
    logged = [(line["request_id"], line["row"]) for line in lines]
    assert len(logged) == len(set(logged)), "a row was logged twice"
    assert sorted(logged) == sorted(answered)
