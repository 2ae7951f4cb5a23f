"""Load and overload test: the service as deployed (`python -m api`, two workers) under wrk.

Phase 1, saturation: one wrk per route (/predict, /predict/batch and /invocations with 10-row
batches) at once for --seconds (60 by default). Prints per route the requests, non-2xx, 5xx,
socket errors and timeouts with p50/p99 latency, and the resident memory of the server (supervisor
plus workers, from /proc) early in the run and at its end.
Phase 2, overload: measures capacity (requests/s on /predict at the saturation knee), then opens
a flood of connections (2,048) and prints what clients see: the share of 503s,
timeouts, and, from a probe client that opens a new connection per request among the flood, the
latency of its 503s and 200s. Then checks the service is healthy.

Exits non-zero when phase 1 had any failed request, any 5xx or memory growth of 10% or more, or
when the overload ended in timeouts, errors other than 503, or an unhealthy service.
Run with `make loadtest` after `make repro`; `python -m tools.loadtest --seconds 20` is quicker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.__main__ import VARIABLES, from_environment
from api.schemas import example
from tools.loopback import free_port, wait_until_healthy

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_suffix(".lua")
BATCH_ROWS = 10
MEMORY_GROWTH_LIMIT = 0.10
ROUTES = ("/predict", "/predict/batch", "/invocations")


@dataclass
class WrkResult:
    """What one wrk run saw, from the machine-readable lines tools/loadtest.lua prints."""

    statuses: dict[int, int]
    requests: int
    seconds: float
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    p50_ms: float
    p99_ms: float

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def parse_wrk(output: str) -> WrkResult:
    values: dict[str, int] = {}
    statuses: dict[int, int] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "loadtest":
            if parts[1].startswith("status_"):
                statuses[int(parts[1].removeprefix("status_"))] = int(parts[2])
            else:
                values[parts[1]] = int(parts[2])
    if "requests" not in values:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    return WrkResult(
        statuses=statuses,
        requests=values["requests"],
        seconds=values["duration_us"] / 1e6,
        connect_errors=values["connect_errors"],
        read_errors=values["read_errors"],
        write_errors=values["write_errors"],
        timeouts=values["timeouts"],
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
    )


def start_wrk(url: str, body: str, seconds: int, connections: int) -> subprocess.Popen[str]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "2s"]
    return subprocess.Popen(
        [*command, "-s", str(SCRIPT), url],
        env={**os.environ, "LOADTEST_BODY": body},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_wrk(process: subprocess.Popen[str]) -> WrkResult:
    output, _ = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited {process.returncode}:\n{output}")
    return parse_wrk(output)


def resident_mib(root: int) -> float:
    """Resident memory of `root` and every process descended from it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total_kib, pending = 0, [root]
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


@contextmanager
def service(workers: int, limit: int, output: Path) -> Iterator[tuple[str, int]]:
    """`python -m api` as the container starts it, on a free loopback port; yields URL and pid."""
    port = free_port()
    env = {
        **os.environ,
        "WEB_CONCURRENCY": str(workers),
        "BOSTON_API_HOST": "127.0.0.1",
        "BOSTON_API_PORT": str(port),
        "BOSTON_API_LIMIT_CONCURRENCY": str(limit),
        "BOSTON_API_MODEL_DIR": str(REPO / "models"),
        "BOSTON_API_LOG_SINK": str(output.with_suffix(".predictions.jsonl")),
    }
    url = f"http://127.0.0.1:{port}"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"], cwd=REPO, env=env, stdout=sink, stderr=sink
        )
        try:
            wait_until_healthy(f"{url}/health", process, timeout=120)
            yield url, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def bodies(card: dict[str, Any]) -> dict[str, str]:
    house = example(card)
    columns = list(house)
    rows = [house] * BATCH_ROWS
    split = {"columns": columns, "data": [list(house.values())] * BATCH_ROWS}
    payloads = (house, {"rows": rows}, {"dataframe_split": split})  # in the order of ROUTES
    return {route: json.dumps(payload) for route, payload in zip(ROUTES, payloads, strict=True)}


def saturation(
    url: str, pid: int, routes: dict[str, str], seconds: int, connections: int
) -> tuple[dict[str, WrkResult], float, float, float]:
    """All routes at once for `seconds`; returns the results and memory early, late, and when."""
    runs = {
        route: start_wrk(url + route, body, seconds, connections) for route, body in routes.items()
    }
    started = time.monotonic()
    early_at = min(10.0, seconds / 3)
    time.sleep(max(0.0, early_at - (time.monotonic() - started)))
    early = resident_mib(pid)
    time.sleep(max(0.0, seconds - 1 - (time.monotonic() - started)))
    late = resident_mib(pid)
    late_at = time.monotonic() - started
    return {route: finish_wrk(run) for route, run in runs.items()}, early, late, late_at - early_at


