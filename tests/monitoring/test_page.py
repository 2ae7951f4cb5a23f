"""The drift report's page: the verdict first in a sentence, what moved in words, what to do, the
traffic as a table, hostile strings escaped; then the real thing, the page in a real Chromium at
laptop sizes, with nothing wider than the screen.

Summaries are built the way monitoring.report builds them: prediction records through
window_arrays, the drift rule, summarise.

`BOSTON_DRIFT_SCREENSHOT=docs/images/drift-report.png pytest tests/monitoring/test_page.py -m e2e`
also saves the screenshot docs/monitoring.md shows.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import struct
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Browser

from artifact import read_card, read_profile
from monitoring.drift import DriftSettings, judge
from monitoring.page import moved_lines, render, verdict_sentence
from monitoring.report import summarise, window_arrays
from prediction_log import Prediction
from stages.contract import FEATURE_NAMES
from tests.conftest import export_tiny_model, open_offline, synthetic_table

START = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
SETTINGS = DriftSettings(alpha=0.05, min_rows=200)
Built = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def served(table: pd.DataFrame, model_dir: Path, version: str | None = None) -> list[Prediction]:
    """The table as the service would log it: the first 200 rows in batches of 20 through
    /predict/batch, the rest one request each through /predict, one row every 3 seconds."""
    card = read_card(model_dir)
    model = joblib.load(model_dir / card["artifact"]["file"])
    predictions = model.predict(table[card["model_inputs"]].to_numpy())
    records = []
    for index, (row, prediction) in enumerate(
        zip(table[list(FEATURE_NAMES)].to_dict("records"), predictions, strict=True)
    ):
        batch = index < 200
        records.append(
            Prediction(
                ts=START + timedelta(seconds=3 * index),
                request_id=f"b{index // 20}" if batch else f"r{index}",
                row=index % 20 if batch else 0,
                route="/predict/batch" if batch else "/predict",
                model_version=version or str(card["model_version"]),
                latency_ms=float(5 + index % 11),
                inputs={str(name): float(value) for name, value in row.items()},
                prediction=float(prediction),
            )
        )
    return records


def build(model_dir: Path, table: pd.DataFrame, version: str | None = None) -> Built:
    """summary, profile and window, as monitoring.report.drift_status hands them to the page."""
    profile = read_profile(model_dir, read_card(model_dir))
    records = served(table, model_dir, version)
    if version is not None:  # another model's lines: never judged, no window
        why = f"the reference profile in {model_dir} is for model {profile['model_version']}"
        return summarise(version, records, None, why), profile, {}
    window, predictions = window_arrays(records, profile)
    verdict = judge(profile, window, predictions, SETTINGS)
    reason: str | None = None
    if verdict.too_small:
        reason = f"{len(records)} rows, fewer than the minimum of {SETTINGS.min_rows}"
    summary = summarise(str(profile["model_version"]), records, verdict, reason)
    return summary, profile, {**window, "prediction": predictions}


def moved_table(rows: int = 300) -> pd.DataFrame:
    """RM and LSTAT shifted, CHAS mostly 1: two continuous columns and a categorical one move."""
    table = synthetic_table(rows, 5)
    table["RM"] = (table["RM"] + 1.5).clip(upper=15)
    table["LSTAT"] = (table["LSTAT"] * 1.6).clip(upper=100)
    table["CHAS"] = (np.arange(rows) % 10 != 0).astype(float)
    return table


# Module-wide: fitting the tiny model and drawing the figure take a second or two each.
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("page") / "models"
    export_tiny_model(directory)
    return directory


@pytest.fixture(scope="module")
def drift_page(tiny_model: Path) -> Built:
    return build(tiny_model, moved_table())


@pytest.fixture(scope="module")
def drift_html(drift_page: Built) -> str:
    return render(*drift_page)


@pytest.fixture(scope="module")
def calm_page(tiny_model: Path) -> Built:
    return build(tiny_model, synthetic_table(300, 5))


@pytest.fixture(scope="module")
def pages(drift_page: Built, calm_page: Built, drift_html: str) -> dict[str, tuple[str, Built]]:
    """Each kind of page the browser opens, as HTML, with what it was rendered from."""
    return {"drift": (drift_html, drift_page), "no drift": (render(*calm_page), calm_page)}


class Parsed(HTMLParser):
    """The page's headings in order, its list items, and each table's rows of cell texts."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.items: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._text: list[str] | None = None
        self._table: str | None = None
        self._row: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("class") or ""
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
        if tag in ("h1", "h2", "h3", "li", "th", "td"):
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or []).strip()
        if tag in ("h1", "h2", "h3"):
            self.headings.append((tag, text))
        elif tag == "li":
            self.items.append(text)
        elif tag in ("th", "td"):
            self._row.append(text)
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append(self._row)
        elif tag == "table":
            self._table = None
        if tag in ("h1", "h2", "h3", "li", "th", "td"):
            self._text = None


