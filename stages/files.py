"""What every stage's main() shares: reading its declared params and writing deterministic files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from stages.contract import COLUMNS

MISSING = object()


def load_params(
    stage: str, dvc_yaml: Path = Path("dvc.yaml"), params_yaml: Path = Path("params.yaml")
) -> dict[str, Any]:
    """Return only the params.yaml keys that `stage` declares under `params:` in dvc.yaml.

    Reading through the declaration means a stage cannot use a key DVC does not hash for it.
    """
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    if stage not in stages:
        raise KeyError(f"dvc.yaml has no stage named {stage!r}")
    params = yaml.safe_load(params_yaml.read_text()) or {}
    selected: dict[str, Any] = {}
    for key in stages[stage].get("params", []):
        value = _lookup(params, key)
        if value is MISSING:
            raise KeyError(f"params.yaml has no key {key!r}, which stage {stage!r} reads")
        _assign(selected, key, value)
    return selected


def pipeline_path(name: str, dvc_yaml: Path = Path("dvc.yaml")) -> Path:
    """A path from dvc.yaml's `vars`, for code run outside a stage command (the notebook).

    Stages get their paths on the command line; this keeps dvc.yaml their one home for the rest.
    """
    for block in yaml.safe_load(dvc_yaml.read_text()).get("vars", []):
        if isinstance(block, dict) and name in block:
            return Path(block[name])
    raise KeyError(f"dvc.yaml declares no path named {name!r} under vars")


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def _assign(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def write_json(path: Path, payload: Any) -> None:
    """Write JSON with sorted keys and a final newline, so equal content means equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_table(path: Path) -> pd.DataFrame:
    """Read a table that ingest or preprocess wrote, with the contract's dtypes."""
    return pd.read_csv(path, dtype={column.name: "float64" for column in COLUMNS})
