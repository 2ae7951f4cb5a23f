"""The docs stay true: every link and repository path they name exists, every `make` target and
`python -m` module they name is real, the generated tables match the code, and the README's `curl`
example prints, against a live server, the answer the README shows."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.schemas import FIRST_TRACT
from tests.conftest import REPO, running_api
from tools import docs_tables

README = REPO / "README.md"
PAGES = sorted(
    [README, REPO / "CONTRIBUTING.md", *(REPO / "docs").rglob("*.md")],
    key=lambda path: str(path.relative_to(REPO)),
)
PAGE_IDS = [str(page.relative_to(REPO)) for page in PAGES]
# Named in the docs but kept neither in git nor by DVC: made by a command, or the user's own.
OUTSIDE_THE_REPOSITORY = {
    "reports/monitoring": "where the drift and performance reports write (their --out default)",
    ".dvc/tmp/retrain.lock": "the retraining flow's lock, taken by a run",
    "data/incoming": "the user's folder of new labelled rows (the Makefile's NEW default)",
}
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def _split(text: str) -> tuple[str, list[str]]:
    """The page's prose (fenced blocks blanked out) and its fenced blocks' contents, in order."""
    prose: list[str] = []
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if _FENCE.match(line):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
            prose.append("")
        elif current is not None:
            current.append(line)
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), blocks


def _code(text: str) -> list[str]:
    """What the page shows as code: its inline code spans and its fenced blocks."""
    prose, blocks = _split(text)
    return [match.group(2) for match in _CODE_SPAN.finditer(prose)] + blocks


def _slug(heading: str) -> str:
    """The anchor the repository host gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    prose, _ = _split(page.read_text())
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", prose, flags=re.MULTILINE):
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_relative_link_exists(page: Path) -> None:
    prose, _ = _split(page.read_text())
    for target in _LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: and the like
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        assert linked.exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), (
                f"{page.relative_to(REPO)} links to {target}: no heading with that anchor"
            )


def _tracked_top_level() -> tuple[set[str], set[str]]:
    """The repository's top-level folders and files, as git tracks them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    folders: set[str] = set()
    files: set[str] = set()
    for name in filter(None, listed.split("\0")):
        first, slash, _ = name.partition("/")
        (folders if slash else files).add(first)
    return folders, files


def _dvc_outputs() -> set[str]:
    """Every output dvc.yaml declares, its ${vars} filled in: made by `dvc repro` or `dvc pull`."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    variables: dict[str, str] = {}
    for entry in pipeline.get("vars", []):
        variables.update(entry)
    outputs = set()
    for stage in pipeline["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                name = out if isinstance(out, str) else next(iter(out))
                outputs.add(re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], name))
    return outputs


def _named_paths(text: str, folders: set[str], files: set[str]) -> set[str]:
    """The tokens of the page's code that look like repository paths: under a top-level folder,
    or a top-level file. Placeholders (`<name>`, globs, `${var}`, `...`) are left out."""
    found = set()
    for code in _code(text):
        for token in code.split():
            token = token.split("=")[-1].split("::")[0].strip("`'\",;:()[]")
            if not token or re.search(r"[<>*{}$]|\.\.\.|://", token):
                continue
            first, slash, _ = token.partition("/")
            if (slash and first in folders) or token in files:
                found.add(token.rstrip("/"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_repository_path_named_exists(page: Path) -> None:
    folders, files = _tracked_top_level()
    outputs = _dvc_outputs()
    for path in sorted(_named_paths(page.read_text(), folders, files)):
        made = path in outputs or any(path.startswith(other) for other in OUTSIDE_THE_REPOSITORY)
        assert (REPO / path).exists() or made, (
            f"{page.relative_to(REPO)} names {path}, which is not in the repository"
        )


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_make_target_named_exists(page: Path) -> None:
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    for code in _code(page.read_text()):
        for target in re.findall(r"\bmake ([a-z][\w-]*)", code):
            assert target in targets, f"{page.relative_to(REPO)} names `make {target}`"


def _runnable(module: str) -> bool:
    """Whether `python -m module` finds something to run: a module, or a package's __main__."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(f"{module}.__main__")
    except ModuleNotFoundError:
        return False
    return spec is not None


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_python_module_named_runs(page: Path) -> None:
    for code in _code(page.read_text()):
        for module in re.findall(r"\bpython3? -m ([A-Za-z_][\w.]*\w)(?![\w.<])", code):
            assert _runnable(module), f"{page.relative_to(REPO)} names `python -m {module}`"
        for module, attribute in re.findall(r"\buvicorn ([A-Za-z_][\w.]*):(\w+)", code):
            assert hasattr(importlib.import_module(module), attribute), f"uvicorn {module}"


def test_the_generated_tables_are_current() -> None:
    assert docs_tables.stale() == [], "run python -m tools.docs_tables"


def test_every_params_key_needs_a_meaning(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tune"]["new_knob"] = 3
    changed = tmp_path / "params.yaml"
    changed.write_text(yaml.safe_dump(params))
    with pytest.raises(docs_tables.DocsTableError, match=r"tune\.new_knob"):
        docs_tables.params_table(changed)
    del params["tune"]["new_knob"], params["retrain"]["margin"]
    changed.write_text(yaml.safe_dump(params))
    with pytest.raises(docs_tables.DocsTableError, match=r"retrain\.margin"):
        docs_tables.params_table(changed)


def test_the_readme_stays_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200
    assert "```mermaid" in lines


def _curl_example() -> tuple[list[str], dict[str, Any]]:
    """The README's curl to /predict, as arguments, and the answer the README says it prints (the
    fenced block right after it)."""
    _, blocks = _split(README.read_text())
    for index, block in enumerate(blocks):
        if block.lstrip().startswith("curl") and "/predict" in block:
            command = shlex.split(block.replace("\\\n", " "))
            return command, json.loads(blocks[index + 1])
    raise AssertionError("the README has no curl example for /predict")


def test_the_curl_example_sends_the_first_tract() -> None:
    command, _ = _curl_example()
    body = json.loads(command[command.index("-d") + 1])
    assert body == FIRST_TRACT


@pytest.fixture(scope="module")
def live_api(real_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("readme")
    with running_api(real_model_dir, folder / "predictions.jsonl") as url:
        yield url


@pytest.mark.e2e
def test_the_readme_curl_example_prints_its_answer(live_api: str, real_model_dir: Path) -> None:
    command, documented = _curl_example()
    arguments = [re.sub(r"^(https?://)?localhost:8000", live_api, argument) for argument in command]
    assert arguments != command, "the example no longer calls localhost:8000"
    printed = subprocess.run(arguments, capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(printed.stdout)
    assert set(answer) == set(documented)
    assert answer["ignored_inputs"] == documented["ignored_inputs"]
    assert re.fullmatch(r"[0-9a-f]{12}", answer["model_version"])
    committed = json.loads((REPO / "models" / "model_card.json").read_text())["model_version"]
    if answer["model_version"] == committed:
        # the repository's own model: the README must show its answer
        shown = (documented["prediction"], *documented["interval"].values())
        given = (answer["prediction"], *answer["interval"].values())
        assert [round(value, 6) for value in given] == [round(value, 6) for value in shown], (
            f"the README shows the answer of model {documented['model_version']}; "
            f"model {committed} answers {printed.stdout.strip()}"
        )
    else:
        assert 0 < answer["prediction"] < 50
