"""The served side of a retraining: the model files in the folder the service reads, the ones
they replaced kept in its `.previous/` for a rollback, and the service asked to reload.

Which files make a model is the card's to say (the artifact and the reference profile it names,
and the card itself), so the flow follows whatever export writes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import httpx

from artifact import CARD_NAME, read_card

PREVIOUS = ".previous"


def model_files(model_dir: Path) -> tuple[str, ...]:
    """The file names of the folder's model, the card last: installed last, it names the others."""
    card = read_card(model_dir)
    return card["artifact"]["file"], card["reference_profile"]["file"], CARD_NAME


def install(source: Path, target: Path) -> None:
    """The source folder's model into the target folder, each file replaced whole (a reader never
    sees half a file)."""
    for name in model_files(source):
        partial = target / f".{name}.partial"
        shutil.copy2(source / name, partial)
        partial.replace(target / name)


def replace_keeping_previous(source: Path, serve_dir: Path) -> Path:
    """Serve the source folder's model, the one it replaces kept in `.previous/`; that folder."""
    backup = serve_dir / PREVIOUS
    backup.mkdir(exist_ok=True)
    for name in model_files(serve_dir):
        shutil.copy2(serve_dir / name, backup / name)
    install(source, serve_dir)
    return backup


def kept_version(serve_dir: Path) -> str:
    """The `model_version` of the model kept in `.previous/`, the one a rollback serves again."""
    backup = serve_dir / PREVIOUS
    if not (backup / CARD_NAME).is_file():
        raise FileNotFoundError(f"no earlier model kept in {backup}: nothing to roll back to")
    return str(read_card(backup)["model_version"])


def swap_with_previous(serve_dir: Path) -> Path:
    """Serve the model kept in `.previous/` again, the one it replaces kept there in its place;
    that folder."""
    backup = serve_dir / PREVIOUS
    with tempfile.TemporaryDirectory(prefix="boston-rollback-") as scratch:
        swap = Path(scratch)
        for name in model_files(serve_dir):
            shutil.copy2(serve_dir / name, swap / name)
        install(backup, serve_dir)
        install(swap, backup)
    return backup


def reload(service_url: str | None, expected: str) -> str:
    """Ask the service to load its folder again; its answer must name the `expected` version.
    What happened, in a sentence."""
    if service_url is None:
        return "no service URL given: the service loads the new model at its next start or reload"
    response = httpx.post(
        f"{service_url}/admin/reload",
        headers={"X-Admin-Key": os.environ.get("BOSTON_API_ADMIN_KEY", "")},
        timeout=60,
    )
    json_answer = response.headers.get("content-type", "").startswith("application/json")
    answer = response.json() if json_answer else {}
    if response.status_code != 200 or answer.get("model_version") != expected:
        raise RuntimeError(
            f"the service at {service_url} did not reload model {expected}: "
            f"{response.status_code} {response.text[:500]}"
        )
    return f"the service at {service_url} serves model {expected}"
