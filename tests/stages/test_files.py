from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stages.files import load_params, write_json
from tests.conftest import REPO


def _project(tmp_path: Path, params: dict[str, object], declared: list[str]) -> tuple[Path, Path]:
    dvc_yaml, params_yaml = tmp_path / "dvc.yaml", tmp_path / "params.yaml"
    dvc_yaml.write_text(yaml.safe_dump({"stages": {"s": {"cmd": "x", "params": declared}}}))
    params_yaml.write_text(yaml.safe_dump(params))
    return dvc_yaml, params_yaml


def test_a_stage_sees_exactly_its_declared_keys(tmp_path: Path) -> None:
    files = _project(tmp_path, {"seed": 1, "a": {"b": 2, "c": 3}, "d": 4}, ["seed", "a.b"])
    assert load_params("s", *files) == {"seed": 1, "a": {"b": 2}}


def test_a_declared_key_missing_from_params_is_named(tmp_path: Path) -> None:
    files = _project(tmp_path, {"a": {"c": 3}}, ["a.b"])
    with pytest.raises(KeyError, match=r"params.yaml has no key 'a.b', which stage 's' reads"):
        load_params("s", *files)


def test_an_unknown_stage_is_named(tmp_path: Path) -> None:
    files = _project(tmp_path, {}, [])
    with pytest.raises(KeyError, match="no stage named 'nope'"):
        load_params("nope", *files)


@pytest.mark.parametrize(
    "stage", ["ingest", "preprocess", "tune", "calibrate", "evaluate", "export"]
)
def test_every_real_stage_finds_its_declared_params(stage: str) -> None:
    params = load_params(stage, REPO / "dvc.yaml", REPO / "params.yaml")
    assert params, f"stage {stage} declares no params"


def test_write_json_is_byte_stable(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    write_json(first, {"b": 1.5, "a": [1, 2]})
    write_json(second, {"a": [1, 2], "b": 1.5})
    assert first.read_bytes() == second.read_bytes()
    assert first.read_text().endswith("}\n")
    with pytest.raises(ValueError, match="Out of range float"):
        write_json(first, {"nan": float("nan")})
