"""Where the worker processes of one service keep their metrics, so /metrics speaks for all of them.

One process keeps its metrics in memory. Several workers (`uvicorn --workers N`, the container
with WEB_CONCURRENCY=N) each answer some of the scrapes, so each keeps its figures in files under
one shared folder and every scrape sums them (prometheus_client's multiprocess mode, plus the
service's own bulk collectors in api.observability). The folder is PROMETHEUS_MULTIPROC_DIR when
it is set (as gunicorn users set it), else one this module makes under the temp dir, named after
the supervisor that spawned the workers: every worker of one server finds the same folder with
nothing configured, and a new server never reads an old one's figures.

prepare() must run before prometheus_client is imported, which decides at import whether values
live in memory or in files: api/__init__.py calls it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PREFIX = "boston-api-metrics-"


def prepare() -> None:
    """Choose (and create) the shared metrics folder when this process is one of several workers."""
    if os.environ.get(ENV):
        Path(os.environ[ENV]).mkdir(parents=True, exist_ok=True)
        return
    supervisor = multiprocessing.parent_process()
    if supervisor is None or supervisor.pid is None:
        return  # a single process: metrics in memory
    root = Path(tempfile.gettempdir())
    _remove_stale(root)
    folder = root / f"{_PREFIX}{supervisor.pid}-{_started(supervisor.pid)}"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.environ[ENV] = str(folder)


def directory() -> Path | None:
    """The shared metrics folder, or None when this process keeps its metrics in memory."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot, which tells a reused pid apart."""
    try:
        # /proc/PID/stat: field 22 is the start time; the name in field 2 may hold spaces
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"  # not Linux: the pid alone names the folder


def _remove_stale(root: Path) -> None:
    """Remove the folders of servers that have stopped (their supervisor is gone)."""
    for folder in root.glob(f"{_PREFIX}*"):
        pid, _, started = folder.name.removeprefix(_PREFIX).partition("-")
        if pid.isdigit() and _started(int(pid)) != started:
            with contextlib.suppress(OSError):  # another worker may be removing it too
                shutil.rmtree(folder)
