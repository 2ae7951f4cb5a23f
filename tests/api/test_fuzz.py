"""Schemathesis, the standard OpenAPI fuzzer, against a live server from the app's own document.

Every route, thousands of generated requests (valid and invalid), every check: no 5xx, every
status and body as documented, every schema-violating request refused and every schema-valid one
accepted. One check is off on one route (schemathesis.toml): positive_data_acceptance on
/invocations, because no JSON Schema of MLflow's dataframe_split can say that a row must hold
one value per column, whatever the columns.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import running_api

# Every check is on (the file says so, and where one is off, and why; it also counts 413 as
# refusing a schema-violating body)
CONFIG = Path(__file__).with_name("schemathesis.toml")


def fuzz(url: str, folder: Path, *extra: str) -> tuple[int, str]:
    """Run schemathesis (seeded, so a failure can be replayed; its cache kept in `folder`) and
    return the requests it made and its output; fail with that output when it found anything."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
        f"{url}/openapi.json",
        "--max-examples", "250", "--seed", "20261203", "--no-color", *extra,
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=600, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    found = re.search(r"(\d+) generated, (\d+) passed", output)
    assert found, output[-3000:]
    assert found.group(1) == found.group(2), output[-3000:]
    return int(found.group(1)), output


@pytest.mark.e2e
def test_the_fuzzer_finds_nothing_on_an_open_service(model_dir: Path, tmp_path: Path) -> None:
    with running_api(model_dir, tmp_path / "log.jsonl") as url:
        requests, output = fuzz(url, tmp_path)
    assert requests >= 1_000, output[-3000:]
    assert re.search(r"Operations:\s+6 selected / 6 total", output), output[-3000:]


@pytest.mark.e2e
def test_the_fuzzer_finds_nothing_with_a_key_and_a_rate_limit(
    model_dir: Path, tmp_path: Path
) -> None:
    # a tight limit, so that 401s and 429s are answered too and must be as documented
    with running_api(
        model_dir, tmp_path / "log.jsonl", api_key="fuzz-key", rate_limit="200/second"
    ) as url:
        requests, output = fuzz(url, tmp_path, "--header", "X-API-Key: fuzz-key")
    assert requests >= 1_000, output[-3000:]


def test_every_status_a_route_can_answer_is_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/predict", "/predict/batch", "/invocations", "/feedback"):
        responses = paths[route]["post"]["responses"]
        assert set(responses) == {"200", "401", "408", "413", "415", "422", "429", "503"}
        for status, answer in responses.items():
            assert answer["content"]["application/json"]["schema"], (route, status)
        assert set(responses["429"]["headers"]) == {
            "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
        }  # fmt: skip
    assert set(paths["/model"]["get"]["responses"]) == {"200", "429", "503"}
    assert set(paths["/health"]["get"]["responses"]) == {"200", "503"}


def test_invocations_documents_mlflows_four_formats(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/Invocation"}
    formats = document["components"]["schemas"]["Invocation"]["oneOf"]
    assert [next(iter(option["required"])) for option in formats] == [
        "dataframe_split", "dataframe_records", "instances", "inputs",
    ]  # fmt: skip
    assert all(option["additionalProperties"] is False for option in formats)
