"""Serving benchmark: /predict against the web stack's ceiling and against `mlflow models serve`.

Starts each server on a loopback port with the same uvicorn settings (one worker), drives it with
wrk, and prints requests/s with p50/p99 latency, plus ratios measured in this same run (these
machines are noisy, so only same-run ratios mean anything). Then times /predict/batch on 10,000
rows from the server's own Server-Timing header, and its main steps in process. Run with
`make benchmark` after `make repro`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from api.model_store import load
from api.schemas import FIRST_TRACT as EXAMPLE
from api.schemas import validators
from tools.loopback import free_port, wait_until_healthy

REPO = Path(__file__).resolve().parents[1]
UVICORN = ["--host", "127.0.0.1", "--workers", "1", "--no-access-log", "--log-level", "warning"]
_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
"""


@contextmanager
def serve(command: list[str], health_url: str, env: dict[str, str]) -> Iterator[None]:
    # mlflow starts `uvicorn` by name, so this environment's scripts go first on PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    process = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **env, "PATH": path},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_healthy(health_url, process, timeout=120)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def wrk(url: str, body: str, seconds: int, connections: int) -> dict[str, float]:
    """One warm-up, then the measured run; returns requests/s and p50/p99 latency in ms."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    env = {**os.environ, "BENCH_BODY": body}
    base = ["wrk", "-t1", f"-c{connections}", "--latency", "-s", script.name, url]
    subprocess.run([*base[:3], "-d2s", *base[3:]], env=env, capture_output=True, check=True)
    out = subprocess.run(
        [*base[:3], f"-d{seconds}s", *base[3:]], env=env, capture_output=True, text=True, check=True
    ).stdout
    os.unlink(script.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"{url} answered errors under load:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _latency_ms(out, "50%"),
        "p99_ms": _latency_ms(out, "99%"),
    }


def _latency_ms(out: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def batch_server_ms(url: str, rows: int, repeats: int) -> tuple[float, float]:
    """Median server time (Server-Timing) and median round trip for one batch of `rows` rows."""
    body = json.dumps({"rows": [EXAMPLE] * rows})
    server, round_trip = [], []
    with httpx.Client(timeout=60) as client:
        for _ in range(repeats + 1):
            started = time.perf_counter()
            response = client.post(url, content=body, headers={"content-type": "application/json"})
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            server.append(float(response.headers["server-timing"].split("dur=")[1]))
            round_trip.append(elapsed)
    return statistics.median(server[1:]), statistics.median(round_trip[1:])


def batch_steps_ms(rows: int, repeats: int) -> dict[str, float]:
    """Median in-process milliseconds of each step of /predict/batch on `rows` rows."""
    model = load(REPO / "models")
    _, batch = validators(model.card, rows)
    body = json.dumps({"rows": [EXAMPLE] * rows}).encode()
    steps: dict[str, list[float]] = {"validate JSON": [], "build matrix": [], "model predict": []}
    for _ in range(repeats):
        started = time.perf_counter()
        parsed = batch.validate_json(body)["rows"]
        validated = time.perf_counter()
        matrix = model.matrix(parsed)
        built = time.perf_counter()
        model.predict(matrix)
        done = time.perf_counter()
        for step, (start, end) in zip(
            steps, ((started, validated), (validated, built), (built, done)), strict=True
        ):
            steps[step].append((end - start) * 1000)
    return {step: statistics.median(times) for step, times in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("benchmark: wrk is not installed (apt-get install wrk)")
    if not (REPO / "models" / "model_card.json").is_file():
        sys.exit("benchmark: no exported model; run `make repro` first")
    card = json.loads((REPO / "models" / "model_card.json").read_text())
    log = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name  # noqa: SIM115
    env = {"BOSTON_API_MODEL_DIR": str(REPO / "models"), "BOSTON_API_LOG_SINK": log}
    body = json.dumps(EXAMPLE)
    load = (args.seconds, args.connections)
    # The servers run side by side and are measured in alternation, round after round, so a
    # noisy neighbour hurts every server alike; the medians (and the per-round ratios) count.
    runs: dict[str, list[dict[str, float]]] = {"empty FastAPI POST": [], "/predict": []}
    ratios: list[float] = []
    empty_port, api_port = free_port(), free_port()
    empty_url, api_url = f"http://127.0.0.1:{empty_port}", f"http://127.0.0.1:{api_port}"
    with (
        serve(_uvicorn("tools.empty_app:app", empty_port), f"{empty_url}/health", env),
        serve(_uvicorn("api.main:app", api_port), f"{api_url}/health", env),
    ):
        for _ in range(args.rounds):
            runs["empty FastAPI POST"].append(wrk(f"{empty_url}/empty", body, *load))
            runs["/predict"].append(wrk(f"{api_url}/predict", body, *load))
            ratios.append(runs["/predict"][-1]["rps"] / runs["empty FastAPI POST"][-1]["rps"])
        batch_server, batch_round_trip = batch_server_ms(f"{api_url}/predict/batch", 10_000, 10)

    if not args.skip_mlflow:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        mlflow_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{REPO / 'mlflow.db'}"}
        command = [
            sys.executable, "-m", "mlflow", "models", "serve",
            "-m", "models:/boston-housing@champion", "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port), "-w", "1",
        ]  # fmt: skip
        records = {"dataframe_records": [{k: EXAMPLE[k] for k in card["model_inputs"]}]}
        with serve(command, f"{url}/ping", mlflow_env):
            runs["mlflow models serve"] = [wrk(f"{url}/invocations", json.dumps(records), *load)]
    results = {
        name: {key: statistics.median(r[key] for r in measured) for key in measured[0]}
        for name, measured in runs.items()
    }

    print(
        f"\nmodel {card['model_version']} ({card['family']}), "
        f"wrk -t1 -c{args.connections} -d{args.seconds}s, one uvicorn worker, "
        f"median of {args.rounds} alternating rounds\n"
    )
    print(f"{'server':<22}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for name, row in results.items():
        print(f"{name:<22}{row['rps']:>12.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}")
    predict = results["/predict"]["rps"]
    shown = ", ".join(f"{ratio:.0%}" for ratio in ratios)
    print(f"\n/predict vs empty endpoint: {statistics.median(ratios):.0%} (rounds: {shown})")
    if "mlflow models serve" in results:
        mlflow_rps = results["mlflow models serve"]["rps"]
        print(f"/predict vs mlflow models serve: {predict / mlflow_rps:.1f}x")
    print(
        f"/predict/batch, 10,000 rows: {batch_server:.1f} ms server time (median of 10), "
        f"{batch_round_trip:.1f} ms round trip"
    )
    steps = ", ".join(f"{step} {ms:.1f} ms" for step, ms in batch_steps_ms(10_000, 10).items())
    print(f"  of which, timed in process: {steps}")
    os.unlink(log)


def _uvicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, *UVICORN, "--port", str(port)]


if __name__ == "__main__":
    main()
