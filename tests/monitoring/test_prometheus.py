"""The monitoring configuration against the real Debian Prometheus, promtool and Pushgateway.

promtool checks the config and the rules and unit-tests the alerts on made-up series. Then a real
uvicorn API, Pushgateway and Prometheus run on loopback ports, traffic, a drift report and a
performance report (with labelled prediction intervals) flow in,
and every expression of the Grafana dashboard and of alerts.yml goes through Prometheus's HTTP API:
a typo in a metric name or label parses fine and only shows as a panel without data, so each
expression must also return data.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from api.schemas import FIRST_TRACT
from conformal import Interval
from prediction_log import PredictionLog
from stages.contract import FEATURE_NAMES
from tests.conftest import (
    REPO,
    export_tiny_model,
    running_api,
    running_server,
    synthetic_table,
)
from tools.loopback import free_port

pytestmark = pytest.mark.e2e

MONITORING = REPO / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
ALERTS = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "boston-housing.json"

# The Debian packages prometheus and prometheus-pushgateway (tools/system_packages.sh)
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
PUSHGATEWAY = Path("/usr/bin/prometheus-pushgateway")

API_JOB = "boston-housing-api"
PUSH_JOB = "pushgateway"
DRIFT_JOB = "boston_housing_drift"  # the job monitoring.report pushes under
PERFORMANCE_JOB = "boston_housing_performance"  # and monitoring.performance
API_KEY = "k"
PREDICTIONS = 50

# An alert is `<signal> <comparison> <number>`. Its full expression returns nothing while the
# condition is false, which is the normal state on a healthy test stack, so "returns data" is
# asked of the signal: the expression with its final comparison cut off.
_CONDITION = re.compile(
    r"^(?P<signal>.+?)\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?"
    r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s*$",
    re.DOTALL,
)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _dashboard_queries() -> list[Any]:
    return [
        pytest.param(target.get("expr", ""), id=f"{panel['title']} [{target.get('refId')}]")
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _signal(expr: str) -> str:
    match = _CONDITION.match(expr.strip())
    assert match, f"not a '<signal> <comparison> <number>' alert: {expr}"
    return match["signal"]


def _loopback_config(
    directory: Path, api: str, pushgateway: str, interval: str | None = None
) -> Path:
    """prometheus.yml with its compose targets pointed at loopback, alerts.yml beside it."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {API_JOB: api, PUSH_JOB: pushgateway}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [targets[job["job_name"]]]
    if interval is not None:
        config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    directory.mkdir(parents=True, exist_ok=True)
    # rule_files are relative to the config file, as in the compose mounts
    shutil.copy(ALERTS, directory / ALERTS.name)
    path = directory / PROMETHEUS_CONFIG.name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run([str(PROMTOOL), *arguments], capture_output=True, text=True)
    assert completed.returncode == 0, f"promtool {' '.join(arguments)}:\n{completed.stdout}\n" + (
        completed.stderr
    )
    return completed


@pytest.fixture(scope="module", autouse=True)
def _debian_packages() -> None:
    missing = [str(path) for path in (PROMETHEUS, PROMTOOL, PUSHGATEWAY) if not path.exists()]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: install the Debian packages prometheus and "
            "prometheus-pushgateway (make test does, through tools/system_packages.sh)"
        )


