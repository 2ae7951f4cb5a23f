"""The EDA report as a reader sees it: opened from disk in a real Chromium with no network, every
figure drawn, every section there, and every link pointing at a file of the repository."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Browser

from tests.conftest import REPO, open_offline

pytestmark = pytest.mark.e2e

REPORT = REPO / "reports" / "exploring_data_analysis.html"
EXECUTED = REPO / "reports" / "exploring_data_analysis.ipynb"
SECTIONS = [
    "The columns and their contract",
    "Gaps",
    "The target, MEDV: a ceiling and eight known coding errors",
    "Every feature",
    "How the features move with MEDV and with each other",
    "The two strongest relations bend",
    "CHAS and RAD are categories",
    "The RAD = 24, TAX = 666 block",
    "Collinearity among the model's inputs",
    "Why B is out",
    "What this means for the model",
]


def figures_in(notebook: Path) -> int:
    executed = nbformat.read(notebook, as_version=4)
    return sum(
        "image/png" in output.get("data", {})
        for cell in executed.cells
        for output in cell.get("outputs", [])
    )


def test_the_report_renders_offline_in_a_real_browser(browser: Browser, tmp_path: Path) -> None:
    page, fetched = open_offline(browser, REPORT)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.reload(wait_until="load")  # again, now that page errors are being listened for

    assert page.title() == "exploring_data_analysis"
    assert page.locator("h1").first.inner_text().strip() == "Exploring the Boston Housing data"
    headings = [text.strip() for text in page.locator("h2").all_inner_texts()]
    assert [heading.rstrip("¶").strip() for heading in headings] == SECTIONS

    images = page.locator("img")
    assert images.count() == figures_in(EXECUTED) >= 8
    sizes = images.evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth, i.width])")
    assert all(complete and natural >= 600 and shown > 300 for complete, natural, shown in sizes)

    # The closing section is the notebook's own computed Markdown, rendered as a list of links.
    meaning = page.locator("li", has_text="B stays out")
    assert meaning.count() == 1  # B stays out in the committed run
    links = page.locator("a[href^='../']").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert links, "the closing section links the settings and code it justifies"
    for href in links:
        target = (REPORT.parent / href.split("#")[0]).resolve()
        assert target.is_file(), f"the report links {href}, which is not a file of the repository"

    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    assert fetched == [] and errors == []
    page.close()
