"""The GitHub workflows: valid for GitHub (its workflow JSON schema, as check-jsonschema vendors
it), running what .ci/run runs, and releasing files the pipeline really writes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, run

WORKFLOWS = REPO / ".github" / "workflows"
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")


def validate(*paths: Path) -> tuple[int, str]:
    completed = run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        REPO, check=False,
    )  # fmt: skip
    return completed.returncode, completed.stdout + completed.stderr


def workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def run_steps(job: dict[str, Any]) -> list[str]:
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def test_both_workflows_validate_against_the_github_schema() -> None:
    code, output = validate(WORKFLOWS / "ci.yml", WORKFLOWS / "release.yml")
    assert code == 0, output
    assert "ok -- validation done" in output


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (lambda text: text.replace("    runs-on: ubuntu-latest\n", ""), "'runs-on' is a required"),
        (lambda text: text.replace("    steps:\n", "    step:\n"), "'step' was unexpected"),
    ],
)
def test_the_schema_check_catches_a_broken_workflow(
    tmp_path: Path, edit: Any, complaint: str
) -> None:
    broken = tmp_path / "ci.yml"
    broken.write_text(edit((WORKFLOWS / "ci.yml").read_text()))
    code, output = validate(broken)
    assert code == 1
    assert complaint in output


def test_ci_runs_what_ci_run_runs() -> None:
    ci_run = [
        line.split("#")[0].strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.startswith("make ")
    ]
    assert ci_run == ["make repro", "make lint", "make test", "make container"]
    job = workflow("ci.yml")["jobs"]["ci"]
    assert run_steps(job) == ci_run


def test_ci_uses_the_python_the_lock_is_resolved_for() -> None:
    for name in ("ci.yml", "release.yml"):
        steps = next(iter(workflow(name)["jobs"].values()))["steps"]
        setup = next(
            step for step in steps if step.get("uses", "").startswith("actions/setup-python")
        )
        assert setup["with"]["python-version"] == "3.11"
        assert setup["with"]["cache-dependency-path"] == "requirements.lock"
    assert 'requires-python = "==3.11.*"' in (REPO / "pyproject.toml").read_text()


def test_ci_caches_dvc_keyed_on_the_lock_files() -> None:
    steps = workflow("ci.yml")["jobs"]["ci"]["steps"]
    cache = next(step for step in steps if step.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == ".dvc/cache"
    assert "hashFiles('dvc.lock', 'requirements.lock'" in cache["with"]["key"]


def test_the_release_attaches_files_the_pipeline_writes() -> None:
    release = workflow("release.yml")
    assert release[True]["push"]["tags"] == ["v*"]  # PyYAML reads the key `on` as True
    steps = release["jobs"]["release"]["steps"]
    assert run_steps(release["jobs"]["release"])[:2] == ["make repro", "make container"]
    command = run_steps(release["jobs"]["release"])[-1]
    assets = [word for word in command.split() if word.endswith(".json")]
    assert "models/model_card.json" in assets and "metrics/eda.json" in assets
    declared = (REPO / "dvc.yaml").read_text() + (REPO / "dvc.lock").read_text()
    for asset in assets:
        assert asset in declared, f"{asset} is not a pipeline output"
        assert (REPO / asset).is_file()
    assert any("gh release create" in step.get("run", "") for step in steps)
