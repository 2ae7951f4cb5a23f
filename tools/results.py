"""Results files: a measuring tool's table as Markdown under docs/results/, headed by when, on how
many cores and at which commit it was measured, and by the command that measured it. The docs
link these files; rerunning the tool regenerates one, nobody edits its figures by hand.

A tool takes `--results PATH` (see `add_option`); the Makefile's rules pass the docs' file, so a
trial run with other settings never overwrites the published figures.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Regenerating one results file must not mark the next tool's run as made from local changes.
_NOT_CODE = ":(exclude)docs/results"


def add_option(parser: argparse.ArgumentParser) -> None:
    """The `--results PATH` option every measuring tool takes."""
    parser.add_argument(
        "--results",
        type=Path,
        metavar="PATH",
        help="also write the table to this Markdown file, headed by the date, the core count, "
        "the commit and this command (make writes docs/results/)",
    )


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command as a user would type it again: `python -m module args...` (the process's own
    arguments when `argv` is None, as argparse takes them)."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def commit(repo: Path = REPO) -> str:
    """The short commit of `repo`, with "+ local changes" when tracked code differs from it."""
    try:
        head = _git(repo, "rev-parse", "--short", "HEAD")
        changes = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", ".", _NOT_CODE)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} + local changes" if changes else head


def write(
    path: Path,
    title: str,
    body: str,
    command: str,
    *,
    repo: Path = REPO,
    today: datetime.date | None = None,
) -> Path:
    """Write `body` (Markdown) to `path` under a header saying when, where and how it was made."""
    day = (today or datetime.date.today()).isoformat()
    header = [
        f"# {title}",
        "",
        "Written by the command below; run it again to regenerate this file, do not edit it.",
        "",
        f"- Date: {day}",
        f"- Cores: {os.cpu_count()} (`os.cpu_count()`)",
        f"- Commit: {commit(repo)}",
        f"- Command: `{command}`",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header) + "\n" + body.strip() + "\n")
    return path


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def publish(
    text: str, title: str, module: str, argv: list[str] | None, destination: Path | None
) -> None:
    """Print a tool's table, and write it to `destination` (its --results file) when given."""
    print(text)
    if destination is not None:
        write(destination, title, text, command_line(module, argv))
