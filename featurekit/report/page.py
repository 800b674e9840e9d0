"""One self-contained HTML page per comparison or sweep: it opens offline (styles, script and pictures inline).

From the top: what was compared on what data and the chosen (sweep: on valid) or best row with its test
figures; every row as a forest plot; ROC and precision-recall small multiples; accuracy on real and fake
with the confusion at the valid threshold; views and other test sets coloured by value; the learning curve;
the most confident mistakes as thumbnails; the full table, sortable by clicking a header.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from featurekit.report.document import rank_value
from featurekit.report.gallery import gallery_items
from featurekit.report.output import write_text
from featurekit.report.page_assets import CONTENT_SECURITY_POLICY, SCRIPT, STYLE
from featurekit.report.plots import curves_figure, figure_bytes, forest_figure, panel_name
from featurekit.report.results import features_text, flags_text, scored_on, short_weights
from featurekit.rows import scored_elsewhere


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def prose(text: str) -> str:
    """Escaped text whose `commands` show as code."""
    parts = esc(text).split("`")
    return "".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts))


def number_text(value: Any, spec: str = ".3f") -> str:
    """A figure as text; "–" where there is none (no interval, a split without fakes)."""
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def interval_text(row: dict[str, Any], key: str) -> str:
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if number_text(low) == "–" or number_text(high) == "–":
        return ""
    return f"[{low:.3f}, {high:.3f}]"


def colour(value: Any, low: float = 0.5, high: float = 1.0) -> str:
    """A light background for a rate: greener from `low` to `high`, red below chance (0.5)."""
    if number_text(value) == "–":
        return ""
    value = float(value)
    if value < 0.5:
        return f"background: hsl(5, 70%, {92 - 50 * (0.5 - value):.0f}%)"
    strength = max(0.0, min(1.0, (value - low) / (high - low))) if high > low else 1.0
    return f"background: hsl(135, 55%, {96 - 34 * strength:.0f}%)"


def value_range(values: Sequence[Any]) -> tuple[float, float]:
    """The span a table's colours stretch over: its own values (at least 0.2 wide), never below chance."""
    finite = [float(v) for v in values if number_text(v) != "–"]
    if not finite:
        return 0.5, 1.0
    low, high = max(0.5, min(finite)), max(finite)
    return (low, high) if high - low >= 0.2 else (max(0.5, high - 0.2), high)


def picture(figure, alt: str) -> str:
    """A figure as an inline SVG picture (a data URI: no file beside the page, its ids kept apart)."""
    data = base64.b64encode(figure_bytes(figure, "svg")).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/svg+xml;base64,{data}">'


def flag_badges(row: dict[str, Any]) -> str:
    badges = []
    if row.get("random_features"):
        badges.append('<span class="flag random">RANDOM FEATURES</span>')
    if row.get("collapsed"):
        badges.append(f'<span class="flag collapsed" title="{esc(row["collapsed"])}">COLLAPSED</span>')
    if row.get("leaks"):
        badges.append('<span class="flag other">LEAKS</span>')
    if row.get("train_overlap"):
        badges.append('<span class="flag other">TRAIN OVERLAP</span>')
    return " ".join(badges)


def row_class(row: dict[str, Any]) -> str:
    return "collapsed" if row.get("collapsed") else ("random" if row.get("random_features") else "")


# --------------------------------------------------------------------------------------------------
# Sections


def card(label: str, value: str, detail: str = "") -> str:
    return (f'<div class="card"><div class="label">{esc(label)}</div><div class="value">{esc(value)}</div>'
            f'<div class="ci">{esc(detail)}</div></div>')


