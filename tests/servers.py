"""Real backing servers for the end-to-end tests, each started on a free loopback port in a
temporary folder and stopped when its block ends: PostgreSQL (the Debian package) and an MLflow
tracking server whose backend store is that PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.loopback import free_port, wait_until_healthy

# PostgreSQL refuses to run as root: a root test runs it as this unprivileged user
UNPRIVILEGED = "nobody"


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise RuntimeError(
            "PostgreSQL's server programs are not installed: install the Debian package "
            "postgresql (tools/system_packages.sh, run by make test, does)"
        )
    return found[-1].parent


@contextmanager
def running_postgres(database: str) -> Iterator[str]:
    """A PostgreSQL cluster with `database` created; yields its SQLAlchemy URL."""
    binaries = _postgres_bin()
    as_user = ["runuser", "-u", UNPRIVILEGED, "--"] if os.geteuid() == 0 else []
    # under /tmp itself: pytest's own temp folders are private to the user running the tests
    folder = Path(tempfile.mkdtemp(prefix="boston-postgres-", dir="/tmp"))
    if as_user:
        shutil.chown(folder, UNPRIVILEGED)
    data, port = folder / "data", free_port()
    user = UNPRIVILEGED if as_user else os.environ.get("USER", "postgres")

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, cwd=folder)

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")  # fmt: skip
        try:
            run(
                str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database
            )
            yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def running_mlflow(backend_store: str, artifacts: Path) -> Iterator[str]:
    """`mlflow server` on `backend_store`, serving artifacts from `artifacts`; yields its URL."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store,
            "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/health", server, timeout=120)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