def test_the_page_opens_with_the_verdict_in_a_sentence(drift_page: Built, drift_html: str) -> None:
    summary, page = drift_page[0], drift_html
    parsed = Parsed(page)
    assert parsed.headings[0] == ("h1", "Drift found")
    assert [text for _, text in parsed.headings[1:]] == [
        "What moved", "What to do next", "Traffic", "Every column",
        "Distributions: reference vs window",
    ]  # fmt: skip
    lead = re.search(r'<p class="lead">(.*?)</p>', page)
    assert lead is not None
    assert re.sub(r"<[^>]+>", "", lead.group(1)) == (
        f"Drift: 4 of the 13 columns tested (inputs and prediction) moved in the 300 rows model "
        f"{summary['model_version']} served from 2026-11-01 09:30:00 to 2026-11-01 09:44:57 UTC "
        "(15 minutes)."
    )
    # the prediction follows RM and LSTAT
    assert summary["verdict"]["drifted"] == ["CHAS", "RM", "LSTAT", "prediction"]


@pytest.mark.parametrize(
    ("first", "last", "span"),
    [
        ("2026-11-01T09:30:00+00:00", "2026-11-01T09:30:00+00:00", "at 2026-11-01 09:30:00 UTC"),
        ("2026-11-01T09:30:00+01:00", "2026-11-01T11:00:00+00:00",
         "from 2026-11-01 08:30:00 to 2026-11-01 11:00:00 UTC (2.5 hours)"),
        ("2026-11-01T09:30:00+00:00", "2026-11-02T09:30:00+00:00",
         "from 2026-11-01 09:30:00 to 2026-11-02 09:30:00 UTC (1 day)"),
        ("2026-11-01T09:30:00+00:00", "2026-11-01T09:30:00.400+00:00",
         "from 2026-11-01 09:30:00 to 2026-11-01 09:30:00 UTC (0.4 seconds)"),
    ],
)  # fmt: skip
def test_the_time_span_is_in_utc_and_in_words(first: str, last: str, span: str) -> None:
    traffic = {"rows": 2, "first": first, "last": last}
    summary = {"model_version": "v1", "status": "no drift", "traffic": traffic, "verdict": {}}
    assert verdict_sentence(summary) == (
        f"No drift: none of the 0 columns tested moved in the 2 rows model v1 served {span}."
    )


def test_the_columns_that_moved_are_listed_with_their_effect_in_words(
    drift_page: Built, drift_html: str
) -> None:
    summary, profile, window = drift_page
    lines = moved_lines(summary, profile, window)
    assert [line.split(":")[0] for line in lines] == summary["verdict"]["drifted"]
    by_name = {line.split(":")[0]: line for line in lines}
    number = r"\d+(?:\.\d+)?(?:e-\d+)?"
    assert re.fullmatch(
        rf"RM: mean up {number} sd \(large\), KS D = 0\.\d\d, adjusted p = {number}.*",
        by_name["RM"],
    )
    assert re.match(
        r"LSTAT: mean up \d\.\d\d sd \((small|moderate|large)\), KS D = ", by_name["LSTAT"]
    )
    # a categorical column: the share that changed most, from the reference's to the window's
    assert re.match(
        r"CHAS: share of 1 up from \d+\.\d% to 90\.0% \(large\), chi-square = \d+\.\d, adjusted p",
        by_name["CHAS"],
    )
    # from the summary alone (the console's advice), the same lines without the effect
    assert moved_lines(summary)[0].startswith("CHAS: chi-square = 97.6, adjusted p = ")
    # what the page lists is these lines
    assert Parsed(drift_html).items[: len(lines)] == lines


