"""dvc.yaml keeps its promises: each stage declares its module and every project module that
module imports, directly or not, so DVC re-runs a stage whenever code it runs has changed."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import yaml

from tests.conftest import REPO

STAGES = ["ingest", "eda", "preprocess", "tune", "evaluate", "export"]
NOTEBOOK = "notebooks/exploring_data_analysis.ipynb"
PROJECT_PACKAGES = ("stages", "api")


def _project_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Files of the project modules `module` imports, followed transitively."""
    seen = seen if seen is not None else set()
    path = REPO / (module.replace(".", "/") + ".py")
    if str(path) in seen:
        return seen
    seen.add(str(path))
    return _imports_in(path.read_text(), seen)


def _imports_in(source: str, seen: set[str]) -> set[str]:
    for node in ast.walk(ast.parse(source)):
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


def test_eda_declares_every_module_its_notebook_runs() -> None:
    """The notebook's imports count too: it runs in the stage, so they are the stage's code."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["eda"]
    notebook = nbformat.read(REPO / NOTEBOOK, as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    needed = {str(Path(path).relative_to(REPO)) for path in _imports_in(code, set())}
    assert "stages/families.py" in needed  # the parse found the notebook's project imports
    assert needed <= set(stage["deps"]), f"eda misses {sorted(needed - set(stage['deps']))}"
    assert "${notebook}" in stage["deps"]


def test_the_pipeline_has_its_stages_in_order() -> None:
    assert list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]) == STAGES
