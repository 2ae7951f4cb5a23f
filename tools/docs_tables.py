"""The docs' reference tables, generated from the code that defines them.

    python -m tools.docs_tables           # rewrite every generated block in the docs
    python -m tools.docs_tables --check   # exit 1, naming the blocks, when one is out of date

Each table sits in a Markdown page between two marker comments, `<!-- NAME:begin -->` and
`<!-- NAME:end -->`, and only the text between them is rewritten:

- `settings` (docs/api.md): the service settings, from the fields of `api.settings.Settings`
  (each read from the variable `BOSTON_API_<NAME>`), their defaults and descriptions;
- `launch` (docs/operating.md): the launch variables of `python -m api`, from `api.__main__`;
- `params` (docs/pipeline.md): every key of params.yaml with its committed value, the pipeline
  stages that read it (their `params:` in dvc.yaml) and what it means (PARAM_MEANINGS below, which
  must describe every key params.yaml has and no other);
- `make` (README.md): the Makefile's targets with the help line above each (what `make help`
  prints).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from api.__main__ import VARIABLES
from api.settings import Settings

REPO = Path(__file__).resolve().parents[1]
ENV_PREFIX = "BOSTON_API_"
# a value longer than this is left to params.yaml itself rather than squeezed into a table cell
_WIDEST_VALUE = 90

# What each params.yaml key means. A key listed here is one row of the table (its children, if
# any, are shown in its value); every key of params.yaml must be listed, itself or an ancestor.
PARAM_MEANINGS: dict[str, str] = {
    "seed": "seeds the split, the CV folds, the estimators and the bootstrap",
    "ingest.correct_medv": "apply Gilley & Pace's corrections of 8 miscoded MEDV values "
    "([data card](data.md))",
    "features.drop": "raw columns left out of the model; `[]` puts B back ([data card](data.md))",
    "eda.b_cost_family": "the family the EDA notebook cross-validates with and without B, to "
    "show what dropping B costs",
    "preprocess.test_size": "share of the rows held out for evaluate (the split is stratified "
    "on MEDV deciles)",
    "tune.search": "`grid` (every combination in `tune.grids`) or `optuna` (a seeded TPE sampler "
    "over `tune.optuna.spaces`)",
    "tune.families": "the model families searched; `model.family: auto` picks among them",
    "tune.cv.folds": "folds of the repeated K-fold every family is scored on",
    "tune.cv.repeats": "repeats of that K-fold, each with other folds",
    "tune.nested": "nested CV on or off: the whole selection re-run inside outer folds, for an "
    "unbiased RMSE beside the optimistic one (it roughly doubles tune's time)",
    "tune.nested_cv.outer_folds": "outer folds of nested CV",
    "tune.nested_cv.inner_folds": "inner folds of nested CV",
    "tune.early_stopping.n_iter_no_change": "boosting stops adding trees after this many rounds "
    "without improving a validation split; `null`: every tree of the cap is fitted",
    "tune.early_stopping.validation_fraction": "share of the rows a boosting fit holds out for "
    "early stopping (used only when `n_iter_no_change` is set)",
    "tune.monotone": "monotonic constraints by model input, `+1` rising or `-1` falling, e.g. "
    "`{RM: 1, LSTAT: -1}`; families that cannot honour them are skipped",
    "tune.grids": "per family, lists of values for the estimator's own parameters (the linear "
    "families tune the spline knots and take `alpha` from `model.alpha`)",
    "tune.optuna.trials": "Optuna candidates per family (fewer when a space has fewer points)",
    "tune.optuna.pruning.min_folds": "folds a candidate is scored on before its first pruning "
    "decision",
    "tune.optuna.pruning.reduction_factor": "successive halving: a candidate goes on only while "
    "its mean RMSE is in the best 1/this of those scored on as many folds",
    "tune.optuna.spaces": "per family and parameter: a value (fixed), a list (choices) or "
    "`{low, high, log}` (a range; whole-number bounds sample whole numbers)",
    "model.family": "`auto` (the lowest cross-validated RMSE wins) or one name from "
    "`tune.families` to force it",
    "model.alpha": "**the regularisation strength of the linear families** (ridge, lasso, "
    "elasticnet): scikit-learn's `alpha`, the weight of the penalty on the coefficients of the "
    "standardised spline features. Used as is, never searched: larger values shrink the "
    "coefficients harder (lasso and elasticnet also set more of them to zero). The tree "
    "families ignore it",
    "intervals.level": "share of prices the served prediction intervals should hold (0.9: "
    "9 times in 10), calibrated by the `calibrate` stage on out-of-fold errors",
    "intervals.bins": "groups of the predicted price with a width each (Mondrian conformal); "
    "1 is one constant width, which under-covers dear tracts "
    "([decision 0014](decisions/0014-conformal-intervals.md))",
    "evaluate.bootstrap": "bootstrap resamples for the test metrics' 95% intervals",
    "evaluate.gate.max_rmse": "quality gate: the highest test RMSE export accepts",
    "evaluate.gate.min_r2": "quality gate: the lowest test R^2 export accepts",
    "export.experiment": "the MLflow experiment of the pipeline's runs",
    "export.registered_model": "the MLflow registered model",
    "export.alias": "the registry alias every exported version gets (`champion` is moved by "
    "the retraining flow alone)",
    "monitoring.reference_bins": "quantile bins of the reference profile: PSI's bins and the "
    "buckets of the live input histograms in `/metrics`",
    "monitoring.alpha": "drift report: a column drifts when its Benjamini-Hochberg adjusted "
    "p-value is below this",
    "monitoring.min_rows": "drift report: a window with fewer rows is reported as too small, "
    "never judged",
    "monitoring.performance_min_rows": "performance report: labelled rows a window needs to be "
    "judged",
    "monitoring.coverage_alpha": "performance report: the coverage verdict's test martingale "
    "alarms at 1/coverage_alpha, so a model version's lifetime false-alarm chance stays below it",
    "monitoring.coverage_alternatives": "performance report: the miss rates above 1 - level the "
    "coverage martingale bets on (0.1: a drop from 90% to 80%)",
    "retrain.margin": "retraining: promote when the 95% interval of the challenger's RMSE minus "
    "the champion's ends at or below this ($1000s)",
    "retrain.bootstrap": "retraining: resamples of that paired bootstrap",
}


class DocsTableError(ValueError):
    """A page without its markers, or params.yaml and PARAM_MEANINGS out of step."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _shown_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    return f"`{value}`"


