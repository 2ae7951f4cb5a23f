"""tools/system_packages.sh, which `make test` runs first: silent when the packages are there, and
when it cannot install them, one message naming each missing package and the command to run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "tools" / "system_packages.sh"


def tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def run_script(
    tmp_path: Path, installed: list[str], *packages: str
) -> subprocess.CompletedProcess[str]:
    """The script as an unprivileged user without sudo, where only `installed` are installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    known = " ".join(installed)
    tool(
        bin_dir,
        "dpkg-query",
        # called as: dpkg-query -W -f='${Status}' PACKAGE
        f'for p in {known}; do [ "$p" = "$3" ] && printf "install ok installed" && exit 0; done\n'
        "exit 1",
    )
    tool(bin_dir, "id", "echo 1000")
    tool(bin_dir, "apt-get", "echo apt-get must not run >&2; exit 9")
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(["bash", str(SCRIPT), *packages], capture_output=True, text=True, env=env)


def test_nothing_to_do_when_every_package_is_installed(tmp_path: Path) -> None:
    completed = run_script(tmp_path, ["chromium", "redis-server"], "chromium", "redis-server")
    assert (completed.returncode, completed.stdout, completed.stderr) == (0, "", "")


def test_without_root_or_sudo_it_names_the_missing_packages(tmp_path: Path) -> None:
    completed = run_script(tmp_path, ["redis-server"], "chromium", "redis-server", "prometheus")
    assert completed.returncode == 1
    assert "the tests need these Debian packages: chromium prometheus." in completed.stderr
    assert "sudo apt-get install -y chromium prometheus" in completed.stderr
    assert "apt-get must not run" not in completed.stderr
