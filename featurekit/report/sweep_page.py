"""The sweep's page: the configuration chosen on valid with its test figures (touched once), every
configuration's valid ROC AUC, the choice's curves, confusion and mistakes, the learning curve."""

from __future__ import annotations

from pathlib import Path

from featurekit.report.output import write_text
from featurekit.report.page import (
    FEATURES_COLUMN,
    PROVENANCE_COLUMNS,
    HtmlColumn,
    curves_section,
    data_text,
    esc,
    flag_badges,
    forest_section,
    gallery_section,
    headline,
    interval_text,
    number_text,
    page,
    path_cell,
    picture,
    real_fake_section,
    sortable_table,
)
from featurekit.report.plots import learning_curve_figure
from featurekit.report.results import flags_text
from featurekit.report.sweep import chosen_line, curve_line
from featurekit.rows import SELECTION_RULE, SweepResult, gain_per_doubling


VALID_COLUMNS: tuple[HtmlColumn, ...] = (
    ("rank", lambda r: "fusion" if r.get("rank") is None else str(r["rank"]), lambda r: r.get("rank") or 0),
    FEATURES_COLUMN,
    ("probe", lambda r: esc(r["probe"]), lambda r: r["probe"]),
    ("dim", lambda r: esc(r["feature_dim"]), lambda r: r["feature_dim"]),
    ("valid ROC AUC [95% CI]", lambda r: f'{number_text(r.get("valid_roc_auc"))} <span class="muted">'
     f'{interval_text(r, "valid_roc_auc")}</span>', lambda r: r.get("valid_roc_auc")),
    ("valid AP", lambda r: number_text(r.get("valid_average_precision")), lambda r: r.get("valid_average_precision")),
    ("valid accuracy", lambda r: number_text(r.get("valid_accuracy")), lambda r: r.get("valid_accuracy")),
    ("fit s", lambda r: number_text(r.get("fit_seconds"), ".1f"), lambda r: r.get("fit_seconds")),
    ("flags", flag_badges, lambda r: flags_text(r)),
    *PROVENANCE_COLUMNS,
    ("cache", lambda r: path_cell(r.get("cache")), lambda r: str(r.get("cache"))),
    ("model folder", lambda r: path_cell(r.get("model_dir")), lambda r: str(r.get("model_dir"))),
)
_NUMERIC = {"rank", "dim", "valid ROC AUC [95% CI]", "valid AP", "valid accuracy", "fit s"}


def _learning_curve_section(result: SweepResult) -> str:
    if not result.learning_curve:
        return ""
    figure = learning_curve_figure(result.learning_curve, chosen_line(result), gain_per_doubling(result.learning_curve))
    return (f"<h2>Learning curve of the chosen configuration (test split)</h2><figure>"
            f"{picture(figure, 'learning curve')}<figcaption>{esc(curve_line(result.learning_curve))}"
            f"</figcaption></figure>")


def sweep_page(result: SweepResult) -> str:
    """The whole page of a sweep."""
    chosen = {**result.chosen, **result.test, "n_test": result.test["n"]}  # with the scores behind its pictures
    candidates = result.rows + result.fusion_rows
    kind = "the top-k fusion" if result.chosen is result.fusion else f"row {result.chosen['rank']} of the grid"
    intro = (f"<p><b>Compared:</b> {len(result.rows)} configurations (feature set &times; probe) on the valid "
             f"split{f', and the top-k fusion under {len(result.fusion_rows)} probes' if result.fusion_rows else ''}."
             f"</p><p><b>Data:</b> {esc(data_text([chosen]))}.</p><p class=\"muted\">Selection: {esc(SELECTION_RULE)}.</p>"
             + "".join(f'<p class="{"alert" if n.startswith("LEAK") else "warn"}">{esc(n)}</p>' for n in result.notes))
    sections = [
        headline(chosen, chosen, f"chosen on valid ({kind}); model folder {chosen.get('model_dir')}",
                 "The test split was touched once, for this choice only: these figures are not the best of many."),
        forest_section(candidates, (("valid_roc_auc", "valid ROC AUC"),),
                       "Every configuration on the valid split: ROC AUC with 95% intervals",
                       "The choice is made here, on valid; the test split is scored once, for the chosen one.",
                       chosen=result.chosen),
        curves_section([chosen], "ROC and precision-recall curves of the chosen configuration (test split)"), real_fake_section([chosen]), _learning_curve_section(result), gallery_section(chosen),
        "<h2>Every configuration, valid split (click a header to sort)</h2>"
        + sortable_table(candidates, VALID_COLUMNS, _NUMERIC),
    ]
    return page(f"featurekit sweep {result.name}", intro, sections)


def write_sweep_page(result: SweepResult, out: str | Path) -> Path:
    """Write the sweep's page to `out` (one self-contained .html file)."""
    return write_text(sweep_page(result), out)