@dataclass
class Probe:
    """One client among the flood: a new connection per request, as a new visitor would open."""

    url: str
    body: str
    latencies: dict[str, list[float]] = field(default_factory=dict)
    retry_after: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"content-type": "application/json"}
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                # A fresh client each time: no pooled connection, so each request queues at accept
                with httpx.Client(timeout=10) as client:
                    response = client.post(self.url, content=self.body, headers=headers)
                outcome = str(response.status_code)
                self.retry_after += "retry-after" in response.headers
            except httpx.TimeoutException:
                outcome = "timeout"
            except httpx.TransportError as error:
                outcome = type(error).__name__
            self.latencies.setdefault(outcome, []).append((time.perf_counter() - started) * 1000)


def overload(
    url: str, body: str, workers: int, connections: int, seconds: int
) -> tuple[WrkResult, WrkResult, Probe, int]:
    """Capacity at the knee, then a flood of `connections` with a probe among them."""
    capacity = finish_wrk(start_wrk(url + "/predict", body, 5, 4 * workers))
    flood = start_wrk(url + "/predict", body, seconds, connections)
    probe = Probe(url + "/predict", body)
    thread = threading.Thread(target=probe.run)
    time.sleep(1)  # the flood's connections are open before the probe starts measuring
    thread.start()
    result = finish_wrk(flood)
    probe.stop.set()
    thread.join(timeout=30)
    health = httpx.get(url + "/health", timeout=10).status_code
    return capacity, result, probe, health


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    default_limit = from_environment({}).limit_concurrency
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="length of the saturation phase")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections per route")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--limit-concurrency",
        type=int,
        default=default_limit,
        help=f"{VARIABLES['limit_concurrency'][0]} of the server (default {default_limit})",
    )
    parser.add_argument("--overload-seconds", type=int, default=15)
    parser.add_argument(
        "--flood",
        type=int,
        default=2048,
        help="connections of the overload phase (2048: 4x the 512 under which two workers already "
        "answer everything at their peak, p50 about 90 ms)",
    )
    args = parser.parse_args()
    if args.seconds < 3:
        sys.exit("loadtest: --seconds must be at least 3")
    if len(ROUTES) * args.connections >= args.limit_concurrency:
        # the kernel may hand every connection to one worker: the cap must hold them all
        sys.exit(
            f"loadtest: {len(ROUTES)} routes x --connections {args.connections} must stay below "
            f"--limit-concurrency {args.limit_concurrency}, or phase 1 measures the cap's 503s"
        )
    if not shutil.which("wrk"):
        sys.exit("loadtest: wrk is not installed (apt-get install wrk)")
    if not (REPO / "models" / "model_card.json").is_file():
        sys.exit("loadtest: no exported model; run `make repro` first")
    card = json.loads((REPO / "models" / "model_card.json").read_text())
    routes = bodies(card)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="loadtest-") as scratch:
        output = Path(scratch) / "server.out"
        with service(args.workers, args.limit_concurrency, output) as (url, pid):
            results, early, late, between = saturation(
                url, pid, routes, args.seconds, args.connections
            )
            report_saturation(args, card, results, (early, late, between), failures)
            capacity, flood, probe, health = overload(
                url, routes["/predict"], args.workers, args.flood, args.overload_seconds
            )
        report_overload(args, capacity, flood, probe, health, failures)
        if failures:
            print("\nFAILED:\n  " + "\n  ".join(failures))
            print_server_complaints(output)
            sys.exit(1)
    print("\nOK: no failed request, no 5xx, memory steady; overload answered 503 without timeouts")


def print_server_complaints(output: Path) -> None:
    """The server's own warnings and errors (its access log left out), to tell what failed."""
    lines = output.read_text(errors="replace").splitlines()
    complaints = Counter(line for line in lines if not line.startswith("INFO:"))
    if complaints:
        print("\nthe server said (other than INFO), by count:")
        for line, count in complaints.most_common(15):
            print(f"  {count:>7} x {line}")


