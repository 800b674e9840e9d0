"""Figures from rows, drawn with matplotlib's object API (`Figure` + the Agg canvas): never pyplot, never
`matplotlib.use`, so a notebook user's backend and open figures are left alone.

ROC and precision-recall curves are small multiples: one panel per feature set with at most
MAX_CURVES probes, the legend sorted by AUC, so every curve can be told apart.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from featurekit.report.document import rank_value
from featurekit.report.output import write_bytes
from featurekit.report.results import features_text, short_weights
from featurekit.rows import scored_elsewhere

MAX_CURVES = 6  # curves per panel: more cannot be told apart
PANEL_INCHES = 3.4
RANDOM_COLOUR, COLLAPSED_COLOUR, PLAIN_COLOUR = "#d97706", "#dc2626", "#1f4e9c"
PROBE_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def new_figure(width: float, height: float):
    """A Figure outside pyplot's list of open figures (`savefig` draws it with the canvas of the format)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def figure_bytes(figure, fmt: str = "png", dpi: int = 120) -> bytes:
    """The figure as PNG or SVG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
    return buffer.getvalue()


def panel_name(row: dict[str, Any]) -> str:
    """The feature set a row's probe was fitted on (one panel of the small multiples)."""
    weights = short_weights(row.get("weights_label"))
    return features_text(row) + (f" ({weights})" if weights else "")


def curve_groups(rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows with scores on their own test split, grouped by feature set; each group best ROC AUC first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if "_scores" in row and not scored_elsewhere(row):
            groups.setdefault(panel_name(row), []).append(row)
    ordered = [(name, sorted(members, key=lambda r: -rank_value(r["roc_auc"]))) for name, members in groups.items()]
    return sorted(ordered, key=lambda item: -rank_value(item[1][0]["roc_auc"]))


def _label_marks(row: dict[str, Any]) -> str:
    marks = [m for m, on in (("RANDOM", row.get("random_features")), ("COLLAPSED", row.get("collapsed"))) if on]
    return f" [{', '.join(marks)}]" if marks else ""


def _curve(row: dict[str, Any], kind: str) -> tuple[np.ndarray, np.ndarray, float]:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    labels, scores = np.asarray(row["_labels"]), np.asarray(row["_scores"])
    if kind == "roc":
        fpr, tpr, _ = roc_curve(labels, scores)
        return fpr, tpr, float(auc(fpr, tpr))
    precision, recall, _ = precision_recall_curve(labels, scores)
    return recall, precision, float(row.get("average_precision", np.nan))


def curves_figure(rows: Sequence[dict[str, Any]], kind: str = "roc", columns: int = 4):
    """ROC (`kind="roc"`) or precision-recall (`"pr"`) curves as small multiples; None without scored rows.

    Each probe keeps its colour in every panel; each legend lists its curves by area, best first.
    """
    groups, roc = curve_groups(rows), kind == "roc"
    if not groups:
        return None
    probes = sorted({str(row["probe"]) for _, members in groups for row in members})
    colours = {probe: PROBE_PALETTE[index % len(PROBE_PALETTE)] for index, probe in enumerate(probes)}  # every panel
    n_columns = max(1, min(columns, len(groups)))
    n_rows = math.ceil(len(groups) / n_columns)
    figure = new_figure(PANEL_INCHES * n_columns, PANEL_INCHES * n_rows + 0.4)
    axes = figure.subplots(n_rows, n_columns, squeeze=False, sharex=True, sharey=True)
    for ax, (name, members) in zip(axes.flat, groups):
        area_key = "roc_auc" if roc else "average_precision"
        shown = sorted(members, key=lambda r: -rank_value(r.get(area_key)))[:MAX_CURVES]
        for row in shown:
            x, y, area = _curve(row, kind)
            ax.plot(x, y, drawstyle="steps-post", linewidth=1.4, color=colours[str(row["probe"])],
                    label=f"{row['probe']}{_label_marks(row)} ({'AUC' if roc else 'AP'} {area:.3f})")
        if roc:
            ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=0.8)
        else:
            ax.axhline(float(np.mean(shown[0]["_labels"])), linestyle=":", color="grey", linewidth=0.8)
        more = len(members) - len(shown)
        ax.set_title(textwrap.fill(name, 42) + (f"\n(+{more} probes in the table)" if more else ""), fontsize=8)
        ax.legend(fontsize=7, loc="lower right" if roc else "lower left", frameon=True)
        ax.set(xlim=(0, 1), ylim=(0, 1.01))
        ax.grid(True, alpha=0.25)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    figure.supxlabel("false positive rate" if roc else "recall", fontsize=9)
    figure.supylabel("true positive rate" if roc else "precision", fontsize=9)
    figure.suptitle(f"{'ROC' if roc else 'precision-recall'} on the test split, one panel per feature set "
                    "(positive class: fake)", fontsize=10)
    return figure


