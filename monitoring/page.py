"""The drift report's HTML page: the verdict first, what moved and what to do, then the figures.

`render(summary, profile, window)` turns one model version's summary (report.summarise's dict),
its reference profile and the window's arrays into one self-contained page: inline CSS, the figure
as an inline PNG, nothing fetched from elsewhere, laid out to fit a laptop screen without sideways
scrolling. Pure: the caller writes the file. `verdict_sentence`, `moved_lines` and `next_steps`
are the page's words, so that the console advice can say the same thing.
"""

from __future__ import annotations

import base64
import html
import io
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np

# Cohen's conventional effect sizes (Cohen 1988, Statistical Power Analysis for the Behavioral
# Sciences): 0.2 small, 0.5 medium, 0.8 large, for a difference of means in standard deviations
# (d) and, with the same cut-offs, for a difference of proportions on the arcsine scale (h).
# Below 0.2 is called negligible.
EFFECT_WORDS = ((0.8, "large"), (0.5, "moderate"), (0.2, "small"), (0.0, "negligible"))

_STATUS_HEADINGS = {
    "drift": "Drift found",
    "no drift": "No drift",
    "too small": "Too small to judge",
    "not judged": "Not judged",
}


def render(summary: dict[str, Any], profile: dict[str, Any], window: dict[str, Any]) -> str:
    """One model version's page; `window` maps each profiled column and "prediction" to its
    array (empty when the window was never judged: no figure then)."""
    status = summary["status"]
    version = str(summary["model_version"])
    heading = _STATUS_HEADINGS.get(status, status)
    moved = moved_lines(summary, profile, window)
    moved_section = (
        '<section aria-labelledby="moved"><h2 id="moved">What moved</h2><ul class="moved">'
        + "".join(f"<li>{_marked(line)}</li>" for line in moved)
        + "</ul></section>"
        if moved
        else ""
    )
    steps = "".join(f"<li>{_marked(step)}</li>" for step in next_steps(summary))
    columns = (summary["verdict"] or {}).get("columns", [])
    drifted = [column["column"] for column in columns if column["drift"]]
    column_section = (
        '<section aria-labelledby="columns"><h2 id="columns">Every column</h2>'
        + _column_table(columns, profile, window)
        + "<p class=note>A column moves when its adjusted p-value (Benjamini-Hochberg over every "
        "column) is below alpha; the effect, PSI and the normalised Wasserstein distance say how "
        "far it moved and never decide. Raw p-values and exact figures are in the JSON summary "
        "beside this page.</p></section>"
        if columns
        else ""
    )
    figure_section = (
        '<section aria-labelledby="figure"><h2 id="figure">Distributions: reference vs window</h2>'
        f"<figure>{_figure(profile, window, drifted)}<figcaption>Each column's reference (the "
        "training split) against this window; columns that moved are titled in red.</figcaption>"
        "</figure></section>"
        if window
        else ""
    )
    title = f"Drift report for model {version}: {heading.lower()}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style></head><body><main>
