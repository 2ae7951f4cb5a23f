"""dvc.yaml keeps its promises: each stage declares its module and every project module that
module imports, directly or not, so DVC re-runs a stage whenever code it runs has changed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

STAGES = ["ingest", "preprocess", "tune", "evaluate", "export"]
PROJECT_PACKAGES = ("stages", "api")


def _project_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Files of the project modules `module` imports, followed transitively."""
    seen = seen if seen is not None else set()
    path = REPO / (module.replace(".", "/") + ".py")
    if str(path) in seen:
        return seen
    seen.add(str(path))
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if (
                name.split(".")[0] in PROJECT_PACKAGES
                and (REPO / (name.replace(".", "/") + ".py")).is_file()
            ):
                _project_imports(name, seen)
    return seen


@pytest.mark.parametrize("stage", STAGES)
def test_stage_declares_every_module_it_runs(stage: str) -> None:
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
    needed = {str(Path(path).relative_to(REPO)) for path in _project_imports(f"stages.{stage}")}
    assert needed <= set(declared), f"{stage} misses {sorted(needed - set(declared))}"


def test_the_pipeline_has_the_five_stages_in_order() -> None:
    assert list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]) == STAGES