def headline(row: dict[str, Any], figures: dict[str, Any], what: str, caveat: str) -> str:
    """The chosen or best configuration and its test figures with their 95% intervals."""
    cards = [card("test accuracy", number_text(figures.get("accuracy")), interval_text(figures, "accuracy")),
             card("test ROC AUC", number_text(figures.get("roc_auc")), interval_text(figures, "roc_auc")),
             card("average precision", number_text(figures.get("average_precision"))),
             card("accuracy on real", number_text(figures.get("accuracy_real"))),
             card("accuracy on fake", number_text(figures.get("accuracy_fake"))),
             card("threshold (chosen on valid)", number_text(figures.get("threshold"), ".4g")),
             card("test images", str(figures.get("n_test", figures.get("n", "–"))))]
    return (f'<section class="headline"><div class="muted">{esc(what)}</div>'
            f'<div class="what">{esc(panel_name(row))} &middot; {esc(row["probe"])} {flag_badges(row)}</div>'
            f'<div class="cards">{"".join(cards)}</div><p class="muted">{prose(caveat)}</p></section>')


def forest_section(rows: Sequence[dict[str, Any]], figures: Sequence[tuple[str, str]], heading: str,
                   caption: str, chosen: dict[str, Any] | None = None) -> str:
    key = ('<p class="key muted"><span><span class="dot" style="background:#1f4e9c"></span>a row</span>'
           '<span><span class="dot" style="border:2px solid #d97706"></span>random features (a baseline)</span>'
           '<span style="color:#dc2626">&times; collapsed (one class for every image)</span></p>')
    if chosen is not None:
        key = key.replace("</p>", '<span style="color:#15803d">&#9679; the chosen configuration</span></p>')
    return (f"<h2>{esc(heading)}</h2>{key}<figure>{picture(forest_figure(rows, figures, chosen), heading)}"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def curves_section(rows: Sequence[dict[str, Any]],
                   heading: str = "ROC and precision-recall curves, one panel per feature set") -> str:
    roc, pr = curves_figure(rows, "roc"), curves_figure(rows, "pr")
    if roc is None:
        return ""
    return (f"<h2>{esc(heading)}</h2>"
            "<p class=\"muted\">Each panel holds the probes fitted on one feature set, the legend sorted by area. "
            "Dotted: chance.</p>"
            f'<div class="pair"><figure>{picture(roc, "ROC curves")}</figure>'
            f'<figure>{picture(pr, "precision-recall curves")}</figure></div>')


def confusion(row: dict[str, Any]) -> dict[str, int] | None:
    """Counts of the four outcomes at the row's threshold (chosen on valid); None without scores."""
    if row.get("_scores") is None:
        return None
    called_fake = np.asarray(row["_scores"]) >= float(row["threshold"])
    fake = np.asarray(row["_labels"]) == 1
    return {"real as real": int(np.sum(~fake & ~called_fake)), "real as fake": int(np.sum(~fake & called_fake)),
            "fake as real": int(np.sum(fake & ~called_fake)), "fake as fake": int(np.sum(fake & called_fake))}


def real_fake_section(rows: Sequence[dict[str, Any]]) -> str:
    """Accuracy on real and on fake images, and the confusion at the valid threshold, row by row."""
    own = sorted([r for r in rows if not scored_elsewhere(r)], key=lambda r: -rank_value(r.get("roc_auc")))
    if not own:
        return ""
    header = ("<tr><th>feature set</th><th>probe</th><th>accuracy on real</th><th>accuracy on fake</th>"
              "<th>real called real</th><th>real called fake</th><th>fake called real</th>"
              "<th>fake called fake</th><th>threshold</th></tr>")
    low, high = value_range([r.get(k) for r in own for k in ("accuracy_real", "accuracy_fake")])
    lines = []
    for row in own:
        counts = confusion(row) or {}
        cells = "".join(f'<td class="num">{counts.get(k, "–")}</td>'
                        for k in ("real as real", "real as fake", "fake as real", "fake as fake"))
        lines.append(f'<tr class="{row_class(row)}"><td class="nowrap">{esc(panel_name(row))}</td><td>{esc(row["probe"])} '
                     f'{flag_badges(row)}</td>'
                     f'<td class="num" style="{colour(row.get("accuracy_real"), low, high)}">{number_text(row.get("accuracy_real"))}</td>'
                     f'<td class="num" style="{colour(row.get("accuracy_fake"), low, high)}">{number_text(row.get("accuracy_fake"))}</td>'
                     f'{cells}<td class="num">{number_text(row.get("threshold"), ".4g")}</td></tr>')
    return ("<h2>Accuracy on real and on fake images; confusion at the threshold chosen on valid</h2>"
            "<p class=\"muted\">A detector's errors often sit on one side: a good overall accuracy can hide "
            "one class called wrong.</p>"
            f'<div class="scroll"><table><thead>{header}</thead><tbody>{"".join(lines)}</tbody></table></div>')


def robustness_section(rows: Sequence[dict[str, Any]]) -> str:
    """Rows x where they were scored (test split, views, other test sets), ROC AUC coloured by value."""
    if not any(scored_elsewhere(r) for r in rows):
        return ""
    places = list(dict.fromkeys(scored_on(r) for r in rows))
    grid: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        grid.setdefault((panel_name(row), str(row["probe"])), {})[scored_on(row)] = row
    header = "<tr><th>feature set</th><th>probe</th>" + "".join(f"<th>{esc(p)}</th>" for p in places) + "</tr>"
    low, high = value_range([r.get("roc_auc") for r in rows])
    lines = []
    for (name, probe), cells in grid.items():
        tds = "".join(
            f'<td class="num" style="{colour(cells[p].get("roc_auc"), low, high)}">{number_text(cells[p].get("roc_auc"))}'
            f'<br><span class="muted">acc {number_text(cells[p].get("accuracy"))}</span></td>'
            if p in cells else '<td class="num">–</td>' for p in places)
        lines.append(f'<tr><td class="nowrap">{esc(name)}</td><td>{esc(probe)}</td>{tds}</tr>')
    return ("<h2>Robustness views and other test sets</h2><p class=\"muted\">ROC AUC (and accuracy at the valid "
            "threshold) of each probe where it was scored; colour: darker green for a higher ROC AUC (over the range of "
            "this table), red below chance.</p>"
            f'<div class="scroll"><table><thead>{header}</thead><tbody>{"".join(lines)}</tbody></table></div>')


def gallery_section(row: dict[str, Any], limit: int = 12) -> str:
    """Thumbnails of the row's most confident mistakes on test, with P(fake) and the true class."""
    items = gallery_items(row, limit)
    if row.get("_scores") is None:
        return ""
    heading = f"<h2>Most confident mistakes of {esc(panel_name(row))} &middot; {esc(row['probe'])}</h2>"
    if not items:
        return heading + "<p>No test image was misclassified.</p>"
    figures = []
    for item in items:
        image = (f'<img alt="{esc(item["path"])}" src="{item["uri"]}">' if item["uri"] else
                 '<div class="missing">image not found</div>')
        figures.append(f'<figure>{image}<div class="score">P(fake) {item["p_fake"]:.3f}</div>'
                       f'<div>true: <b>{esc(item["true"])}</b>, called {esc(item["predicted"])}</div>'
                       f'<div class="path">{esc(item["path"])}</div></figure>')
    return (heading + f'<p class="muted">The wrong decisions farthest from the threshold '
            f'({number_text(row.get("threshold"), ".4g")}, chosen on valid), most confident first.</p>'
            f'<div class="gallery">{"".join(figures)}</div>')


HtmlColumn = tuple[str, Callable[[dict[str, Any]], str], Callable[[dict[str, Any]], Any]]


def sortable_table(rows: Sequence[dict[str, Any]], columns: Sequence[HtmlColumn], numeric: set[str]) -> str:
    """A table whose headers sort it (the page's script); each cell sorts by its `data-sort` value."""
    header = "<tr>" + "".join(f"<th>{esc(name)}</th>" for name, _, _ in columns) + "</tr>"
    lines = []
    for row in rows:
        cells = []
        for name, text, sort in columns:
            value = sort(row)
            value = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else value
            kind = ' class="num"' if name in numeric else ""
            cells.append(f'<td{kind} data-sort="{esc(value)}">{text(row)}</td>')
        lines.append(f'<tr class="{row_class(row)}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="sortable" id="rows"><thead>{header}</thead>'
            f'<tbody>{"".join(lines)}</tbody></table></div>')


def _with_ci(header: str, key: str) -> HtmlColumn:
    return (header, lambda r: f'{number_text(r.get(key))} <span class="muted">{interval_text(r, key)}</span>',
            lambda r: r.get(key))


def weights_cell(row: dict[str, Any]) -> str:
    """The short weights label, the full one as its tooltip."""
    label = row.get("weights_label") or ""
    return f'<span title="{esc(label)}">{esc(short_weights(label) or "–")}</span>'


def path_cell(text: Any) -> str:
    return f'<span class="file">{esc(text)}</span>'


FEATURES_COLUMN: HtmlColumn = ("features", lambda r: f'<span class="nowrap">{esc(features_text(r))}</span>',
                               lambda r: features_text(r))
PROVENANCE_COLUMNS: tuple[HtmlColumn, ...] = (
    ("weights", weights_cell, lambda r: r.get("weights_label") or ""),
    ("backend", lambda r: esc(r.get("backend") or "–"), lambda r: r.get("backend") or ""),
    ("precision", lambda r: esc(r.get("precision") or "–"), lambda r: r.get("precision") or ""),
)
SCORED_ON_COLUMN: HtmlColumn = ("scored on", lambda r: f'<span class="nowrap">{esc(scored_on(r))}</span>',
                               lambda r: scored_on(r))
COMPARE_COLUMNS: tuple[HtmlColumn, ...] = (
    FEATURES_COLUMN,
    ("probe", lambda r: esc(r["probe"]), lambda r: r["probe"]),
    _with_ci("accuracy [95% CI]", "accuracy"),
    _with_ci("ROC AUC [95% CI]", "roc_auc"),
    ("acc real", lambda r: esc(number_text(r.get("accuracy_real"))), lambda r: r.get("accuracy_real")),
    ("acc fake", lambda r: esc(number_text(r.get("accuracy_fake"))), lambda r: r.get("accuracy_fake")),
    ("AP", lambda r: esc(number_text(r.get("average_precision"))), lambda r: r.get("average_precision")),
    ("EER", lambda r: esc(number_text(r.get("eer"))), lambda r: r.get("eer")),
    ("TPR@1%FPR", lambda r: esc(number_text(r.get("tpr_at_1pct_fpr"))), lambda r: r.get("tpr_at_1pct_fpr")),
    ("threshold (valid)", lambda r: esc(number_text(r.get("threshold"), ".3g")), lambda r: r.get("threshold")),
    ("dim", lambda r: esc(r.get("feature_dim", "–")), lambda r: r.get("feature_dim")),
    ("fit s", lambda r: esc(number_text(r.get("fit_seconds"), ".1f")), lambda r: r.get("fit_seconds")),
    ("flags", flag_badges, lambda r: flags_text(r)),
    *PROVENANCE_COLUMNS,
    ("cache", lambda r: path_cell(r.get("scored_cache") or r.get("cache")),
     lambda r: r.get("scored_cache") or r.get("cache")),
)
_COMPARE_NUMERIC = {"accuracy [95% CI]", "ROC AUC [95% CI]", "acc real", "acc fake", "AP", "EER", "TPR@1%FPR",
                    "threshold (valid)", "dim", "fit s"}


# --------------------------------------------------------------------------------------------------
# Pages


def page(title: str, intro: str, sections: Sequence[str]) -> str:
    """The whole document: inline style and script, a policy that refuses every network request."""
    from featurekit import __version__

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>{esc(title)}</h1>{intro}{''.join(sections)}"
            f"<footer>Written by featurekit {esc(__version__)} on {stamp}. One file: it opens offline.</footer>"
            f"</main><script>{SCRIPT}</script></body></html>\n")


