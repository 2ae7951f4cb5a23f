"""EDA: parameters are injected where papermill's convention puts them, outputs that would make the
stage irreproducible are refused, the HTML needs no network, and the real notebook runs on the
Kaggle form of the data (gaps and all)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from stages.eda import (
    INJECTED_ID,
    NotebookError,
    check_outputs,
    inject_parameters,
    run,
    scrub,
    to_html,
)
from tests.conftest import KAGGLE_GAP_COLUMNS, REPO, kaggle_copy
from tests.conftest import run as run_command

NOTEBOOK = REPO / "notebooks" / "exploring_data_analysis.ipynb"


def notebook(*cells: NotebookNode) -> NotebookNode:
    made: NotebookNode = nbformat.v4.new_notebook(cells=list(cells))
    return made


def tagged_cell(source: str, tag: str = "parameters") -> NotebookNode:
    cell: NotebookNode = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [tag]
    return cell


def test_parameters_are_injected_right_after_the_tagged_cell() -> None:
    source = notebook(
        nbformat.v4.new_code_cell("import os"),
        tagged_cell("TABLE = 'default.csv'"),
        nbformat.v4.new_code_cell("print(TABLE)"),
    )
    injected = inject_parameters(source, {"TABLE": "data/t.csv", "FACTS": None})
    assert [cell.get("id") for cell in injected.cells][2] == INJECTED_ID
    assert injected.cells[2].source.splitlines()[1:] == ["TABLE = 'data/t.csv'", "FACTS = None"]
    assert len(source.cells) == 3  # the source notebook is left as it was


@pytest.mark.parametrize("tags", [[], ["parameters", "parameters"]])
def test_a_notebook_without_exactly_one_parameters_cell_is_refused(tags: list[str]) -> None:
    source = notebook(*(tagged_cell("x = 1", tag) for tag in tags))
    with pytest.raises(
        NotebookError, match=f"exactly one cell tagged 'parameters', found {len(tags)}"
    ):
        inject_parameters(source, {"TABLE": "t.csv"})


def test_stderr_output_stops_the_stage_naming_the_cell() -> None:
    cell = nbformat.v4.new_code_cell("import warnings", id="warns")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="/abs/path.py:1: Warning")]
    with pytest.raises(NotebookError, match=r"cell 2 \(warns\) wrote to stderr: \['/abs/path"):
        check_outputs(notebook(nbformat.v4.new_code_cell("x = 1"), cell))


def test_stdout_output_is_fine() -> None:
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    check_outputs(notebook(cell))


def test_scrub_drops_timings_and_the_interpreter_patch_version() -> None:
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.metadata["execution"] = {"iopub.execute_input": "2026-11-28T04:21:59Z"}
    source = notebook(cell)
    source.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    scrubbed = scrub(source)
    assert scrubbed.metadata["language_info"] == {"name": "python"}
    assert "execution" not in scrubbed.cells[0].metadata


def test_html_loads_nothing_from_the_network() -> None:
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "x"}
        )
    ]
    html = to_html(notebook(nbformat.v4.new_markdown_cell("# Title"), cell), title="t")
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html
    assert re.findall(r"<script[^>]*\ssrc=", html) == []
    assert re.findall(r"<link[^>]*href=\"https?:", html) == []
    assert "<title>t</title>" in html


def test_the_notebook_runs_on_the_kaggle_form_and_counts_its_gaps(tmp_path: Path) -> None:
    """The real notebook, in a real kernel, on a table with NA cells, written by the real ingest."""
    raw = kaggle_copy(tmp_path / "HousingData.csv")
    table, ingest_report = tmp_path / "housing.csv", tmp_path / "ingest.json"
    facts = tmp_path / "eda.json"
    run_command(
        [sys.executable, "-m", "stages.ingest", "--raw", str(raw), "--out", str(table),
         "--report", str(ingest_report)],
        REPO,
    )  # fmt: skip
    executed = run(
        NOTEBOOK,
        {"TABLE": str(table), "INGEST_REPORT": str(ingest_report), "FACTS": str(facts)},
        REPO,
    )
    found = json.loads(facts.read_text())
    ingest = json.loads(ingest_report.read_text())
    assert {name for name, count in found["gaps"].items() if count} == set(KAGGLE_GAP_COLUMNS)
    assert all(found["gaps"][name] == 20 for name in KAGGLE_GAP_COLUMNS)
    assert found["rows_with_gaps"] == ingest["rows_with_gaps"] > 0
    gap_rows = found["gap_rows_medv"]
    assert 0 <= gap_rows["mannwhitney_p"] <= 1
    assert gap_rows["mean_with_gaps"] != gap_rows["mean_complete"]
    # the gaps section shows them: a figure and the sentence comparing MEDV
    gaps_cell = next(cell for cell in executed.cells if cell.get("id") == "gaps")
    kinds = [output.get("output_type") for output in gaps_cell.outputs]
    assert "display_data" in kinds
    assert "rows with a gap" in "".join(
        output.get("text", "") for output in gaps_cell.outputs if output.get("name") == "stdout"
    )
