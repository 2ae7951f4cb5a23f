"""Property-based: whatever a client sends, the answer is never a 5xx, and valid houses always
get a finite prediction."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.main import create_app
from api.schemas import FIRST_TRACT
from api.settings import Settings
from stages.contract import FEATURES
from tests.conftest import export_tiny_model

NAMES = [feature.name for feature in FEATURES]
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUE = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats()
    | st.text(max_size=5)
    | ANY_JSON
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    model_dir = tmp_path_factory.mktemp("model")
    export_tiny_model(model_dir)
    app = create_app(Settings(model_dir=model_dir, log_sink=str(model_dir / "log.jsonl")))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _post(client: TestClient, route: str, payload: Any) -> Any:
    # json.dumps writes NaN/Infinity literals, which a hostile client can send too
    return client.post(route, content=json.dumps(payload).encode())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    house=st.fixed_dictionaries({}, optional=dict.fromkeys(NAMES, FIELD_VALUE)),
    extra=st.dictionaries(st.text(max_size=5), ANY_JSON, max_size=2),
)
def test_no_house_body_causes_a_server_error(
    client: TestClient, house: dict[str, Any], extra: dict[str, Any]
) -> None:
    response = _post(client, "/predict", {**house, **extra})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert math.isfinite(response.json()["prediction"])


@settings(max_examples=100, deadline=None)
@given(payload=ANY_JSON)
def test_no_body_of_any_shape_causes_a_server_error(client: TestClient, payload: Any) -> None:
    for route in ("/predict", "/predict/batch", "/invocations"):
        assert _post(client, route, payload).status_code in (200, 422)


def _valid_value(feature: Any) -> st.SearchStrategy[Any]:
    if feature.kind == "binary":
        return st.sampled_from([0, 1])
    if feature.kind == "integer":
        return st.integers(int(feature.minimum), int(feature.maximum))
    return st.floats(feature.minimum, feature.maximum, allow_nan=False)


VALID_HOUSE = st.fixed_dictionaries({f.name: _valid_value(f) for f in FEATURES})


@settings(max_examples=100, deadline=None)
@given(house=VALID_HOUSE)
def test_every_valid_house_gets_a_finite_prediction(
    client: TestClient, house: dict[str, Any]
) -> None:
    response = _post(client, "/predict", house)
    assert response.status_code == 200, response.text
    assert math.isfinite(response.json()["prediction"])


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(VALID_HOUSE, min_size=1, max_size=5),
    fmt=st.sampled_from(["dataframe_records", "instances"]),
)
def test_invocations_agrees_with_predict(
    client: TestClient, rows: list[dict[str, Any]], fmt: str
) -> None:
    batch = _post(client, "/invocations", {fmt: rows}).json()["predictions"]
    single = [_post(client, "/predict", row).json()["prediction"] for row in rows]
    assert batch == pytest.approx(single, rel=1e-12)


def test_the_documented_example_names_every_contract_column() -> None:
    assert set(FIRST_TRACT) == set(NAMES)


@settings(max_examples=150, deadline=None)
@given(
    columns=st.lists(st.sampled_from(NAMES) | ANY_JSON, max_size=4),
    data=st.lists(st.lists(FIELD_VALUE, max_size=4) | ANY_JSON, max_size=4) | ANY_JSON,
    by_column=st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=4), ANY_JSON, max_size=4),
)
def test_no_columnar_body_causes_a_server_error(
    client: TestClient, columns: list[Any], data: Any, by_column: dict[str, Any]
) -> None:
    # the column-wise check (api/columnar.py) sees these shapes; none may get past it as a 5xx
    for payload in (
        {"dataframe_split": {"columns": columns, "data": data}},
        {"inputs": by_column},
        {"instances": by_column},
    ):
        assert _post(client, "/invocations", payload).status_code in (200, 422)
