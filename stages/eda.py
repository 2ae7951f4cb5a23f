"""EDA: run the exploratory notebook on ingest's table; keep it executed and as offline HTML.

The notebook in notebooks/ is the source and holds no outputs. This stage runs it top to bottom in a
fresh kernel, with this stage's paths injected after its `parameters` cell (papermill's
convention), and writes the executed notebook, a self-contained HTML report and, from inside the
notebook, the facts it found. Both renderings are byte-deterministic: no timings, kernel ids or
interpreter patch versions are kept, and a cell that writes to stderr (a warning, which would carry
an absolute path and would go unread) stops the stage, naming the cell.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter
from nbformat import NotebookNode

PARAMETERS_TAG = "parameters"
INJECTED_ID = "injected-parameters"
_TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
_CELL_TIMEOUT_S = 300


class NotebookError(RuntimeError):
    """The notebook failed, or produced output that would make the stage irreproducible."""


def inject_parameters(notebook: NotebookNode, values: dict[str, str | None]) -> NotebookNode:
    """A copy of `notebook` with a cell assigning `values` right after the `parameters` cell."""
    tagged = [
        index
        for index, cell in enumerate(notebook.cells)
        if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", [])
    ]
    if len(tagged) != 1:
        raise NotebookError(
            f"the notebook needs exactly one cell tagged {PARAMETERS_TAG!r}, found {len(tagged)}"
        )
    source = "# Injected by stages/eda.py: this run's paths, from dvc.yaml\n" + "".join(
        f"{name} = {value!r}\n" for name, value in values.items()
    )
    injected = nbformat.v4.new_code_cell(source, id=INJECTED_ID)
    injected.metadata["tags"] = ["injected-parameters"]
    copy: NotebookNode = nbformat.from_dict(notebook)
    copy.cells.insert(tagged[0] + 1, injected)
    return copy


def execute(notebook: NotebookNode, cwd: Path) -> NotebookNode:
    """Run every cell in a fresh kernel started in `cwd`; raise naming the cell that failed."""
    client = NotebookClient(
        notebook,
        timeout=_CELL_TIMEOUT_S,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
        # the kernel runs on this machine's loopback for the length of the render; its warning
        # about unencrypted TCP is for kernels reached over a network
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    # A fixed hash seed keeps any set or dict ordering the same from run to run.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        raise NotebookError(f"a cell failed:\n{error}") from None
    return notebook


def check_outputs(notebook: NotebookNode) -> None:
    """Refuse outputs that are errors or stderr: they carry absolute paths and hide problems."""
    for number, cell in enumerate(notebook.cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                first_line = "".join(output.get("text", "")).strip().splitlines()[:1]
                raise NotebookError(
                    f"cell {number} ({cell.get('id')}) wrote to stderr: {first_line}; "
                    "fix the cause (or silence it in that cell, saying why)"
                )


def scrub(notebook: NotebookNode) -> NotebookNode:
    """Drop what differs between runs on the same platform: patch versions and run metadata."""
    language = notebook.metadata.get("language_info", {})
    language.pop("version", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    return notebook


def to_html(notebook: NotebookNode, title: str) -> str:
    """The executed notebook as one HTML page: figures inline, no script or style from a CDN."""
    exporter = HTMLExporter(
        template_name="lab",
        extra_template_paths=[str(_TEMPLATE_DIR)],
        template_file="offline.html.j2",
    )
    html, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    return str(html)


def run(source: Path, parameters: dict[str, str | None], cwd: Path) -> NotebookNode:
    """Inject, execute, check and scrub: the executed notebook, ready to write."""
    source_notebook = nbformat.read(source, as_version=4)
    notebook = execute(inject_parameters(source_notebook, parameters), cwd)
    check_outputs(notebook)
    return scrub(notebook)


def _warm_font_cache() -> None:
    # Matplotlib's first import on a new machine builds its font cache and says so on stderr;
    # building it here keeps that message out of the notebook.
    import matplotlib.font_manager  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notebook", type=Path, required=True, help="the source notebook")
    parser.add_argument("--table", type=Path, required=True, help="ingest's validated table")
    parser.add_argument("--ingest-report", type=Path, required=True)
    parser.add_argument("--facts", type=Path, required=True, help="metrics the notebook writes")
    parser.add_argument("--executed", type=Path, required=True)
    parser.add_argument("--html", type=Path, required=True)
    args = parser.parse_args(argv)

    _warm_font_cache()
    parameters: dict[str, str | None] = {
        "TABLE": str(args.table),
        "INGEST_REPORT": str(args.ingest_report),
        "FACTS": str(args.facts),
    }
    try:
        notebook = run(args.notebook, parameters, Path.cwd())
    except NotebookError as error:
        sys.exit(f"eda: {args.notebook}: {error}")
    args.executed.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, args.executed)
    args.html.parent.mkdir(parents=True, exist_ok=True)
    args.html.write_text(to_html(notebook, title=args.notebook.stem))


if __name__ == "__main__":
    main()
