"""Per-client rate limits: headers, 429 with Retry-After, the routes never limited, bad settings,
and one limit for the whole client when two workers share their counters in a real Redis."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from api.main import create_app
from api.schemas import FIRST_TRACT
from api.settings import Settings
from tests.conftest import running_api
from tools.loopback import free_port


def limited_client(settings: Settings, **changes: object) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=changes)))


def test_off_by_default(client: TestClient) -> None:
    for _ in range(30):
        response = client.post("/predict", json=FIRST_TRACT)
        assert response.status_code == 200
        assert "ratelimit-limit" not in response.headers


def test_over_the_limit_a_client_gets_429_with_retry_after(settings: Settings) -> None:
    with limited_client(settings, rate_limit="3/minute") as client:
        remaining = []
        for _ in range(3):
            response = client.post("/predict", json=FIRST_TRACT)
            assert response.status_code == 200
            assert response.headers["ratelimit-limit"] == "3"
            remaining.append(response.headers["ratelimit-remaining"])
        assert remaining == ["2", "1", "0"]
        refused = client.post("/predict", json=FIRST_TRACT)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert 1 <= int(refused.headers["ratelimit-reset"]) <= 60
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.json()["detail"].startswith("rate limit exceeded: 3 per 1 minute")
        assert refused.headers["x-request-id"]
        # the other routes count against the same client
        assert client.post("/predict/batch", json={"rows": [FIRST_TRACT]}).status_code == 429
        assert client.get("/model").status_code == 429
        # an orchestrator's probe and the scraper are never limited
        for _ in range(10):
            assert client.get("/health").status_code == 200
            assert client.get("/metrics").status_code == 200
        metrics = client.get("/metrics").text
        assert 'http_requests_total{method="POST",route="/predict",status="429"} 1.0' in metrics


def test_a_burst_limit_beside_a_sustained_one(settings: Settings) -> None:
    with limited_client(settings, rate_limit="2/minute;3/hour") as client:
        assert [client.get("/model").status_code for _ in range(3)] == [200, 200, 429]
        # the answer names the limit that refused it
        assert "2 per 1 minute" in client.get("/model").json()["detail"]


def test_with_an_api_key_the_key_is_the_client(settings: Settings) -> None:
    key = {"X-API-Key": "secret"}
    with limited_client(settings, rate_limit="2/minute", api_key=SecretStr("secret")) as client:
        assert [client.get("/model", headers=key).status_code for _ in range(3)] == [200, 200, 429]
        # same address, another key: another client (whose wrong key gets 401, not 429)
        other = {"X-API-Key": "another"}
        assert client.post("/predict", json=FIRST_TRACT, headers=other).status_code == 401


def test_an_unreachable_store_lets_requests_through_and_says_so(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    storage = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with limited_client(settings, rate_limit="1/minute", rate_limit_storage=storage) as client:
        assert [client.get("/model").status_code for _ in range(2)] == [200, 200]
    assert "rate limit storage failed" in caplog.text


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("rate_limit", "ten per sec", "BOSTON_API_RATE_LIMIT='ten per sec'"),
        ("rate_limit", "", "BOSTON_API_RATE_LIMIT=''"),
        ("rate_limit_storage", "mongodb://db", "BOSTON_API_RATE_LIMIT_STORAGE='mongodb://db'"),
    ],
)
def test_a_bad_setting_is_named(
    variable: str, value: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"BOSTON_API_{variable.upper()}", value)
    with pytest.raises(ValidationError, match=re.escape(named)):
        Settings()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (the Debian package) on a free loopback port, without persistence."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed; `make test` installs it (tools/system_packages)"
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        connection = redis.Redis(port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                connection.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not answer within 20 s"
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=15)


def accepted_each_second(url: str, seconds: int, threads: int = 8) -> list[int]:
    """Hammer /predict from one address, each request on a new connection (so both workers get
    some), and count the 200s in each whole second of the clock (the limiter's windows start on
    whole seconds), leaving out the first and last, which the run only partly covers. Fails if
    the client could not offer more than it was allowed: then the counts say nothing."""
    stop = time.time() + seconds
    accepted: list[float] = []
    refused = 0
    lock = threading.Lock()

    def hammer() -> None:
        nonlocal refused
        # one client per thread, but no connection kept alive: each request connects anew
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as client:
            while time.time() < stop:
                status = client.post(f"{url}/predict", json=FIRST_TRACT).status_code
                assert status in (200, 429)
                with lock:
                    if status == 200:
                        accepted.append(time.time())
                    else:
                        refused += 1

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert refused > len(accepted), f"the client offered too little: {refused} refused"
    seconds_seen = sorted({int(moment) for moment in accepted})
    return [sum(int(moment) == second for moment in accepted) for second in seconds_seen[1:-1]]


@pytest.mark.e2e
def test_two_workers_sharing_redis_hold_the_client_to_the_rate(
    model_dir: Path, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 40
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # where the workers keep their metrics
    with running_api(
        model_dir, tmp_path / "log.jsonl", uvicorn_args=("--workers", "2"),
        rate_limit=f"{limit}/second", rate_limit_storage=redis_url,
    ) as url:  # fmt: skip
        per_second = accepted_each_second(url, seconds=7)
        # both workers answered some of the accepted requests (each tallies its predictions),
        # so a per-worker count would have let through more than the limit
        (folder,) = temp.glob("boston-api-metrics-*")
        tallies = list(folder.glob("model_prediction_medv_*.tally"))
        assert len(tallies) == 2 and all(np.fromfile(path)[:-1].sum() > 0 for path in tallies)
    # never more than the limit in a second (two workers counting apart would let through up
    # to twice it), and the limit itself while the client asks for more (the median second:
    # a second in which this loaded machine stalled the client says nothing about the limiter)
    assert max(per_second) <= 1.1 * limit, f"{per_second} accepted per second, limit {limit}"
    assert statistics.median(per_second) >= 0.9 * limit, f"{per_second} per second, limit {limit}"
