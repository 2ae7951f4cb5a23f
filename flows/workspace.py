"""The git and DVC side of a retraining: a worktree on a branch of its own where `dvc repro` trains
the challenger, the commit and `dvc push` of a promotion, and the lock that lets one run at a time.

The worktree keeps the workspace and the served model folder untouched while the pipeline runs;
it shares the repository's DVC cache and remote, so a promoted challenger's outputs are pushed
from there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

LOCK = Path(".dvc/tmp/retrain.lock")
GATE = "quality gate failed"  # how the evaluate stage refuses a model (stages/evaluate.py)


@contextlib.contextmanager
def only_run(repo: Path) -> Iterator[bool]:
    """Whether this run holds the repository's retraining lock (False: another run does)."""
    path = repo / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_worktree(repo: Path, workdir: Path, branch: str) -> None:
    """A worktree of HEAD on the new `branch`, using the repository's DVC cache and remote."""
    run(["git", "worktree", "add", "-q", "-b", branch, str(workdir), "HEAD"], repo)
    # the worktree's own DVC config is relative to it: point it at the repository's cache and remote
    run(["dvc", "cache", "dir", "--local", str(repo / ".dvc" / "cache")], workdir)
    remote = remote_url(repo)
    if remote is not None:
        name, url = remote
        run(["dvc", "remote", "modify", "--local", name, "url", url], workdir)


def repro(workdir: Path, env: dict[str, str]) -> str | None:
    """`dvc repro` in the worktree; the evaluate stage's message when its quality gate refuses
    the model, which is a verdict on the challenger rather than a failure of the run."""
    done = run(["dvc", "repro"], workdir, env=env, check=False)
    if done.returncode == 0:
        return None
    gate = [line for line in done.stderr.splitlines() if GATE in line]
    if gate:
        return gate[-1].strip()
    raise RuntimeError(f"dvc repro failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def commit_and_push(repo: Path, workdir: Path, message: str) -> None:
    """Everything the run changed in one commit on its branch; the outputs to the DVC remote,
    when the repository has one."""
    run(["git", "add", "-A"], workdir)
    run(["git", "commit", "-q", "-m", message], workdir)
    if remote_url(repo) is not None:
        run(["dvc", "push", "-q"], workdir)


def close_worktree(repo: Path, workdir: Path, branch: str) -> None:
    """Remove the worktree; its branch stays only when it holds a commit (a promotion)."""
    run(["git", "worktree", "remove", "--force", str(workdir)], repo, check=False)
    if not _branch_has_commit(repo, branch):
        run(["git", "branch", "-q", "-D", branch], repo, check=False)


def remote_url(repo: Path) -> tuple[str, str] | None:
    """The default DVC remote's name and its URL, made absolute (a relative one is relative to
    the repository's .dvc folder)."""
    name = run(["dvc", "config", "core.remote"], repo, check=False).stdout.strip()
    if not name:
        return None
    url = run(["dvc", "config", f"remote.{name}.url"], repo).stdout.strip()
    if "://" not in url and not Path(url).is_absolute():
        url = str((repo / ".dvc" / url).resolve())
    return name, url


def run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command in `cwd`, its output captured; `dvc` is this interpreter's, so the flow
    needs no `dvc` on PATH. With `check`, a failure raises with the command's output."""
    if command[0] == "dvc":
        command = [sys.executable, "-m", "dvc", *command[1:]]
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done


def _branch_has_commit(repo: Path, branch: str) -> bool:
    ahead = run(["git", "rev-list", "--count", f"HEAD..{branch}"], repo, check=False)
    return ahead.returncode == 0 and ahead.stdout.strip() not in ("", "0")