def test_dashboard_targets_name_an_expression_and_the_provisioned_datasource() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "boston-housing"
    panels = [panel for panel in _panels(dashboard["panels"]) if panel["type"] != "row"]
    assert panels
    for panel in panels:
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no query"
        assert len({target["refId"] for target in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            # Grafana variables ($__rate_interval, ...) would not parse in the live check below
            assert "$" not in target["expr"], panel["title"]


def test_promtool_accepts_the_config_with_loopback_targets(tmp_path: Path) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == [ALERTS.name]
    assert {job["job_name"] for job in config["scrape_configs"]} == {API_JOB, PUSH_JOB}
    path = _loopback_config(tmp_path, f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    output = _promtool("check", "config", str(path)).stdout
    assert "1 rule files found" in output


def test_promtool_accepts_the_alert_rules() -> None:
    output = _promtool("check", "rules", str(ALERTS)).stdout
    assert f"{len(_alert_rules())} rules found" in output


def _alert(name: str, eval_time: str, *expected: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": name, "exp_alerts": list(expected)}


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """promtool's rule unit tests: made-up series, evaluated minute by minute."""
    api = f'job="{API_JOB}", instance="api:8000"'
    drift = f'job="{DRIFT_JOB}", '
    performance = f'job="{PERFORMANCE_JOB}", '
    tests = [
        {
            # the API answers for two minutes, then every scrape fails
            "interval": "1m",
            "input_series": [{"series": f"up{{{api}}}", "values": "1 1 0 0 0 0"}],
            "alert_rule_test": [
                _alert("BostonHousingApiDown", "1m"),
                _alert("BostonHousingApiDown", "2m"),  # down, but not for 1m yet: pending
                _alert(
                    "BostonHousingApiDown",
                    "3m",
                    {
                        "exp_labels": {"severity": "critical", **_labels(api)},
                        "exp_annotations": {
                            "summary": "Boston Housing API is down",
                            "description": "Prometheus has failed to scrape api:8000 for over "
                            "a minute.",
                        },
                    },
                ),
            ],
        },
        {
            # two model versions' reports: only the one that found drift alerts, at once
            "interval": "1m",
            "input_series": [
                {"series": f'drift_detected{{{drift}model_version="new"}}', "values": "0 0 1 1"},
                {"series": f'drift_detected{{{drift}model_version="old"}}', "values": "0 0 0 0"},
            ],
            "alert_rule_test": [
                _alert("BostonHousingDriftDetected", "1m"),
                _alert(
                    "BostonHousingDriftDetected",
                    "2m",
                    {
                        "exp_labels": {"severity": "warning", "model_version": "new"},
                        "exp_annotations": {
                            "summary": "Input or prediction drift for model new",
                            "description": _annotation("BostonHousingDriftDetected"),
                        },
                    },
                ),
            ],
        },
        {
            # the coverage test of one model version alarms; the other's never does
            "interval": "1m",
            "input_series": [
                {
                    "series": f'model_interval_coverage_alarm{{{performance}model_version="new"}}',
                    "values": "0 0 1 1",
                },
                {
                    "series": f'model_interval_coverage_alarm{{{performance}model_version="old"}}',
                    "values": "0 0 0 0",
                },
            ],
            "alert_rule_test": [
                _alert("BostonHousingIntervalCoverageLow", "1m"),
                _alert(
                    "BostonHousingIntervalCoverageLow",
                    "2m",
                    {
                        "exp_labels": {"severity": "warning", "model_version": "new"},
                        "exp_annotations": {
                            "summary": "Prediction intervals of model new cover less than promised",
                            "description": _annotation("BostonHousingIntervalCoverageLow"),
                        },
                    },
                ),
            ],
        },
        {
            # 3 of every 63 requests fail: 4.8% > 1% for five minutes; a model is loaded
            "interval": "1m",
            "input_series": [
                {
                    "series": f'http_requests_total{{{api}, route="/predict", status="200"}}',
                    "values": "0+60x20",
                },
                {
                    "series": f'http_requests_total{{{api}, route="/predict", status="500"}}',
                    "values": "0+3x20",
                },
                {"series": f"model_loaded{{{api}}}", "values": "1x20"},
            ],
            "alert_rule_test": [
                _alert("BostonHousingApiHighErrorRate", "5m"),
                _alert(
                    "BostonHousingApiHighErrorRate",
                    "10m",
                    {
                        "exp_labels": {"severity": "critical"},
                        "exp_annotations": {
                            "summary": "More than 1% of API requests fail with 5xx",
                            "description": "4.762% of requests returned 5xx over the last 5 "
                            "minutes.",
                        },
                    },
                ),
                _alert("BostonHousingModelNotLoaded", "10m"),
            ],
        },
        {
            # a fifth of CRIM's values are outside the training range; none of RM's
            "interval": "1m",
            "input_series": [
                {
                    "series": f'model_input_out_of_range_total{{{api}, feature="CRIM"}}',
                    "values": "0+12x30",
                },
                {
                    "series": f'model_input_out_of_range_total{{{api}, feature="RM"}}',
                    "values": "0x30",
                },
                {
                    "series": f'model_input_value_count{{{api}, feature="CRIM"}}',
                    "values": "0+60x30",
                },
                {"series": f'model_input_value_count{{{api}, feature="RM"}}', "values": "0+60x30"},
            ],
            "alert_rule_test": [
                _alert("BostonHousingInputsOutOfRange", "10m"),  # pending: needs 15 minutes
                _alert(
                    "BostonHousingInputsOutOfRange",
                    "20m",
                    {
                        "exp_labels": {"severity": "warning", "feature": "CRIM"},
                        "exp_annotations": {
                            "summary": "CRIM: over 5% of inputs outside the training range",
                            "description": "20% of CRIM values in the last 5 minutes fell outside "
                            "the range seen in training; predictions there are extrapolations.",
                        },
                    },
                ),
            ],
        },
    ]
    rules_test = tmp_path / "alerts_test.yml"
    rules_test.write_text(
        yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests})
    )
    _promtool("test", "rules", str(rules_test))


def _labels(selector: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', selector))


def _annotation(alert: str) -> str:
    (rule,) = (rule for rule in _alert_rules() if rule["alert"] == alert)
    description: str = rule["annotations"]["description"]
    return description


# ----------------------------------------------------------------------------- the live stack


@dataclass(frozen=True)
class Stack:
    prometheus: str
    pushgateway: str
    api: str
    log: Path
    model_dir: Path
    card: dict[str, Any]
    report_exit_code: int
    performance: dict[str, Any]  # the performance report's performance.json, once pushed


def _houses(count: int, seed: int) -> list[dict[str, float | None]]:
    """Houses like the tiny model's training rows, with two departures from them mixed in:
    the first tract (outside their range in several features) and a missing LSTAT."""
    table = synthetic_table(count, seed=seed)[list(FEATURE_NAMES)]
    houses: list[dict[str, float | None]] = [
        {str(name): float(value) for name, value in row.items()} for row in table.to_dict("records")
    ]
    for index in range(0, count, 5):
        houses[index] = {**FIRST_TRACT}
    for index in range(1, count, 7):
        houses[index]["LSTAT"] = None
    return houses


def _send_traffic(api: str, houses: list[dict[str, float | None]]) -> None:
    """Predictions, plus a few requests a real service sees too: no key (401), bad CHAS (422)."""
    with httpx.Client(base_url=api, headers={"X-API-Key": API_KEY}, timeout=10) as client:
        for house in houses:
            response = client.post("/predict", json=house)
            assert response.status_code == 200, response.text
        assert httpx.post(f"{api}/predict", json=FIRST_TRACT).status_code == 401
        assert client.post("/predict", json={**FIRST_TRACT, "CHAS": 3}).status_code == 422


def _query(prometheus: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}\n{body.get('errorType')}: {body.get('error')}"
    data: dict[str, Any] = body["data"]
    return data


def _wait_for(
    prometheus: str, expr: str, done: Callable[[list[Any]], bool], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(_query(prometheus, expr)["result"]):
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never saw {expr} as expected in {timeout} s")


def _at_least(count: int) -> Callable[[list[Any]], bool]:
    return lambda result: bool(result) and float(result[0]["value"][1]) >= count


def _push_drift(stack: Stack) -> int:
    """The drift report on the server's prediction log, pushed to the Pushgateway; its exit code."""
    completed = subprocess.run(
        [
            sys.executable, "-m", "monitoring.report", "--log", str(stack.log),
            "--model-dir", str(stack.model_dir), "--min-rows", "10",
            "--out", str(stack.log.parent / "drift-report"), "--push", stack.pushgateway,
        ],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    # 0: no drift, 1: drift found; both push a verdict. 2: nothing could be judged.
    assert completed.returncode in (0, 1), f"monitoring.report:\n{completed.stdout}\n" + (
        completed.stderr
    )
    return completed.returncode


def _push_performance(stack: Stack) -> dict[str, Any]:
    """The performance report, pushed, on labelled predictions of the stack's model served with
    intervals that cover about 60% of their labels (so its coverage test alarms)."""
    labels = stack.log.parent / "labelled.jsonl"
    writer = PredictionLog(str(labels), 1.0)
    version = stack.card["model_version"]
    errors = np.random.default_rng(4).normal(0, 1.0, 200)
    for index in range(len(errors)):
        writer.record(
            request_id=f"l{index}", route="/predict", model_version=version, inputs=[{}],
            predictions=[20.0], latency_ms=1.0, intervals=[Interval(19.16, 20.84, False)],
            level=0.9,
        )  # fmt: skip
    writer.append(
        [
            {"ts": "2026-11-02T00:00:00+00:00", "event": "feedback", "request_id": f"l{index}",
             "row": 0, "actual": 20.0 + float(error)}
            for index, error in enumerate(errors)
        ]
    )  # fmt: skip
    writer.close()
    # the tiny model's card, given the test RMSE interval a real card carries
    model_dir = stack.log.parent / "performance-models"
    shutil.copytree(stack.model_dir, model_dir)
    card = json.loads((model_dir / "model_card.json").read_text())
    card["metrics"]["test"].update(rmse_ci95_low=0.85, rmse_ci95_high=1.15)
    (model_dir / "model_card.json").write_text(json.dumps(card))
    out = stack.log.parent / "performance-report"
    completed = subprocess.run(
        [
            sys.executable, "-m", "monitoring.performance", "--log", str(labels),
            "--model-dir", str(model_dir), "--out", str(out), "--push", stack.pushgateway,
        ],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    # 1: the coverage alarm (an uncaught error would exit 1 too, hence the printed verdict)
    assert completed.returncode == 1 and "COVERAGE ALARM" in completed.stdout, (
        f"monitoring.performance:\n{completed.stdout}\n{completed.stderr}"
    )
    report: dict[str, Any] = json.loads((out / "performance.json").read_text())
    return report


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API, Pushgateway and Prometheus (1 s scrapes) on loopback, after traffic and a drift push.

    Module-scoped, so the servers start once for all the expressions checked against them.
    """
    root = tmp_path_factory.mktemp("monitoring")
    model_dir = root / "models"
    card = export_tiny_model(model_dir)  # the model_dir fixture's model (that one is per test)
    api_port, push_port, prometheus_port = free_port(), free_port(), free_port()
    config = _loopback_config(
        root / "prometheus",
        f"127.0.0.1:{api_port}",
        f"127.0.0.1:{push_port}",
        interval="1s",
    )
    live = Stack(
        prometheus=f"http://127.0.0.1:{prometheus_port}",
        pushgateway=f"http://127.0.0.1:{push_port}",
        api=f"http://127.0.0.1:{api_port}",
        log=root / "predictions.jsonl",
        model_dir=model_dir,
        card=card,
        report_exit_code=-1,  # set once the report has run
        performance={},  # set once the performance report has run
    )
    # without --persistence.file the Pushgateway writes nothing to disk
    push_command = [str(PUSHGATEWAY), f"--web.listen-address=127.0.0.1:{push_port}"]
    prometheus_command = [
        str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={root / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
    ]  # fmt: skip
    with ExitStack() as servers:
        servers.enter_context(running_api(model_dir, live.log, port=api_port, api_key=API_KEY))
        for command, ready, output in (
            (push_command, f"{live.pushgateway}/-/ready", "pushgateway.out"),
            (prometheus_command, f"{live.prometheus}/-/ready", "prometheus.out"),
        ):
            servers.enter_context(running_server(command, ready, root / output))
        # Traffic in two halves with a scrape between them, so that every counter has grown
        # between two samples and rate() is defined and above zero.
        houses = _houses(PREDICTIONS, seed=3)
        predicted = f'sum(http_requests_total{{job="{API_JOB}", route="/predict", status="200"}})'
        _send_traffic(live.api, houses[: PREDICTIONS // 2])
        _wait_for(live.prometheus, predicted, _at_least(PREDICTIONS // 2))
        _send_traffic(live.api, houses[PREDICTIONS // 2 :])
        live = replace(live, report_exit_code=_push_drift(live))
        live = replace(live, performance=_push_performance(live))
        _wait_for(live.prometheus, predicted, _at_least(PREDICTIONS))
        _wait_for(live.prometheus, "drift_last_run_timestamp_seconds", bool)
        _wait_for(live.prometheus, "performance_last_run_timestamp_seconds", bool)
        yield live


def test_prometheus_scrapes_both_jobs_and_loads_every_alert(stack: Stack) -> None:
    targets = httpx.get(f"{stack.prometheus}/api/v1/targets", timeout=10).json()["data"]
    health = {target["labels"]["job"]: target["health"] for target in targets["activeTargets"]}
    assert health == {API_JOB: "up", PUSH_JOB: "up"}
    groups = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
    assert loaded == {rule["alert"]: "ok" for rule in _alert_rules()}


def test_prometheus_holds_the_reports_verdict(stack: Stack) -> None:
    version = stack.card["model_version"]
    result = _query(stack.prometheus, f'drift_detected{{model_version="{version}"}}')["result"]
    assert [sample["metric"]["job"] for sample in result] == [DRIFT_JOB]
    assert float(result[0]["value"][1]) == (1.0 if stack.report_exit_code == 1 else 0.0)


def test_prometheus_holds_the_performance_reports_coverage(stack: Stack) -> None:
    version = stack.card["model_version"]
    figures = stack.performance["coverage"]["model_versions"][version]
    assert figures["alarm"] is True
    expected = {
        "model_interval_coverage_alarm": 1.0,
        "model_interval_coverage": figures["covered"] / figures["labels"],
        "model_interval_coverage_ci95_low": figures["coverage_ci95"][0],
        "model_interval_coverage_labels": figures["labels"],
        "model_interval_nominal_coverage": 0.9,
    }
    for metric, value in expected.items():
        result = _query(stack.prometheus, f'{metric}{{model_version="{version}"}}')["result"]
        assert [sample["metric"]["job"] for sample in result] == [PERFORMANCE_JOB], metric
        assert float(result[0]["value"][1]) == pytest.approx(value, abs=1e-4), metric


@pytest.mark.parametrize("expr", _dashboard_queries())
def test_dashboard_query_returns_data(stack: Stack, expr: str) -> None:
    assert _query(stack.prometheus, expr)["result"], f"no data for {expr}"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_alert_expression_parses_and_its_signal_returns_data(
    stack: Stack, rule: dict[str, Any]
) -> None:
    _query(stack.prometheus, rule["expr"])  # the whole rule parses (empty while it holds)
    signal = _signal(rule["expr"])
    assert _query(stack.prometheus, signal)["result"], f"{rule['alert']}: no data for {signal}"