@pytest.mark.parametrize(
    ("shift", "words"),
    [(0.1, "mean up 0.10 sd (negligible)"), (-0.3, "mean down 0.30 sd (small)"),
     (0.6, "mean up 0.60 sd (moderate)"), (1.2, "mean up 1.20 sd (large)")],
)  # fmt: skip
def test_effect_words_follow_cohens_thresholds(shift: float, words: str) -> None:
    """Cohen's d against the reference spread: 0.2 small, 0.5 moderate, 0.8 large."""
    reference = np.array([-1.0, 1.0] * 50)  # mean 0, population sd 1
    profile = {
        "features": {"X": {"kind": "continuous", "mean": 0.0, "std": 1.0, "values": reference}},
        "prediction": {"kind": "continuous", "mean": 0.0, "std": 1.0, "values": reference},
    }
    column = {
        "column": "X", "test": "ks", "statistic": 0.5, "p_adjusted": 0.001, "drift": True,
        "out_of_range_share": 0.0, "missing_rate": 0.0, "reference_missing_rate": 0.0,
    }  # fmt: skip
    summary = {"verdict": {"columns": [column]}}
    [line] = moved_lines(summary, profile, {"X": reference + shift})
    assert line == f"X: {words}, KS D = 0.50, adjusted p = 0.001"


def test_the_traffic_is_a_table_not_json(drift_page: Built, drift_html: str) -> None:
    summary, page = drift_page[0], drift_html
    assert (
        "rows_by_route" not in page
        and "latency_ms" not in page
        and "{" not in page.split("</style>")[1]
    )
    traffic = Parsed(page).tables["traffic"]
    latency = summary["traffic"]["latency_ms"]
    assert traffic == [
        ["Rows", "300"],
        ["Requests", "110"],  # 10 batches of 20 rows, then 100 single requests
        ["Rows via /predict", "100"],
        ["Rows via /predict/batch", "200"],
        ["First row", "2026-11-01 09:30:00 UTC"],
        ["Last row", "2026-11-01 09:44:57 UTC"],
        ["Latency p50 (ms, per request)", f"{latency['p50']:.4g}"],
        ["Latency p90 (ms, per request)", f"{latency['p90']:.4g}"],
        ["Latency p99 (ms, per request)", f"{latency['p99']:.4g}"],
    ]


def test_every_column_has_a_row_and_the_moved_ones_say_so(
    drift_page: Built, drift_html: str
) -> None:
    summary, profile, _ = drift_page
    table = Parsed(drift_html).tables["columns"]
    header, rows = table[0], table[1:]
    assert header[0] == "Column" and "Adjusted p" in header and "Effect" in header
    assert [row[0] for row in rows] == [*profile["features"], "prediction"]
    moved = header.index("Moved")
    assert [row[0] for row in rows if row[moved] == "yes"] == summary["verdict"]["drifted"]
    effect = header.index("Effect")
    assert all(row[effect] for row in rows)


def test_hostile_strings_are_escaped(drift_page: Built) -> None:
    summary, profile, window = copy.deepcopy(drift_page)
    hostile = '<script>alert("x")</script>'
    summary["model_version"] = hostile
    summary["traffic"]["rows_by_route"] = {f"/predict{hostile}": 300}
    summary["verdict"]["columns"][0]["test"] = f"ks{hostile}"
    page = render(summary, profile, window)
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 4  # title, lead...
    # the page itself holds nothing that runs or fetches
    assert re.findall(r"(?:src|href)=\"(?!data:)", page) == []
    assert '<html lang="en">' in page and "<title>Drift report for model &lt;script" in page


