"""`python -m flows`: the retraining flow's command line (flows/cli.py)."""

import sys

from flows.cli import main

if __name__ == "__main__":
    sys.exit(main())
