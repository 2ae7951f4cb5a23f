"""The service as deployed (`python -m api`): its launch settings, SIGTERM under load, and a
burst beyond its in-flight cap. Real servers on loopback ports; every loop is bounded."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from api.__main__ import LaunchError, from_environment
from api.schemas import FIRST_TRACT
from tests.conftest import REPO, running_server
from tools.loopback import free_port

GRACE_SECONDS = 5
# The generous bound on "exits within the timeout": the drain bound plus process start-up noise.
EXIT_BOUND_SECONDS = GRACE_SECONDS + 10


@contextmanager
def launched(
    model_dir: Path, log: Path, workers: int, **variables: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m api`, as the container starts it, on a free loopback port."""
    port = free_port()
    env = {
        **os.environ,
        "BOSTON_API_MODEL_DIR": str(model_dir),
        "BOSTON_API_LOG_SINK": str(log),
        "BOSTON_API_PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "BOSTON_API_TIMEOUT_GRACEFUL_SHUTDOWN": str(GRACE_SECONDS),
        **variables,
    }
    url = f"http://127.0.0.1:{port}"
    output = log.with_suffix(".server.out")
    command = [sys.executable, "-m", "api"]
    with running_server(command, f"{url}/health", output, env) as process:
        yield url, process


def test_launch_settings_come_from_the_environment() -> None:
    launch = from_environment(
        {"WEB_CONCURRENCY": "3", "BOSTON_API_HOST": "0.0.0.0", "BOSTON_API_LOOP": "uvloop"}
    )
    assert (launch.workers, launch.host, launch.port, launch.loop) == (3, "0.0.0.0", 8000, "uvloop")
    defaults = from_environment({})
    assert (defaults.host, defaults.workers) == ("127.0.0.1", 1)
    assert defaults.limit_concurrency >= 1 and 0 < defaults.timeout_graceful_shutdown < 10


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEB_CONCURRENCY", "two", "WEB_CONCURRENCY must be a whole number >= 1, got 'two'"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be a whole number >= 1, got '0'"),
        ("BOSTON_API_PORT", "70000", "BOSTON_API_PORT must be a whole number from 1 to 65535"),
        ("BOSTON_API_LIMIT_CONCURRENCY", "-5", "BOSTON_API_LIMIT_CONCURRENCY must be a whole"),
        (
            "BOSTON_API_TIMEOUT_GRACEFUL_SHUTDOWN",
            "1.5",
            "TIMEOUT_GRACEFUL_SHUTDOWN must be a whole",
        ),
        (
            "BOSTON_API_LOOP",
            "tokio",
            "BOSTON_API_LOOP must be asyncio, uvloop or auto, got 'tokio'",
        ),
        ("BOSTON_API_HOST", "local host", "BOSTON_API_HOST must be an address or host name"),
    ],
)
def test_a_bad_launch_setting_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        from_environment({name: value})


def test_the_launcher_stops_with_the_variable_named() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "api"],
        cwd=REPO,
        env={**os.environ, "WEB_CONCURRENCY": "two"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines()[-1] == (
        "python -m api: WEB_CONCURRENCY must be a whole number >= 1, got 'two'"
    )


@dataclass
class Outcomes:
    """What the clients saw, by request id: complete 200s, other responses, transport errors."""

    ok: set[str] = field(default_factory=set)
    other: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def hammer(url: str, name: str, outcomes: Outcomes, stop: threading.Event) -> None:
    """One keep-alive client posting /predict until the server is gone (or 30 s pass)."""
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=20) as client:
        for number in range(100_000):
            request_id = f"{name}-{number}"
            try:
                response = client.post(
                    f"{url}/predict", json=FIRST_TRACT, headers={"X-Request-ID": request_id}
                )
                complete = response.status_code == 200 and "prediction" in response.json()
                with outcomes.lock:
                    if complete:
                        outcomes.ok.add(request_id)
                    else:
                        outcomes.other[request_id] = response.status_code
            except httpx.TransportError as error:
                with outcomes.lock:
                    outcomes.errors[request_id] = type(error).__name__
                if stop.is_set() and isinstance(error, httpx.ConnectError):
                    return  # refused: nothing listens any more
            if time.monotonic() > deadline:
                return