TEST_FIGURES = (("accuracy", "test accuracy"), ("roc_auc", "test ROC AUC"))


CHOSEN_COLOUR = "#15803d"


def forest_figure(rows: Sequence[dict[str, Any]], figures: Sequence[tuple[str, str]] = TEST_FIGURES,
                  chosen: dict[str, Any] | None = None):
    """Every row's figures (key, name) with 95% intervals, sorted by the last one (best on top).

    Random-feature rows are drawn hollow in orange, collapsed rows as red crosses, the `chosen` row in
    green, and their labels say so.
    """
    ordered = sorted(rows, key=lambda r: rank_value(r[figures[-1][0]]))
    figure = new_figure(5.5 * len(figures) + 5, max(2.2, 0.24 * len(ordered) + 1.2))
    panels = figure.subplots(1, len(figures), sharey=True, squeeze=False)[0]
    positions = np.arange(len(ordered))
    for ax, (key, name) in zip(panels, figures):
        for y, row in zip(positions, ordered):
            low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
            colour = (CHOSEN_COLOUR if row is chosen else COLLAPSED_COLOUR if row.get("collapsed") else
                      RANDOM_COLOUR if row.get("random_features") else PLAIN_COLOUR)
            if low is not None and high is not None and np.isfinite(low):
                ax.plot([low, high], [y, y], color=colour, linewidth=1.6)
            ax.plot([row[key]], [y], marker="x" if row.get("collapsed") else "o", markersize=5.5, color=colour,
                    markerfacecolor="none" if row.get("random_features") else colour, linestyle="none")
        ax.axvline(0.5, color="grey", linestyle=":", linewidth=0.9)
        ax.set_xlim(min(0.4, *(_low(r, key) for r in ordered)) - 0.02, 1.0)
        ax.set_xlabel(f"{name} [95% interval]; dotted: chance", fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    panels[0].set_yticks(positions, [("CHOSEN: " if r is chosen else "") + _forest_label(r) for r in ordered])
    for label, row in zip(panels[0].get_yticklabels(), ordered):
        if row is chosen:
            label.set(color=CHOSEN_COLOUR, fontweight="bold")
    panels[0].set_ylim(-0.7, len(ordered) - 0.3)
    return figure


def _low(row: dict[str, Any], key: str) -> float:
    low = row.get(f"{key}_ci_low")
    return float(low) if low is not None and np.isfinite(low) else rank_value(row[key])


# A tick label longer than this squeezes the plot itself to nothing (a fusion of three taps names all of them):
# the middle is elided; the full name stays in the page's table.
FOREST_LABEL_CHARS = 80


def _forest_label(row: dict[str, Any]) -> str:
    where = f" @ {row['view']}" if row.get("view") else ""
    if (row.get("test_set") or "test") != "test":
        where += f" @ {str(row['test_set']).rstrip('/').split('/')[-1]}"
    suffix = f" {row['probe']}{where}{_label_marks(row)}"
    return _elided(panel_name(row), FOREST_LABEL_CHARS - len(suffix)) + suffix


def _elided(text: str, most: int) -> str:
    """`text`, its middle replaced by an ellipsis when it is longer than `most` characters."""
    most = max(most, 20)
    if len(text) <= most:
        return text
    head = (most - 1) * 2 // 3
    return f"{text[:head]}…{text[len(text) - (most - 1 - head):]}"


def learning_curve_figure(points: Sequence[dict[str, Any]], title: str, slope: float | None):
    """Test ROC AUC (mean +- sd over repeats) against training images, on a log2 axis."""
    points = [p for p in points if "error" not in p]
    figure = new_figure(7, 4.5)
    axes = figure.subplots()
    sizes = [p["n_train"] for p in points]
    axes.errorbar(sizes, [p["test_roc_auc_mean"] for p in points], yerr=[p["test_roc_auc_sd"] for p in points],
                  marker="o", capsize=4, label="test ROC AUC (mean +- sd over repeats)"
                  + (f"; {slope:+.3f} per doubling" if slope is not None else ""))
    axes.set_xscale("log", base=2)
    axes.set_xticks(sizes, [str(s) for s in sizes])
    axes.set(xlabel="training images (log2 scale)", ylabel="test ROC AUC")
    axes.set_title(textwrap.fill(title, 100), fontsize=8)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    return figure


def plot_roc(rows: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """The ROC small multiples of the rows as a PNG file (`compare`'s `plot`); an empty note when no row has
    scores."""
    figure = curves_figure(rows, "roc")
    if figure is None:
        figure = new_figure(5, 1)
        figure.text(0.5, 0.5, "no row was scored on its test split", ha="center", va="center")
    return write_bytes(figure_bytes(figure, "png"), out)
