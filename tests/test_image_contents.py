"""The image holds every project module the API imports: each one is copied by the Dockerfile and
let through by .dockerignore, which keeps everything else out of the build context. A module
missing from either breaks `docker build` (or the container at start), so this catches it before a
build is tried."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _project_modules_imported_by(files: list[Path]) -> set[str]:
    """Top-level modules of the repository (ROOT/<name>.py) that the files import, followed
    through those modules' own imports."""
    found: set[str] = set()
    queue = list(files)
    while queue:
        tree = ast.parse(queue.pop().read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                module = ROOT / f"{top}.py"
                if module.is_file() and top not in found:
                    found.add(top)
                    queue.append(module)
    return found


def test_the_api_imports_the_modules_the_image_is_expected_to_hold() -> None:
    modules = _project_modules_imported_by(sorted((ROOT / "api").rglob("*.py")))
    assert {"artifact", "conformal", "prediction_log"} <= modules


def test_every_project_module_the_api_imports_is_in_the_image() -> None:
    modules = _project_modules_imported_by(sorted((ROOT / "api").rglob("*.py")))
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = {
        source
        for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, flags=re.MULTILINE)
        for source in line.split()[:-1]
    }
    allowed = {
        line[1:]
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    for module in sorted(modules):
        assert f"{module}.py" in copied, f"the Dockerfile does not COPY {module}.py"
        assert f"{module}.py" in allowed, f".dockerignore keeps {module}.py out of the build"