<header class="verdict {_e(status.replace(" ", "-"))}">
<h1>{_e(heading)}</h1>
<p class="lead">{_unbroken_times(_e(verdict_sentence(summary)))}</p>
</header>
{moved_section}
<section aria-labelledby="next"><h2 id="next">What to do next</h2><ol>{steps}</ol></section>
<section aria-labelledby="traffic"><h2 id="traffic">Traffic</h2>{_traffic_table(summary["traffic"])}
</section>
{column_section}
{figure_section}
</main></body></html>
"""


def verdict_sentence(summary: dict[str, Any]) -> str:
    """The verdict in one sentence: which model, how many rows, over what time."""
    version, status = summary["model_version"], summary["status"]
    traffic = summary["traffic"]
    rows, span = traffic["rows"], _span(traffic["first"], traffic["last"])
    served = f"the {rows} row{'' if rows == 1 else 's'} model {version} served {span}"
    columns = (summary["verdict"] or {}).get("columns", [])
    if status == "drift":
        count = sum(1 for column in columns if column["drift"])
        return (
            f"Drift: {count} of the {len(columns)} columns tested (inputs and prediction) moved "
            f"in {served}."
        )
    if status == "no drift":
        return f"No drift: none of the {len(columns)} columns tested moved in {served}."
    if status == "too small":
        reason = f" ({summary['reason']})" if summary.get("reason") else ""
        return f"Too small to judge: {served} are too few to test{reason}."
    reason = f": {summary['reason']}" if summary.get("reason") else ""
    return f"Not judged: {served} were not compared with a reference{reason}."


def moved_lines(
    summary: dict[str, Any],
    profile: dict[str, Any] | None = None,
    window: dict[str, Any] | None = None,
) -> list[str]:
    """One line per column that moved, its effect size in words first; without the profile and
    the window (the summary alone, as a console reads it) the effect is left out."""
    verdict = summary["verdict"] or {}
    references = _references(profile) if profile else {}
    window = window or {}
    lines = []
    for column in verdict.get("columns", []):
        if not column["drift"]:
            continue
        name = column["column"]
        parts = [_effect(references.get(name), window.get(name))]
        if column["test"] == "ks":
            parts.append(f"KS D = {column['statistic']:.2f}")
        else:
            parts.append(f"chi-square = {column['statistic']:.1f}")
        parts.append(f"adjusted p = {column['p_adjusted']:.2g}")
        if column["out_of_range_share"]:
            parts.append(f"{_share(column['out_of_range_share'])} outside the reference range")
        if column["missing_rate"] != column["reference_missing_rate"]:
            parts.append(
                f"missing {_share(column['missing_rate'])} "
                f"(reference {_share(column['reference_missing_rate'])})"
            )
        lines.append(f"{name}: " + ", ".join(part for part in parts if part))
    return lines


def next_steps(summary: dict[str, Any]) -> list[str]:
    """What an operator does about this verdict."""
    status = summary["status"]
    if status == "drift":
        return [
            "Check the inputs that moved at their source: a broken upstream feed looks like drift.",
            "If the houses really changed, label recent ones and retrain on them: add the rows to "
            "data/raw/HousingData.csv (ingest validates them), then `dvc repro`.",
            "Compare the new metrics with `dvc metrics diff` before serving the new model.",
        ]
    if status == "no drift":
        return ["Nothing to do: judge the next window when it has been served."]
    if status == "too small":
        return [
            "Wait for more traffic, or widen the window (--since/--until, or a larger --last) "
            "until it holds at least monitoring.min_rows rows."
        ]
    return [
        "Point --model-dir at the folder holding this model's card and reference profile, "
        "then run the report again."
    ]


def _effect(reference: dict[str, Any] | None, values: Any) -> str:
    """The column's effect size in words: the mean's shift in reference standard deviations
    (Cohen's d against the reference spread), or for a categorical column the category whose
    share changed most (Cohen's h)."""
    if reference is None or values is None:
        return ""
    live = np.asarray(values, dtype=np.float64)
    live = live[~np.isnan(live)]
    if live.size == 0:
        return ""
    if reference["kind"] == "categorical":
        counts = reference["categories"]
        total = sum(counts.values())
        levels = sorted({float(key) for key in counts} | {float(level) for level in live})
        changes = []
        for level in levels:
            before = counts.get(f"{level:g}", 0) / total
            after = float(np.mean(live == level))
            h = 2 * np.arcsin(np.sqrt(after)) - 2 * np.arcsin(np.sqrt(before))
            # a binary column's two shares move by the same h: the one that rose reads best
            changes.append((round(abs(h), 9), after > before, level, before, after))
        size, _, level, before, after = max(changes)
        direction = "up" if after > before else "down"
        return (
            f"share of {level:g} {direction} from {_share(before)} to {_share(after)} "
            f"({_words(size)})"
        )
    spread = float(reference["std"])
    if not np.isfinite(spread) or spread == 0:
        return ""
    d = (float(live.mean()) - float(reference["mean"])) / spread
    direction = "up" if d > 0 else "down"
    return f"mean {direction} {abs(d):.2f} sd ({_words(abs(d))})"


def _words(size: float) -> str:
    return next(word for cut, word in EFFECT_WORDS if size >= cut)


def _references(profile: dict[str, Any]) -> dict[str, Any]:
    return {**profile["features"], "prediction": profile["prediction"]}


def _span(first: str | None, last: str | None) -> str:
    """'from A to B UTC (5 minutes)'; the log's times are ISO strings."""
    if first is None or last is None:
        return "(no rows in the window)"
    start, end = _utc(first), _utc(last)
    if start == end:
        return f"at {start:%Y-%m-%d %H:%M:%S} UTC"
    seconds = (end - start).total_seconds()
    units = (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0), ("second", 1.0))
    # the largest unit the span fills at least once; under a second, in seconds
    unit, length = next(((u, n) for u, n in units if seconds >= n), units[-1])
    amount = seconds / length
    # "2.5 hours", "15 minutes": a tenth of a unit below 10 of them, whole ones above
    figure = f"{amount:.1f}".removesuffix(".0") if amount < 9.95 else f"{amount:.0f}"
    plural = "" if figure == "1" else "s"
    return (
        f"from {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC ({figure} {unit}{plural})"
    )


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _traffic_table(traffic: dict[str, Any]) -> str:
    """Two columns, one figure a row: narrow enough for any screen."""
    latency = traffic["latency_ms"]
    rows: list[tuple[str, str]] = [
        ("Rows", _e(traffic["rows"])),
        ("Requests", _e(traffic["requests"])),
        *(
            (f"Rows via <code>{_e(route)}</code>", _e(count))
            for route, count in traffic["rows_by_route"].items()
        ),
        ("First row", _e(_time(traffic["first"]))),
        ("Last row", _e(_time(traffic["last"]))),
        *(
            (f"Latency {_e(q)} (ms, per request)", _e(_cell(latency.get(q))))
            for q in ("p50", "p90", "p99")
        ),
    ]
    body = "".join(f'<tr><th scope="row">{key}</th><td>{value}</td></tr>' for key, value in rows)
    return f'<table class="traffic"><caption>Requests in the window</caption>{body}</table>'


def _time(text: str | None) -> str:
    return "-" if text is None else f"{_utc(text):%Y-%m-%d %H:%M:%S} UTC"


# the per-column table's headers, in the order of the cells _column_table writes
_COLUMN_HEADERS = (
    "Column", "Rows", "Effect", "Test statistic", "p", "Adjusted p", "Moved", "PSI",
    "Wasserstein (sd)", "Missing: window / reference", "Outside reference range",
)  # fmt: skip


_TEST_NAMES = {"ks": "KS", "chi2": "χ²"}


def _column_table(
    columns: list[dict[str, Any]], profile: dict[str, Any], window: dict[str, Any]
) -> str:
    """The per-column figures; on a narrow screen each row becomes a stacked card (CSS)."""
    references = _references(profile)
    head = "".join(f'<th scope="col">{_e(header)}</th>' for header in _COLUMN_HEADERS)
    body = []
    for column in columns:
        name = column["column"]
        cells = (
            _cell(column["rows"]),
            _effect(references.get(name), window.get(name)) or "-",
            f"{_TEST_NAMES.get(column['test'], column['test'])} {column['statistic']:.3g}",
            _figure_text(column["p_value"], ".2g"),
            _figure_text(column["p_adjusted"], ".2g"),
            "yes" if column["drift"] else "no",
            _figure_text(column["psi"], ".3g"),
            _figure_text(column["wasserstein"], ".3g"),
            f"{_share(column['missing_rate'])} / {_share(column['reference_missing_rate'])}",
            _share(column["out_of_range_share"]),
        )
        row_class = ' class="moved"' if column["drift"] else ""
        body.append(
            f'<tr{row_class}><th scope="row" data-label="Column">{_e(name)}</th>'
            + "".join(
                f'<td data-label="{_e(header)}">{_e(cell)}</td>'
                for header, cell in zip(_COLUMN_HEADERS[1:], cells, strict=True)
            )
            + "</tr>"
        )
    return (
        '<table class="columns"><caption>One test per column; rows that moved are marked'
        f"</caption><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _figure(profile: dict[str, Any], window: dict[str, Any], moved: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")  # no display; chosen here, never on import
    import matplotlib.pyplot as plt

    references = _references(profile)
    names = list(references)
    columns = 4
    fig, axes = plt.subplots(-(-len(names) // columns), columns, figsize=(14, 2.8 * len(names) / 4))
    for ax, name in zip(np.ravel(axes), names, strict=False):
        reference, live = references[name], window[name]
        live = live[~np.isnan(live)]
        if reference["kind"] == "categorical":
            levels = sorted(float(level) for level in reference["categories"])
            total = sum(reference["categories"].values())
            shares = [reference["categories"][f"{level:g}"] / total for level in levels]
            live_shares = [float(np.mean(live == level)) if live.size else 0.0 for level in levels]
            positions = np.arange(len(levels))
            ax.bar(positions - 0.2, shares, 0.4, label="reference")
            ax.bar(positions + 0.2, live_shares, 0.4, label="window")
            ax.set_xticks(positions, [f"{level:g}" for level in levels])
            ax.set_ylabel("share of rows")
        else:
            values = np.asarray(reference["values"])
            bins = np.histogram_bin_edges(np.concatenate([values, live]), bins=30)
            ax.hist(values, bins=bins, density=True, alpha=0.5, label="reference")
            ax.hist(live, bins=bins, density=True, alpha=0.5, label="window")
            ax.set_ylabel("density")
        if name in moved:
            ax.set_title(f"{name} (moved)", color="#b00020", fontweight="bold")
        else:
            ax.set_title(name)
        ax.legend(fontsize=7)
    for ax in np.ravel(axes)[len(names) :]:
        ax.remove()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return (
        '<img alt="Histograms of every column, reference against window" '
        f'src="data:image/png;base64,{encoded}">'
    )


def _e(value: object) -> str:
    return html.escape(str(value))


def _marked(line: str) -> str:
    """A line of advice as HTML: a leading "NAME:" in bold, `commands` as code, the rest escaped."""
    text = _unbroken_times(re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(line)))
    name, colon, rest = text.partition(": ")
    if colon and " " not in name:
        return f"<strong>{name}</strong>: {rest}"
    return text


def _unbroken_times(text: str) -> str:
    """A date and time kept on one line: a break after "2026-" reads as a minus sign."""
    return re.sub(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", r'<span class="nowrap">\1</span>', text)


def _figure_text(value: float | None, style: str) -> str:
    """Table figures to two or three significant digits: the JSON summary keeps them whole."""
    return "-" if value is None else format(value, style)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


# Readable at a glance: the system's UI font, 1.5 line height, a measure of about 70rem; tables
# use the full width and wrap their headers; below 48rem the column table stacks into one card per
# column, so no screen needs sideways scrolling.
_CSS = """
*,*::before,*::after{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;color:#1a1a1a;background:#fff}
main{max-width:72rem;margin:0 auto;padding:1.25rem}
h1{font-size:1.9rem;margin:0 0 .25rem}
h2{font-size:1.25rem;margin:1.75rem 0 .5rem}
.verdict{border-left:.5rem solid #666;background:#f3f3f3;padding:.75rem 1rem;border-radius:.25rem}
.verdict.drift{border-color:#b00020;background:#fdecee}
.verdict.drift h1{color:#8c001a}
.verdict.no-drift{border-color:#1b7a3a;background:#eaf6ee}
.verdict.no-drift h1{color:#145c2c}
.verdict.too-small,.verdict.not-judged{border-color:#a66300;background:#fff5e5}
.lead{font-size:1.1rem;margin:0}
.nowrap{white-space:nowrap}
ul.moved{padding-left:1.25rem}
ul.moved li{margin:.2rem 0}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
table{border-collapse:collapse;font-size:.875rem;font-variant-numeric:tabular-nums}
caption{text-align:left;font-size:.85rem;color:#555;padding-bottom:.25rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top}
thead th{background:#f3f3f3;text-align:left;font-weight:600}
table.traffic td{text-align:right;min-width:8rem}
table.traffic th{text-align:left;font-weight:normal}
table.columns{width:100%}
table.columns td{text-align:right;white-space:nowrap}
table.columns tbody th{text-align:left}
table.columns td:nth-child(3){text-align:left;white-space:normal;min-width:9rem}
table.columns td:nth-child(10){white-space:normal}
tr.moved{background:#fdecee}
tr.moved td:nth-child(7){color:#8c001a;font-weight:700}
.note{font-size:.875rem;color:#444;max-width:48rem}
figure{margin:0}
figcaption{font-size:.85rem;color:#555}
img{max-width:100%;height:auto;display:block}
@media (max-width:48rem){
  table.columns thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
  table.columns,table.columns tbody,table.columns tr,table.columns th,table.columns td{
    display:block;width:100%}
  table.columns tr{margin-bottom:.75rem;border:1px solid #ccc}
  table.columns caption{display:block}
  table.columns td:nth-child(n),table.columns tbody th{border:0;text-align:right}
  table.columns td::before,table.columns tbody th::before{content:attr(data-label);float:left;
    font-weight:600;padding-right:1rem;text-align:left}
}
"""
