"""dvc.yaml keeps its promises: each stage declares its module and every project module that
module imports, directly or not, so DVC re-runs a stage whenever code it runs has changed."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import yaml

from tests.conftest import REPO

STAGES = ["ingest", "eda", "preprocess", "tune", "calibrate", "evaluate", "export"]
NOTEBOOK = "notebooks/exploring_data_analysis.ipynb"
PROJECT_PACKAGES = ("stages", "api", "monitoring", "artifact", "conformal")


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


def _top_imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


@pytest.mark.parametrize("folder", ["stages", "monitoring"])
def test_no_pipeline_or_monitoring_module_imports_the_api(folder: str) -> None:
    """Data flows one way: work on the serving code never invalidates a pipeline stage."""
    for path in sorted((REPO / folder).glob("*.py")):
        api = sorted(m for m in _top_imports(path) if m == "api" or m.startswith("api."))
        assert not api, f"{path.relative_to(REPO)} imports {api}"


def test_monitoring_reads_only_the_contracts_of_the_pipeline() -> None:
    for path in sorted((REPO / "monitoring").glob("*.py")):
        stages = {m for m in _top_imports(path) if m == "stages" or m.startswith("stages.")}
        assert stages <= {"stages.contract"}, f"{path.relative_to(REPO)} imports {stages}"
