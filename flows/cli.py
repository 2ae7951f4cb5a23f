"""The retraining flow's command line:

    python -m flows run --new-data FILE_OR_DIR [--service-url URL] [--margin M]
    python -m flows run --feedback LOG [LOG ...]    # labelled predictions as new rows
    python -m flows serve --new-data DIR --cron "0 3 * * *"   # on a schedule
    python -m flows on-verdict --log LOG [LOG ...] --new-data DIR  # when monitoring says so
    python -m flows rollback [--service-url URL]

`run` retrains once, `serve` registers a Prefect deployment that retrains on the cron schedule,
`on-verdict` retrains only when monitoring finds drift or degraded predictions in the logs, and
`rollback` serves the model before the last promotion again (see flows/retrain.py). Each prints
the outcome as one JSON object.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from flows.retrain import DEPLOYMENT, retrain, rollback
from monitoring import performance, report
from stages.files import pipeline_path


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    where = {"serve_dir": args.serve_dir, "service_url": args.service_url}
    if args.command == "rollback":
        print(json.dumps(asdict(rollback(**where))))
        return 0
    settings = {
        "new_data": args.new_data,
        "feedback": args.feedback,
        "margin": args.margin,
        **where,
    }
    if args.command == "serve":
        # One run at a time: in this runner (limit) and across every runner of the deployment
        # (global_limit, held by the Prefect server); a run that finds nothing new says so, stops.
        retrain.serve(name=DEPLOYMENT, cron=args.cron, parameters=settings, limit=1, global_limit=1)
        return 0
    if args.command == "on-verdict":
        model_dir = args.serve_dir or pipeline_path("model_dir")
        if not wants_retraining(args.log, model_dir, args.reports):
            print("no drift and no degradation: nothing to retrain")
            return 0
    outcome = retrain(**settings)
    print(json.dumps(asdict(outcome)))
    return 0


def wants_retraining(logs: Sequence[Path], model_dir: Path, reports: Path) -> bool:
    """Monitoring's verdicts on the served model: drift found (the drift report) or degraded (the
    performance report). Both reports are written to `reports` whatever the first one finds."""
    drift = report.drift_status(logs, model_dir, reports)
    degraded = performance.performance_status(logs, model_dir, reports)
    return drift == "drift" or degraded == "degraded"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "serve", "on-verdict", "rollback"):
        command = commands.add_parser(name)
        command.add_argument("--service-url", help="the service to reload (POST /admin/reload)")
        command.add_argument("--serve-dir", type=Path, help="the served model folder (models)")
        if name != "rollback":
            source = command.add_mutually_exclusive_group(required=True)
            source.add_argument("--new-data", type=Path, help="a CSV of new rows, or a folder")
            source.add_argument(
                "--feedback", type=Path, nargs="+", help="the service's logs: labelled predictions"
            )
            command.add_argument("--margin", type=float, help="overrides retrain.margin")
    commands.choices["serve"].add_argument("--cron", required=True, help="e.g. '0 3 * * *'")
    verdict = commands.choices["on-verdict"]
    verdict.add_argument("--log", type=Path, nargs="+", required=True, help="the service's logs")
    verdict.add_argument("--reports", type=Path, default=Path("reports/monitoring"))
    return parser.parse_args(argv)