def data_text(rows: Sequence[dict[str, Any]]) -> str:
    """"ffhq_sample (test split: 264 images, 132 real, 132 fake)" for the rows' own test split."""
    folders = sorted({Path(str(r["_image_root"])).name for r in rows if r.get("_image_root")})
    scored = [r for r in rows if r.get("_labels") is not None and not scored_elsewhere(r)]
    where = ", ".join(folders) or ", ".join(sorted({str(r.get("cache")) for r in rows}))
    if not scored:
        return where
    labels = np.asarray(scored[0]["_labels"])
    return f"{where} (test split: {len(labels)} images, {int(np.sum(labels == 0))} real, {int(np.sum(labels == 1))} fake)"


LEAK_NOTE = ("Some caches hold identical images in several splits: their figures are optimistic (see the flags; "
             "`python cli.py audit CACHE` lists the duplicates).")


def compare_intro(rows: Sequence[dict[str, Any]]) -> str:
    sets = list(dict.fromkeys(panel_name(r) for r in rows))
    probes = list(dict.fromkeys(str(r["probe"]) for r in rows))
    elsewhere = list(dict.fromkeys(scored_on(r) for r in rows if scored_elsewhere(r)))
    own = sum(not scored_elsewhere(r) for r in rows)
    lines = [f"<p><b>Compared:</b> {len(sets)} feature set{'s' * (len(sets) != 1)} &times; {len(probes)} probe"
             f"{'s' * (len(probes) != 1)} ({esc(', '.join(probes))}): {own} rows on the test split"
             f"{f', {len(rows) - own} more on views or other test sets' if len(rows) > own else ''}.</p>",
             f"<p><b>Data:</b> {esc(data_text(rows))}.</p>"]
    if elsewhere:
        lines.append(f"<p><b>Also scored on:</b> {esc(', '.join(elsewhere))}.</p>")
    if any(r.get("leaks") for r in rows):
        lines.append(f'<p class="alert">{prose(LEAK_NOTE)}</p>')
    return "".join(lines)