def slow_body(started: threading.Event) -> Iterator[bytes]:
    """The example house sent in pieces over about 1.5 s: a request the server is still reading
    (so has accepted) when SIGTERM arrives."""
    body = json.dumps(FIRST_TRACT).encode()
    pieces = [body[i : i + 16] for i in range(0, len(body), 16)]
    for index, piece in enumerate(pieces):
        yield piece
        if index == 0:
            started.set()
        time.sleep(1.5 / len(pieces))


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_finishes_every_accepted_request(
    model_dir: Path, tmp_path: Path, workers: int
) -> None:
    log = tmp_path / "predictions.jsonl"
    outcomes = Outcomes()
    stop = threading.Event()
    uploading = threading.Event()
    # this test is about draining: shedding (tests/api/test_overload.py) stays out of its counts
    no_shedding = {"BOSTON_API_SHED_LAG_MS": "0"}
    with launched(model_dir, log, workers, **no_shedding) as (url, process), ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=7))
        clients = [pool.submit(hammer, url, f"c{n}", outcomes, stop) for n in range(6)]
        slow = pool.submit(
            httpx.post,
            f"{url}/predict",
            content=slow_body(uploading),
            headers={"X-Request-ID": "slow", "Content-Type": "application/json"},
            timeout=20,
        )
        assert uploading.wait(timeout=10)
        time.sleep(0.3)  # the slow request is mid-body, the others are in full swing
        assert outcomes.ok, "no request succeeded before SIGTERM"
        stop.set()
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=EXIT_BOUND_SECONDS + 30)
        exited_after = time.monotonic() - signalled
        for client in clients:
            client.result(timeout=60)
        slow_response = slow.result(timeout=60)

    # the request still uploading when SIGTERM came was finished and answered in full
    assert slow_response.status_code == 200
    assert "prediction" in slow_response.json()
    # no accepted request was answered with anything but a complete 200
    assert outcomes.other == {}
    # the server's own log lists the requests it took in: each got its complete 200, and each
    # failure the clients saw was a request the server never read (refused or never accepted)
    served = {json.loads(line)["request_id"] for line in log.read_text().splitlines()}
    assert served - {"slow"} == outcomes.ok
    assert not served & set(outcomes.errors)
    assert set(outcomes.errors.values()) <= {
        "ConnectError",  # nothing listening any more
        "RemoteProtocolError",  # a kept-alive connection closed before the request was read
        "ReadError",  # the same, seen as a reset
        "WriteError",
    }
    assert exited_after < EXIT_BOUND_SECONDS
    # one server re-raises SIGTERM after draining; a supervisor of several exits normally
    assert returncode in (0, -signal.SIGTERM)


@pytest.mark.e2e
def test_a_burst_beyond_the_cap_gets_503_at_once_and_the_server_stays_healthy(
    model_dir: Path, tmp_path: Path
) -> None:
    cap = 4
    variables = {"BOSTON_API_LIMIT_CONCURRENCY": str(cap)}
    with launched(model_dir, tmp_path / "predictions.jsonl", 1, **variables) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        # uvicorn counts open connections against the cap: these fill it, as a crowd would
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap)]
        try:
            time.sleep(0.5)  # the server has taken them in

            def one(_: int) -> int:
                with httpx.Client(timeout=10) as client:
                    response = client.post(f"{url}/predict", json=FIRST_TRACT)
                    assert response.text == "Service Unavailable"
                    return response.status_code

            with ThreadPoolExecutor(max_workers=16) as pool:
                statuses = list(pool.map(one, range(48)))
        finally:
            for connection in held:
                connection.close()
        # every request of the burst was answered (none timed out), and all with 503
        assert statuses == [503] * 48
        time.sleep(0.5)  # the server has seen the held connections close
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert httpx.post(f"{url}/predict", json=FIRST_TRACT, timeout=10).status_code == 200