def test_a_no_drift_page(calm_page: Built) -> None:
    summary, profile, window = calm_page
    assert summary["status"] == "no drift"
    page = render(summary, profile, window)
    parsed = Parsed(page)
    assert parsed.headings[0] == ("h1", "No drift")
    assert "What moved" not in [text for _, text in parsed.headings]
    version = summary["model_version"]
    assert f"No drift: none of the 13 columns tested moved in the 300 rows model {version}" in page
    assert parsed.items == ["Nothing to do: judge the next window when it has been served."]
    assert 'src="data:image/png;base64,' in page


def test_a_too_small_page(tiny_model: Path) -> None:
    summary, profile, window = build(tiny_model, moved_table(50))
    page = render(summary, profile, window)
    parsed = Parsed(page)
    assert parsed.headings[0] == ("h1", "Too small to judge")
    assert "are too few to test (50 rows, fewer than the minimum of 200)." in page
    assert "the 50 rows model" in page and "columns" not in parsed.tables  # nothing was tested
    assert any("--last" in item for item in parsed.items)


def test_a_page_never_judged_says_why(tiny_model: Path) -> None:
    summary, profile, window = build(tiny_model, synthetic_table(30, 5), version="0123456789ab")
    page = render(summary, profile, window)
    parsed = Parsed(page)
    assert parsed.headings[0] == ("h1", "Not judged")
    assert "were not compared with a reference: the reference profile in" in page
    assert "<img" not in page and "columns" not in parsed.tables
    assert parsed.tables["traffic"][0] == ["Rows", "30"]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, which follows its 8-byte signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["drift", "no drift"])
@pytest.mark.parametrize(("width", "height"), [(1280, 800), (1024, 768)])
def test_the_page_fits_a_laptop_screen_in_a_real_browser(
    pages: dict[str, tuple[str, Built]],
    tmp_path: Path,
    browser: Browser,
    kind: str,
    width: int,
    height: int,
) -> None:
    text, (summary, _, _) = pages[kind]
    assert summary["status"] == kind
    path = tmp_path / "drift.html"
    path.write_text(text)
    page, fetched = open_offline(browser, path, width)
    page.set_viewport_size({"width": width, "height": height})

    # nothing scrolls sideways, and no table reaches past the screen's right edge
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    edges = page.evaluate(
        "[...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().right)"
    )
    assert len(edges) == (2 if summary["verdict"]["columns"] else 1)
    assert max(edges) <= width

    # the verdict is the first heading, on the first screen with its sentence
    first = page.locator("h1, h2, h3").first
    assert first.evaluate("h => h.tagName") == "H1"
    assert first.inner_text() == ("Drift found" if kind == "drift" else "No drift")
    lead = page.locator("p.lead")
    box = lead.bounding_box()
    assert box is not None and box["y"] + box["height"] <= height
    assert str(summary["model_version"]) in lead.inner_text()

    moved = [item.split(":")[0] for item in page.locator("ul.moved li").all_inner_texts()]
    assert moved == summary["verdict"]["drifted"]
    if moved:  # what moved is on the first screen too
        last_item = page.locator("ul.moved li").last.bounding_box()
        assert last_item is not None and last_item["y"] + last_item["height"] <= height

    figure = page.locator("img")
    assert figure.evaluate("img => img.complete && img.naturalWidth > 0")
    assert figure.evaluate("img => img.getBoundingClientRect().right") <= width
    assert fetched == []

    shot = tmp_path / "drift.png"
    page.screenshot(path=shot)
    assert shot.stat().st_size > 0 and png_size(shot) == (width, height)
    if (docs := os.environ.get("BOSTON_DRIFT_SCREENSHOT")) and kind == "drift" and width == 1280:
        Path(docs).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, docs)
    page.close()
