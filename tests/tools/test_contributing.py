"""CONTRIBUTING.md stays true: every make target it names exists, every file or folder it points at
is in the repository, and the README links to it."""

from __future__ import annotations

import re

from tests.conftest import REPO

GUIDE = (REPO / "CONTRIBUTING.md").read_text()


def test_every_make_target_it_names_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", GUIDE))
    assert {"repro", "hooks", "lint", "test", "lock", "container"} <= named
    for target in named:
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), f"make {target}"


def test_every_path_it_names_exists() -> None:
    paths = {
        path.split("::")[0]
        for path in re.findall(
            r"`([\w./-]+/[\w./<>-]*|[\w.-]+\.(?:py|yaml|yml|toml|in|txt|md))`", GUIDE
        )
        if "<" not in path
    }
    assert {"stages/families.py", ".ci/run", ".pre-commit-config.yaml"} <= paths
    for path in paths:
        assert (REPO / path).exists(), f"CONTRIBUTING.md names {path}, which does not exist"


def test_functions_it_names_exist() -> None:
    sources = {
        "build()": "stages/families.py",
        "param_grid()": "stages/families.py",
        "parse_space()": "stages/search.py",
        "fitted_trees()": "stages/families.py",
        "create_app()": "api/main.py",
        "stages.files.load_params": "stages/files.py",
        "stages.files.write_json": "stages/files.py",
    }
    for name, path in sources.items():
        assert f"`{name}" in GUIDE
        function = name.removesuffix("()").rsplit(".", 1)[-1]
        assert f"def {function}(" in (REPO / path).read_text(), name


def test_the_readme_links_it() -> None:
    assert "[CONTRIBUTING.md](CONTRIBUTING.md)" in (REPO / "README.md").read_text()
