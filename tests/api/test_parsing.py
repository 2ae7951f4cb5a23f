"""Bodies crafted to break the parser: repeated keys are a 422 naming the key and where it is;
nesting of any depth is a 4xx, never a 5xx or a RecursionError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api import parsing
from api.schemas import FIRST_TRACT
from tests.conftest import running_api

HOUSE = json.dumps(FIRST_TRACT)
# the first tract with CRIM sent twice: which of the two did the client mean?
TWICE = HOUSE[:-1] + ', "CRIM": 0.5}'
ROUTES = ["/predict", "/predict/batch", "/invocations"]


@pytest.mark.parametrize(
    ("route", "body", "loc"),
    [
        ("/predict", TWICE, ["body", "CRIM"]),
        ("/predict/batch", f'{{"rows": [{HOUSE}, {TWICE}]}}', ["body", "rows", 1, "CRIM"]),
        ("/invocations", f'{{"dataframe_records": [{TWICE}]}}',
         ["body", "dataframe_records", 0, "CRIM"]),
        ("/invocations", f'{{"instances": [{HOUSE}, {HOUSE}, {TWICE}]}}',
         ["body", "instances", 2, "CRIM"]),
        ("/invocations", '{"inputs": {"RM": [6.0], "RM": [7.0]}}', ["body", "inputs", "RM"]),
        ("/invocations", f'{{"inputs": [{HOUSE}], "inputs": []}}', ["body", "inputs"]),
        ("/predict/batch", f'{{"rows": [{HOUSE}], "rows": [{HOUSE}]}}', ["body", "rows"]),
    ],
)  # fmt: skip
def test_a_repeated_key_is_named_with_its_place(
    client: TestClient, route: str, body: str, loc: list[Any]
) -> None:
    response = client.post(route, content=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [
        {"loc": loc, "msg": response.json()["detail"][0]["msg"], "type": "duplicate_key"}
    ]
    assert f'duplicate key "{loc[-1]}"' in response.json()["detail"][0]["msg"]


def test_a_repeated_key_is_named_even_when_its_last_value_is_also_invalid(
    client: TestClient,
) -> None:
    body = HOUSE[:-1] + ', "RM": "many"}'
    detail = client.post("/predict", content=body).json()["detail"]
    assert [(item["loc"], item["type"]) for item in detail] == [(["body", "RM"], "duplicate_key")]


def test_a_colon_inside_a_string_is_not_taken_for_a_key(client: TestClient) -> None:
    body = {"dataframe_records": [FIRST_TRACT], "params": {"note": "a:b:c"}}
    assert client.post("/invocations", json=body).status_code == 200
    response = client.post("/predict", content=HOUSE[:-1] + ', "x:y": 1}')
    assert response.json()["detail"][0]["loc"] == ["body", "x:y"]
    assert response.json()["detail"][0]["type"] == "extra_forbidden"


def test_the_place_of_a_duplicate_is_found_across_lines_and_escapes() -> None:
    body = '{"a": [1, {"b": "x:\\"y"}],\n "c": [{"é": 1}, {"é": 1,\n  "é" :  2}]}'.encode()
    with pytest.raises(parsing.DuplicateKey) as raised:
        parsing.parse(body)
    assert (raised.value.key, raised.value.path) == ("é", ["c", 1])


def test_a_duplicate_inside_a_later_sibling_is_not_placed_in_an_earlier_one() -> None:
    with pytest.raises(parsing.DuplicateKey) as raised:
        parsing.parse(b'{"a": {"b": 1}, "c": 2, "c": 3}')
    assert raised.value.path == []


def test_bodies_without_duplicates_parse_as_json() -> None:
    assert parsing.parse(b'{"a": [1, {"a": 2}], "b": {"a": null}}') == {
        "a": [1, {"a": 2}], "b": {"a": None}
    }  # fmt: skip
    with pytest.raises(parsing.NonFinite) as raised:
        parsing.parse(b'{"a": [1, NaN]}')
    assert raised.value.path == ["a", 1]
    with pytest.raises(ValueError, match="key must be a string"):
        parsing.parse(b"{not json")


def _nested(depth: int, kind: str) -> bytes:
    if kind == "arrays":
        return b"[" * depth + b"]" * depth
    if kind == "objects":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "unclosed":
        return b"[" * depth
    # nested inside a field the schema knows, in every format
    value = "[" * depth + "1" + "]" * depth
    return HOUSE.replace('"CRIM": 0.00632', f'"CRIM": {value}').encode()


@pytest.mark.parametrize("kind", ["arrays", "objects", "unclosed", "in-a-field"])
@pytest.mark.parametrize("depth", [50, 199, 200, 201, 1_000, 5_000, 100_000])
def test_deep_nesting_is_a_client_error(client: TestClient, depth: int, kind: str) -> None:
    house = _nested(depth, kind)
    bodies = {
        "/predict": house,
        "/predict/batch": b'{"rows": [' + house + b"]}",
        "/invocations": b'{"dataframe_records": [' + house + b"]}",
    }
    for route, body in bodies.items():
        response = client.post(route, content=body)
        assert response.status_code == 422, (route, response.status_code, response.text[:300])
        assert response.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize("depth", [150, 100_000])
def test_deep_nesting_in_columnar_bodies_is_a_client_error(client: TestClient, depth: int) -> None:
    value = b"[" * depth + b"1" + b"]" * depth
    for body in (
        b'{"dataframe_split": {"columns": ["CRIM"], "data": [[' + value + b"]]}}",
        b'{"inputs": {"CRIM": [' + value + b"]}}",
    ):
        response = client.post("/invocations", content=body)
        assert response.status_code == 422, response.text[:300]


@pytest.mark.e2e
def test_a_real_server_refuses_duplicates_and_deep_nesting(model_dir: Path, tmp_path: Path) -> None:
    with running_api(model_dir, tmp_path / "predictions.jsonl") as url, httpx.Client() as http:
        for route, body in [
            ("/predict", TWICE),
            ("/predict/batch", f'{{"rows": [{TWICE}]}}'),
            ("/invocations", f'{{"dataframe_records": [{TWICE}]}}'),
        ]:
            response = http.post(f"{url}{route}", content=body)
            assert response.status_code == 422
            assert response.json()["detail"][0]["type"] == "duplicate_key"
            assert response.json()["detail"][0]["loc"][-1] == "CRIM"
        for route in ROUTES:
            deep = http.post(f"{url}{route}", content=b"[" * 100_000 + b"]" * 100_000)
            assert deep.status_code == 422
        # and the server is still serving
        assert http.post(f"{url}/predict", content=HOUSE).status_code == 200
