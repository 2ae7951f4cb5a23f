"""The Makefile finds Python 3.11 by name, or stops with one line saying which Python and why."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

MAKE = shutil.which("make") or "make"


def project_without_venv(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Makefile", project / "Makefile")
    (project / "requirements.lock").write_text("")
    return project


def make(project: Path, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`make` with a PATH that holds only `bin_dir`: the interpreters it can find are those."""
    return subprocess.run(
        [MAKE, *args], cwd=project, capture_output=True, text=True, env={"PATH": str(bin_dir)}
    )


def fake_python(path: Path, version: str) -> None:
    """A `python3` that reports `version` to the Makefile's check and does nothing else."""
    major, minor = version.split(".")
    check = f"import sys; sys.exit(({major}, {minor}) != (3, 11))"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} -c '{check}'\n")
    path.chmod(0o755)


def test_without_python_3_11_make_says_so_in_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_python(bin_dir / "python3", "3.12")
    completed = make(project_without_venv(tmp_path), bin_dir, "venv")
    assert completed.returncode != 0
    first = completed.stderr.strip().splitlines()[0]
    assert first.startswith("make: this project needs Python 3.11 (python3.11, or python3 at 3.11)")
    assert "requirements.lock is resolved for 3.11" in first
    assert not (tmp_path / "project" / ".venv").exists()


def test_python3_11_is_found_by_name(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.11").symlink_to(sys.executable)
    fake_python(bin_dir / "python3", "3.12")
    completed = make(project_without_venv(tmp_path), bin_dir, "--dry-run", "venv")
    assert f"{bin_dir / 'python3.11'} -m venv .venv" in completed.stdout


def test_python3_is_taken_when_it_is_3_11(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_python(bin_dir / "python3", "3.11")
    completed = make(project_without_venv(tmp_path), bin_dir, "--dry-run", "venv")
    assert f"{bin_dir / 'python3'} -m venv .venv" in completed.stdout


def test_every_target_is_documented_for_make_help() -> None:
    lines = (REPO / "Makefile").read_text().splitlines()
    targets = [
        line.split(":")[0]
        for line in lines
        if line and line[0].isalpha() and ":" in line and "=" not in line
    ]
    for target in targets:
        if target.startswith("$"):
            continue
        index = lines.index(next(line for line in lines if line.startswith(f"{target}:")))
        assert lines[index - 2].startswith(f"## {target}:"), f"target {target} has no ## comment"
