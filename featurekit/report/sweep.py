"""`sweep`: the valid table, the fusion candidate, the choice and its test figures apart; the learning curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from featurekit.report.document import Column, Document, Note, Table, with_interval
from featurekit.report.formats import render
from featurekit.report.output import write_bytes
from featurekit.report.results import (
    FEATURES_COLUMN, FIT_COLUMN, PROBE_COLUMN, SCORED_ON_COLUMN, WEIGHTS_COLUMN, features_text, weights_footnotes,
)
from featurekit.rows import SELECTION_RULE, SweepResult, gain_per_doubling


def _cache_text(row: dict[str, Any]) -> str:
    """The cache's file name; a fusion by its number of members (its features column names each)."""
    source = row.get("_source")
    if isinstance(source, (list, tuple)) and len(source) > 1:
        return f"fusion of {len(source)} caches"
    return str(row["cache"])


def _flags(row: dict[str, Any]) -> str:
    return "; ".join(f for f in ("LEAKS" if row.get("leaks") else "", "RANDOM FEATURES" if row.get("random_features")
                                 else "", "streamed" if row.get("streamed") else "") if f)


VALID_COLUMNS = (
    Column("rank", lambda r: "fusion" if r.get("rank") is None else str(r["rank"]), "right"),
    Column("cache", _cache_text), FEATURES_COLUMN, WEIGHTS_COLUMN, PROBE_COLUMN,
    Column("dim", lambda r: str(r["feature_dim"]), "right"),
    Column("valid ROC AUC [95% CI]", lambda r: with_interval(r, "roc_auc", prefix="valid_"), "right"),
    Column("valid AP", lambda r: f"{r['valid_average_precision']:.3f}", "right"),
    Column("valid acc (thr on valid)", lambda r: f"{r['valid_accuracy']:.3f}", "right"),
    FIT_COLUMN,
    Column("flags", _flags),
)
CURVE_COLUMNS = (
    Column("train fraction", lambda p: f"{p['fraction']:.3g}", "right"),
    Column("training images", lambda p: str(p["n_train"]), "right"),
    Column("repeats", lambda p: str(p["repeats"]), "right"),
    Column("test ROC AUC (mean +- sd)", lambda p: f"not fitted: {p['error']}" if "error" in p else
           f"{p['test_roc_auc_mean']:.3f} +- {p['test_roc_auc_sd']:.3f}", "right"),
    Column("test accuracy (mean +- sd)", lambda p: "" if "error" in p else
           f"{p['test_accuracy_mean']:.3f} +- {p['test_accuracy_sd']:.3f}", "right"),
)
_TEST_COLUMNS = (Column("test split", lambda r: r["what"]), Column("value", lambda r: r["value"], "right"))


TEST_SET_COLUMNS = (
    SCORED_ON_COLUMN,
    Column("images", lambda r: str(r["n"]), "right"),
    Column("accuracy at the threshold [95% CI]", lambda r: with_interval(r, "accuracy"), "right"),
    Column("acc real", lambda r: f"{r['accuracy_real']:.3f}", "right"),
    Column("acc fake", lambda r: f"{r['accuracy_fake']:.3f}", "right"),
    Column("ROC AUC [95% CI]", lambda r: with_interval(r, "roc_auc"), "right"),
    Column("oracle acc (best thr for this set; never used)", lambda r: f"{r['oracle_accuracy']:.3f}", "right"),
    Column("mean P(fake) real / fake", lambda r: f"{r['mean_p_fake_real']:.3f} / {r['mean_p_fake_fake']:.3f}",
           "right"),
)


def test_rows(test: dict[str, Any], threshold_on: str = "valid") -> list[dict[str, str]]:
    """The chosen configuration's test figures, one (what, value) row each."""
    return [{"what": "accuracy [95% CI]", "value": with_interval(test, "accuracy")},
            {"what": "ROC AUC [95% CI]", "value": with_interval(test, "roc_auc")},
            {"what": "average precision", "value": f"{test['average_precision']:.3f}"},
            {"what": "accuracy on real images", "value": f"{test['accuracy_real']:.3f}"},
            {"what": "accuracy on fake images", "value": f"{test['accuracy_fake']:.3f}"},
            {"what": f"threshold (chosen on {threshold_on})", "value": f"{test['threshold']:.4g}"},
            {"what": "oracle accuracy (best threshold for test; never used)",
             "value": f"{test['oracle_accuracy']:.3f}"},
            {"what": "mean P(fake) of real / of fake images",
             "value": f"{test['mean_p_fake_real']:.3f} / {test['mean_p_fake_fake']:.3f}"},
            {"what": "test images", "value": str(test["n"])}]