def best_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the highest test ROC AUC on its own test split (ties: accuracy)."""
    own = [r for r in rows if not scored_elsewhere(r)]
    return max(own, key=lambda r: (rank_value(r.get("roc_auc")), rank_value(r.get("accuracy"))), default=None)


def compare_page(rows: Sequence[dict[str, Any]], title: str = "featurekit compare") -> str:
    """The page of compare rows (with their private scores, labels and image paths where they have them)."""
    rows = list(rows)
    best = best_row(rows)
    sections = []
    if best is not None:
        sections.append(headline(best, best, "best row on the test split",
                                 "Picked on test among every row, so its figures are optimistic: a choice made on "
                                 "valid (`python cli.py sweep`) is tested once without that bias."))
    sections.append(forest_section(rows, (("accuracy", "test accuracy"), ("roc_auc", "test ROC AUC")),
                                   "Every row: test accuracy and ROC AUC with 95% intervals",
                                   "Sorted by ROC AUC, best on top; whiskers: 95% bootstrap intervals."))
    sections += [curves_section(rows), real_fake_section(rows), robustness_section(rows)]
    if best is not None:
        sections.append(gallery_section(best))
    columns = COMPARE_COLUMNS
    if any(scored_elsewhere(r) for r in rows):
        columns = (columns[0], SCORED_ON_COLUMN, *columns[1:])
    sections.append("<h2>Every row (click a header to sort)</h2>" + sortable_table(rows, columns, _COMPARE_NUMERIC))
    return page(title, compare_intro(rows), sections)


def write_html_report(rows: Sequence[dict[str, Any]], out: str | Path, title: str = "featurekit compare") -> Path:
    """Write the compare page to `out` (one self-contained .html file)."""
    return write_text(compare_page(rows, title), out)
