"""`python -m flows`: the retraining flow's command line (flows/cli.py).

Prefect's usage analytics are off for the project's own commands, as in the tests: Prefect reads
DO_NOT_TRACK when it is imported (its first-run notice, its SDK events), and the temporary server
it starts reads PREFECT_SERVER_ANALYTICS_ENABLED (its telemetry heartbeat, which on SQLite can
print "database is locked" tracebacks before the flow begins). So both are set before the first
import of prefect, and an operator's own setting of either wins.
"""

import os
import sys

QUIET_PREFECT = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

if __name__ == "__main__":
    for name, value in QUIET_PREFECT.items():
        os.environ.setdefault(name, value)
    from flows.cli import main

    sys.exit(main())