def chosen_line(result: SweepResult) -> str:
    """"chosen on valid (row 1): ... with logreg (1024 features), valid ROC AUC 0.912"."""
    chosen = result.chosen
    kind = "the top-k fusion" if chosen is result.fusion else f"row {chosen['rank']}"
    return (f"chosen on valid ({kind}): {features_text(chosen)} with {chosen['probe']} ({chosen['feature_dim']} "
            f"features), valid ROC AUC {chosen['valid_roc_auc']:.3f}")


def curve_line(points: Sequence[dict[str, Any]]) -> str:
    slope = gain_per_doubling(points)
    return "" if slope is None else f"about {slope:+.3f} test ROC AUC per doubling of the training split (least squares)"


def sweep_document(result: SweepResult, plot_name: str | None = None) -> Document:
    """The sweep: notes, the valid table, the fusion candidate, the choice, then its test figures apart."""
    blocks: list[Any] = [Note(md=f"# sweep {result.name}\n\nSelection: {SELECTION_RULE}.")]
    if result.notes:
        blocks.append(Note(md="\n".join(f"- **{n}**" if n.startswith("LEAK") else f"- {n}" for n in result.notes)))
    blocks += [Note(f"WARNING: {n}", style="bold red") if n.startswith("LEAK") else Note(f"note: {n}")
               for n in result.notes]
    blocks.append(Table(result.rows, VALID_COLUMNS, title=f"sweep {result.name}: every configuration, VALID split only",
                        caption=SELECTION_RULE, heading="## every configuration, on the valid split only"))
    if footnotes := weights_footnotes(result.rows + ([result.fusion] if result.fusion else [])):
        blocks.append(Note(md="\n".join(f"- {note}" for note in footnotes)))
    fusion_heading = "## top-k fusion candidate (valid split)"
    blocks.append(Table(result.fusion_rows or [result.fusion], VALID_COLUMNS, heading=fusion_heading,
                        title="top-k fusion candidate, every probe (valid split)") if result.fusion
                  else Note(md=f"{fusion_heading}\n\nnone"))
    blocks.append(Note(chosen_line(result), style="bold",
                       md=f"## the choice, and its test figures (reported once)\n\n{chosen_line(result)}"))
    blocks.append(Table(test_rows(result.test, result.threshold_on), _TEST_COLUMNS,
                        title="test figures of the chosen configuration (reported once)"))
    if result.test_sets:
        heading = "the choice on views and other test sets (reported only, never used to choose)"
        blocks.append(Table(result.test_sets, TEST_SET_COLUMNS, title=heading, heading=f"## {heading}"))
    blocks.append(Note(f"chosen model: {result.model_dir}\nscore new images with: {result.predict_command}",
                       style="bold", md=f"The chosen model's folder: `{result.model_dir}`. Score new images with it:"
                       f"\n\n    {result.predict_command}"))
    if result.learning_curve:
        line = curve_line(result.learning_curve)
        blocks.append(Table(result.learning_curve, CURVE_COLUMNS, title="learning curve (test split)",
                            caption=line or None, md_caption=line or None,
                            heading="## learning curve of the chosen configuration (test split)"))
        if plot_name:
            blocks.append(Note(md=f"![learning curve]({plot_name})"))
    return Document(blocks, data=result.to_dict(), name="a sweep")


def sweep_table(result: SweepResult):
    """Rich renderables: the valid table, the fusion candidate, then the choice and its test figures apart."""
    return render(sweep_document(result), "table")


def sweep_markdown(result: SweepResult, plot_name: str | None = None) -> str:
    """The sweep as Markdown: the valid table, the fusion candidate, the choice, then the test figures apart."""
    return render(sweep_document(result, plot_name), "md")


def plot_learning_curve(points: Sequence[dict[str, Any]], out: str | Path, title: str) -> Path:
    """Test ROC AUC (mean +- sd over repeats) against training images, log2 x axis, as a PNG."""
    from featurekit.report.plots import figure_bytes, learning_curve_figure

    figure = learning_curve_figure(points, title, gain_per_doubling(points))
    return write_bytes(figure_bytes(figure, "png"), out)
