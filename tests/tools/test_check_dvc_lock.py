"""The dvc.lock check: it names what `dvc repro` would change, and leaves alone what is absent."""

from __future__ import annotations

from tools.check_dvc_lock import Status, stale

PRODUCED = {"data/interim/housing.csv", "metrics/eda.json", "reports/eda.html", "models/m.joblib"}
TRACKED = {"metrics/eda.json", "reports/eda.html"}


def test_an_up_to_date_pipeline_passes() -> None:
    assert stale({}, PRODUCED, TRACKED) == []


def test_a_fresh_clone_without_outputs_passes() -> None:
    status = {
        "ingest": [{"changed outs": {"data/interim/housing.csv": "deleted"}}],
        "eda": [{"changed deps": {"data/interim/housing.csv": "deleted"}}],
        "export": [{"changed outs": {"models/m.joblib": "not in cache"}}],
    }
    assert stale(status, PRODUCED, TRACKED) == []


def test_changed_code_params_and_commands_are_named() -> None:
    status: Status = {
        "tune": [
            {"changed deps": {"stages/tune.py": "modified"}},
            {"changed deps": {"params.yaml": {"tune.cv": "modified", "tune.search": "new"}}},
        ],
        "eda": ["changed command"],
    }
    assert stale(status, PRODUCED, TRACKED) == [
        "eda: changed command",
        "tune: dependency stages/tune.py modified",
        "tune: param tune.cv modified",
        "tune: param tune.search new",
    ]


def test_a_hand_edited_output_kept_in_git_is_named() -> None:
    status = {"eda": [{"changed outs": {"reports/eda.html": "modified"}}]}
    assert stale(status, PRODUCED, TRACKED) == [
        "eda: output reports/eda.html modified (it is kept in git)"
    ]
