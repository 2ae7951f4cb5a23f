"""`python -m flows` turns Prefect's analytics and telemetry off before Prefect starts, unless the
operator said otherwise: a newcomer's `make retrain` prints nothing from the telemetry heartbeat."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

# Run the entry point as `python -m flows --help` does, then ask Prefect what it read.
_CHILD = """
import json, runpy, sys
assert "prefect" not in sys.modules
sys.argv = ["flows", "--help"]
try:
    runpy.run_module("flows", run_name="__main__")
except SystemExit:
    pass
from prefect._internal.analytics.enabled import is_telemetry_enabled
from prefect.settings import get_current_settings
print(json.dumps({"server_analytics": get_current_settings().server.analytics_enabled,
                  "sdk_telemetry": is_telemetry_enabled()}))
"""


def prefect_sees(**env: str) -> dict[str, bool]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED", "CI"}
    }
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=REPO, env={**clean, **env},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seen: dict[str, bool] = json.loads(completed.stdout.strip().splitlines()[-1])
    return seen


def test_the_entry_point_turns_analytics_and_telemetry_off() -> None:
    assert prefect_sees() == {"server_analytics": False, "sdk_telemetry": False}


def test_an_operators_own_setting_wins() -> None:
    seen = prefect_sees(PREFECT_SERVER_ANALYTICS_ENABLED="true", DO_NOT_TRACK="0")
    assert seen["server_analytics"] is True