def report_saturation(
    args: argparse.Namespace,
    card: dict[str, Any],
    results: dict[str, WrkResult],
    memory: tuple[float, float, float],
    failures: list[str],
) -> None:
    early, late, between = memory
    growth = late / early - 1
    print(
        f"\nPhase 1: saturation, `python -m api` with {args.workers} workers "
        f"(in-flight cap {args.limit_concurrency} per worker, event loop "
        f"{from_environment(os.environ).loop}), model {card['model_version']}; "
        f"wrk -t1 -c{args.connections} -d{args.seconds}s per route, all routes at once, "
        f"batches of {BATCH_ROWS} rows\n"
    )
    header = ("route", "requests", "req/s", "non-2xx", "5xx", "sock err", "timeouts")
    print(f"{header[0]:<16}" + "".join(f"{h:>10}" for h in header[1:]) + "    p50 ms    p99 ms")
    for route, r in results.items():
        cells = (r.requests, f"{r.rate:.0f}", r.non_2xx, r.server_errors, r.socket_errors)
        print(
            f"{route:<16}"
            + "".join(f"{c:>10}" for c in (*cells, r.timeouts))
            + f"{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}"
        )
        if r.non_2xx or r.socket_errors or r.timeouts:
            odd = {status: n for status, n in r.statuses.items() if not 200 <= status < 300}
            failures.append(
                f"{route}: non-2xx {odd or 0}, {r.socket_errors} socket errors, "
                f"{r.timeouts} timeouts"
            )
    print(
        f"\nresident memory (supervisor + workers): {early:.1f} MiB early, {late:.1f} MiB "
        f"{between:.0f} s later at the end of the load: {growth:+.1%}"
    )
    if growth >= MEMORY_GROWTH_LIMIT:
        failures.append(f"resident memory grew {growth:.1%} (limit {MEMORY_GROWTH_LIMIT:.0%})")


def report_overload(
    args: argparse.Namespace,
    capacity: WrkResult,
    flood: WrkResult,
    probe: Probe,
    health: int,
    failures: list[str],
) -> None:
    answered = sum(flood.statuses.values())
    rejected = flood.statuses.get(503, 0)
    print(
        f"\nPhase 2: overload on /predict. Capacity: {capacity.rate:.0f} requests/s "
        f"(wrk -c{4 * args.workers}, p50 {capacity.p50_ms:.2f} ms, p99 {capacity.p99_ms:.2f} ms)."
        f"\nFlood: wrk -c{args.flood} for {args.overload_seconds} s; each connection sends again "
        f"as soon as it is answered: {flood.rate:.0f} responses/s "
        f"({flood.rate / capacity.rate:.1f}x capacity)"
    )
    served = answered - rejected
    print(
        f"  {answered} responses: {served} x 200 ({served / flood.seconds:.0f}/s, "
        f"{served / flood.seconds / capacity.rate:.0%} of capacity), {rejected} x 503"
        f" ({rejected / max(answered, 1):.0%}), other {answered - served - rejected}; "
        f"socket errors {flood.socket_errors} (connect {flood.connect_errors}, read "
        f"{flood.read_errors}, write {flood.write_errors}), timeouts (> 2 s) {flood.timeouts}; "
        f"latency of all responses p50 {flood.p50_ms:.2f} ms, p99 {flood.p99_ms:.2f} ms"
    )
    total = sum(len(v) for v in probe.latencies.values())
    print(f"  a probe client among them (new connection per request, {total} requests):")
    for outcome, latencies in sorted(probe.latencies.items()):
        print(
            f"    {outcome:<8} {len(latencies):>6} ({len(latencies) / max(total, 1):.0%})  "
            f"p50 {statistics.median(latencies):.1f} ms  p99 {percentile(latencies, 0.99):.1f} ms"
            f"  max {max(latencies):.1f} ms"
        )
    print(f"    responses carrying Retry-After: {probe.retry_after}")
    print(f"  /health after the flood: {health}")
    odd = {s: c for s, c in flood.statuses.items() if s not in (200, 503)}
    if flood.timeouts:
        failures.append(f"overload: {flood.timeouts} requests timed out (> 2 s)")
    if odd:
        failures.append(f"overload: statuses other than 200 and 503: {odd}")
    if any(o not in ("200", "503") for o in probe.latencies):
        failures.append(f"overload: the probe saw {sorted(probe.latencies)}")
    refused = len(probe.latencies.get("503", []))
    if probe.retry_after < refused:
        failures.append(f"overload: {refused - probe.retry_after} 503s without Retry-After")
    if health != 200:
        failures.append(f"overload: /health answered {health} after the flood")


if __name__ == "__main__":
    main()
