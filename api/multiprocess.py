"""Where the worker processes of one service keep their metrics, so /metrics speaks for all of them.

One process keeps its metrics in memory. Several workers (`uvicorn --workers N`, `python -m api`
with WEB_CONCURRENCY=N) each answer some of the scrapes, so each keeps its figures in files under
one shared folder and every scrape sums them (prometheus_client's multiprocess mode, plus the
service's own bulk collectors in api.observability). The folder is PROMETHEUS_MULTIPROC_DIR when
it is set (`python -m api` sets it to a folder it owns and removes), else one named after the
supervisor that spawned the workers: every worker of one server finds the same folder with
nothing configured, and a new server never reads an old one's figures.

prometheus_client decides when it is first imported whether values live in memory or in files, so
nothing the app imports at module level imports it: each worker's lifespan calls start_metrics().
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.observability import Metrics

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PREFIX = "boston-api-metrics-"


def start_metrics() -> Metrics:
    """This worker's metrics: in the shared folder when it is one of several workers."""
    directory = shared_directory()
    if directory is not None:
        os.environ[ENV] = str(directory)
    # imported here, once the variable says where values live (see the module's docstring)
    from api.observability import Metrics

    return Metrics(directory)


def shared_directory() -> Path | None:
    """The folder every worker of this server shares (made if need be), or None for a process
    that serves alone."""
    if os.environ.get(ENV):
        folder = Path(os.environ[ENV])
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    supervisor = multiprocessing.parent_process()
    if supervisor is None or supervisor.pid is None:
        return None
    folder = Path(tempfile.gettempdir()) / f"{_PREFIX}{supervisor.pid}-{_started(supervisor.pid)}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot, which tells a reused pid apart."""
    try:
        # /proc/PID/stat: field 22 is the start time; the name in field 2 may hold spaces
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"  # not Linux: the pid alone names the folder
