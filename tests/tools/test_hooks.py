"""The pre-commit hooks in a temporary clone, as a contributor runs them: all pass on the project
as committed, and each kind of bad change fails its hook with a message that names the file."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from tests.conftest import REPO, clone_working_tree, run

pytestmark = pytest.mark.e2e
PRE_COMMIT = str(Path(sys.executable).parent / "pre-commit")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone that uses this checkout's .venv, as `make venv` would have made it there."""
    repo = clone_working_tree(tmp_path_factory.mktemp("hooks") / "repo")
    (repo / ".venv").symlink_to(Path(sys.executable).parents[1], target_is_directory=True)
    return repo


def hooks(clone: Path, *args: str) -> tuple[int, str]:
    env = {"PRE_COMMIT_HOME": str(clone.parent / "pre-commit-home")}
    completed = run([PRE_COMMIT, "run", *args], clone, check=False, env=env)
    return completed.returncode, completed.stdout + completed.stderr


def reset(clone: Path) -> None:
    run(["git", "checkout", "--", "."], clone)
    run(["git", "clean", "-fdq", "--exclude=.venv"], clone)


def test_every_hook_passes_on_the_project_as_committed(clone: Path) -> None:
    code, output = hooks(clone, "--all-files")
    assert code == 0, output
    configured = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    ids = [hook["id"] for repo in configured["repos"] for hook in repo["hooks"]]
    assert ids == ["ruff-check", "ruff-format", "mypy", "nbstripout", "dvc-lock-current"]
    assert output.count("Passed") == len(ids)


def test_an_unformatted_file_fails_ruff_format_and_is_rewritten(clone: Path) -> None:
    bad = clone / "stages" / "unformatted.py"
    bad.write_text("x = {  'a':1 }\n")
    run(["git", "add", str(bad)], clone)
    code, output = hooks(clone, "ruff-format", "--files", "stages/unformatted.py")
    assert code == 1
    assert "files were modified by this hook" in output
    assert bad.read_text() == 'x = {"a": 1}\n'
    reset(clone)


def test_an_unused_import_fails_ruff_check_naming_the_file(clone: Path) -> None:
    bad = clone / "stages" / "unused.py"
    bad.write_text("import os\n")
    code, output = hooks(clone, "ruff-check", "--files", "stages/unused.py")
    assert code == 1
    assert "stages/unused.py" in output and "F401" in output
    reset(clone)


def test_a_notebook_with_outputs_fails_and_is_stripped(clone: Path) -> None:
    path = clone / "notebooks" / "exploring_data_analysis.ipynb"
    notebook = nbformat.read(path, as_version=4)
    cell = notebook.cells[1]
    cell.execution_count = 1
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    nbformat.write(notebook, path)
    code, output = hooks(clone, "nbstripout", "--files", "notebooks/exploring_data_analysis.ipynb")
    assert code == 1, output
    stripped: dict[str, Any] = json.loads(path.read_text())
    assert stripped["cells"][1]["outputs"] == []
    assert path.read_bytes() == (REPO / "notebooks/exploring_data_analysis.ipynb").read_bytes()
    reset(clone)


def test_a_pipeline_change_without_repro_fails_the_dvc_lock_hook(clone: Path) -> None:
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("test_size: 0.2", "test_size: 0.25"))
    code, output = hooks(clone, "dvc-lock-current", "--files", "params.yaml")
    assert code == 1
    assert "preprocess: param preprocess.test_size modified" in output
    assert "run `dvc repro`" in output
    reset(clone)


def test_the_hooks_run_the_commands_of_make_lint() -> None:
    """One verdict: every hook's tool is one `make lint` runs, with the same configuration."""
    makefile = (REPO / "Makefile").read_text()
    lint = re.search(r"^lint: venv\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert lint is not None
    lint_tools = {line.split()[0] if line.split()[0] != "python" else line.split()[2]
                  for line in lint.group(1).split("\n") if line.strip()}  # fmt: skip
    configured = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hook_tools = set()
    for hook in configured["repos"][0]["hooks"]:
        words = hook["entry"].split()
        hook_tools.add(
            words[2] if words[0].endswith("python") else words[0].removeprefix(".venv/bin/")
        )
    assert hook_tools == lint_tools == {"ruff", "mypy", "nbstripout", "tools.check_dvc_lock"}


def test_the_dvc_lock_hook_watches_every_file_of_the_pipeline() -> None:
    """The hook runs only when a file it watches is committed: every stage's files are watched."""
    configured = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hook = next(h for h in configured["repos"][0]["hooks"] if h["id"] == "dvc-lock-current")
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    paths = {name: path for block in pipeline["vars"] for name, path in block.items()}
    files = {"dvc.yaml", "dvc.lock", "params.yaml"}
    for stage in pipeline["stages"].values():
        for entry in [*stage["deps"], *stage.get("outs", []), *stage.get("metrics", [])]:
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            files.add(re.sub(r"\$\{(\w+)\}", lambda m: paths[m.group(1)], path))
    # what git tracks can be committed; DVC-cached outputs cannot
    in_git = set(run(["git", "ls-files"], REPO).stdout.splitlines())
    tracked = {path for path in files if path in in_git}
    assert {"stages/eda.py", "notebooks/exploring_data_analysis.ipynb"} <= tracked
    unwatched = sorted(path for path in tracked if not re.search(hook["files"], path))
    assert not unwatched, f"the dvc-lock-current hook does not watch {unwatched}"