def settings_table() -> str:
    """The service's settings: one row per field of api.settings.Settings."""
    rows = [
        (f"`{ENV_PREFIX}{name.upper()}`", _shown_default(field.default), field.description or "")
        for name, field in Settings.model_fields.items()
    ]
    return _table(("variable", "default", "meaning"), rows)


def launch_table() -> str:
    """How `python -m api` starts uvicorn: one row per launch variable."""
    rows = [(f"`{name}`", f"`{default}`", meaning) for name, default, meaning in VARIABLES.values()]
    return _table(("variable", "default", "what it sets"), rows)


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{path}.")
        else:
            yield path


def _lookup(tree: Mapping[str, Any], path: str) -> Any:
    value: Any = tree
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise DocsTableError(f"PARAM_MEANINGS describes {path!r}, which params.yaml lacks")
        value = value[part]
    return value


def _described(path: str) -> str | None:
    """The key of PARAM_MEANINGS that covers `path`: itself or its nearest ancestor."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in PARAM_MEANINGS:
            return candidate
    return None


def _shown_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    text = text.removesuffix("\n...").strip()
    return f"`{text}`" if len(text) <= _WIDEST_VALUE else "see `params.yaml`"


def _readers(path: str, stages: Mapping[str, Any]) -> list[str]:
    """The stages whose declared params include `path` (the key, a section holding it, or a key
    inside it)."""
    found = []
    for name, stage in stages.items():
        for declared in stage.get("params", []):
            key = declared if isinstance(declared, str) else next(iter(declared))
            if key == path or path.startswith(f"{key}.") or key.startswith(f"{path}."):
                found.append(name)
                break
    return found


def params_table(
    params_yaml: Path = REPO / "params.yaml", dvc_yaml: Path = REPO / "dvc.yaml"
) -> str:
    """Every params.yaml key: its value, the stages that read it, and its meaning."""
    params = yaml.safe_load(params_yaml.read_text()) or {}
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    for path in PARAM_MEANINGS:
        _lookup(params, path)
    rows: list[tuple[str, ...]] = []
    for leaf in _leaves(params):
        key = _described(leaf)
        if key is None:
            raise DocsTableError(f"params.yaml key {leaf!r} has no meaning in PARAM_MEANINGS")
        if rows and rows[-1][0] == f"`{key}`":
            continue  # a described section: one row for all its keys
        readers = ", ".join(_readers(key, stages)) or "(no stage)"
        rows.append((f"`{key}`", _shown_value(_lookup(params, key)), readers, PARAM_MEANINGS[key]))
    return _table(("key", "value", "stages reading it", "meaning"), rows)


def make_table(makefile: Path = REPO / "Makefile") -> str:
    """The Makefile's targets with their `## target: help` lines, in the Makefile's order."""
    rows = [
        (f"`make {target}`", text.strip())
        for target, text in re.findall(r"^## ([\w-]+): (.+)$", makefile.read_text(), re.M)
    ]
    return _table(("command", "what it does"), rows)


# block name -> (the page holding it, its generator)
BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "settings": ("docs/api.md", settings_table),
    "launch": ("docs/operating.md", launch_table),
    "params": ("docs/pipeline.md", params_table),
    "make": ("README.md", make_table),
}


def replace_block(text: str, name: str, content: str) -> str:
    """`text` with the part between NAME's markers replaced by `content`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if len(pattern.findall(text)) != 1:
        raise DocsTableError(f"expected one {begin} ... {end} block")
    return pattern.sub(lambda _: f"{begin}\n{content}\n{end}", text)


def generated(repo: Path = REPO) -> dict[Path, str]:
    """Every page that holds a generated block, as it should read."""
    pages: dict[Path, str] = {}
    for name, (page, build) in BLOCKS.items():
        path = repo / page
        text = pages.get(path) or path.read_text()
        try:
            pages[path] = replace_block(text, name, build())
        except DocsTableError as error:
            raise DocsTableError(f"{page}: {error}") from None
    return pages


def stale(repo: Path = REPO) -> list[str]:
    """The pages whose generated blocks differ from what the code generates now."""
    return [
        str(path.relative_to(repo))
        for path, text in generated(repo).items()
        if path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.docs_tables", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a block is out of date"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            out_of_date = stale()
            for page in out_of_date:
                print(f"{page}: a generated table is out of date; run python -m tools.docs_tables")
            return 1 if out_of_date else 0
        for path, text in generated().items():
            if path.read_text() != text:
                path.write_text(text)
                print(f"rewrote {path.relative_to(REPO)}")
    except DocsTableError as error:
        print(f"docs_tables: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
