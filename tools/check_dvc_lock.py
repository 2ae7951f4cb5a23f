"""Fail when dvc.lock no longer describes the pipeline: a stage's code, params or command changed,
or a git-tracked output was edited by hand, and `dvc repro` has not run since.

`make lint` and the pre-commit hook run it, so a change to the pipeline is committed together with
the dvc.lock that records it. Outputs that are merely absent (a fresh clone before `dvc pull` or
`dvc repro`) are not a defect, and neither is an upstream output a later stage reads.
"""

from __future__ import annotations

import sys
from typing import Any

from dvc.repo import Repo

Status = dict[str, list[Any]]


def stale(status: Status, produced: set[str], tracked_outputs: set[str]) -> list[str]:
    """What in `dvc status` means dvc.lock is out of date, one line per stage and path.

    `produced`: every stage output; `tracked_outputs`: those kept in git (cache: false).
    """
    problems: list[str] = []
    for stage, changes in sorted(status.items()):
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed"
                problems.append(f"{stage}: {change}")
                continue
            for path, state in change.get("changed deps", {}).items():
                if isinstance(state, dict):  # a params file: key -> state
                    problems += [f"{stage}: param {key} {how}" for key, how in state.items()]
                elif path not in produced:
                    problems.append(f"{stage}: dependency {path} {state}")
            for path, state in change.get("changed outs", {}).items():
                if path in tracked_outputs and state == "modified":
                    problems.append(f"{stage}: output {path} modified (it is kept in git)")
    return problems


def main() -> None:
    repo = Repo(".")
    outputs = [out for stage in repo.index.stages for out in stage.outs]
    produced = {str(out.def_path) for out in outputs}
    tracked = {str(out.def_path) for out in outputs if not out.use_cache}
    problems = stale(repo.status(), produced, tracked)
    if problems:
        print("dvc.lock is out of date; run `dvc repro` and commit dvc.lock with the change:")
        print("\n".join(f"  {problem}" for problem in problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
