"""Nothing acts on import: importing the project's packages creates, deletes and sets nothing, even
in a spawned child process like a uvicorn worker (where the metrics folder is chosen at start-up,
by the lifespan, not at import)."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pkgutil
from pathlib import Path

import pytest

PACKAGES = ["api", "stages", "monitoring", "flows", "studies"]


def _import_everything(
    package: str, queue: multiprocessing.Queue[tuple[list[str], dict[str, str]]]
) -> None:
    temp = Path(os.environ["TMPDIR"])
    before_env = dict(os.environ)
    before_files = sorted(str(path) for path in temp.rglob("*"))
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, f"{package}."):
        if module.name.endswith("__main__"):
            continue  # an entry point: running it is its job
        importlib.import_module(module.name)
    after_files = sorted(str(path) for path in temp.rglob("*"))
    changed_env = {
        name: os.environ.get(name, "<unset>")
        for name in set(before_env) | set(os.environ)
        if before_env.get(name) != os.environ.get(name)
    }
    queue.put((sorted(set(before_files) ^ set(after_files)), changed_env))


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_package_changes_nothing(
    package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    (tmp_path / "another-servers-folder").mkdir()  # nothing may delete what is not its own
    context = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    queue: multiprocessing.Queue[tuple[list[str], dict[str, str]]] = context.Queue()
    child = context.Process(target=_import_everything, args=(package, queue))
    child.start()
    files, env = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert files == [], f"importing {package} created or deleted {files}"
    assert env == {}, f"importing {package} set {env}"
