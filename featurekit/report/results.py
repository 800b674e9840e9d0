"""Compare rows (caches x probes scored on test): the terminal table, CSV, JSON and Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featurekit.report.document import Column, Document, Note, Table, number, with_interval
from featurekit.report.formats import FORMATS, render, unknown_format
from featurekit.report.output import natural_width
from featurekit.rows import OWN_TEST_SPLIT, PAIRED_TEST_SET, ROW_KEYS, public_rows, scored_elsewhere


def short_weights(label: str | None) -> str:
    """"near-imagenet (long explanation)" -> "near-imagenet"; the full label goes in a footnote."""
    return (label or "").split(" (")[0]


def flags_text(row: dict[str, Any]) -> str:
    """What a reader must know before trusting a row: random features, leaks, train overlap, a collapse."""
    flags = ("RANDOM FEATURES" if row.get("random_features") else "",
             "LEAKS (duplicates across splits)" if row.get("leaks") else "",
             f"TRAIN OVERLAP: the backbone was trained on {row['train_overlap']} of these valid/test images"
             if row.get("train_overlap") else "",
             f"COLLAPSED: {row['collapsed']}" if row.get("collapsed") else "",
             "streamed" if row.get("streamed") else "")
    return "; ".join(flag for flag in flags if flag)


def features_text(row: dict[str, Any]) -> str:
    """"vgg16 block2_pool/meanstd 256px": the features a row scores; a hand-made feature by its parameters."""
    if row.get("pooling") == "none":  # a hand-made feature: its layer is its parameters, no pooling, no preprocessing
        return f"{row['backbone']} {row.get('layer') or ''} {row['image_size']}px".replace("  ", " ")
    layer = f"{row['layer']}/" if row.get("layer") else ""
    extra = "" if row.get("preprocessing") in (None, "caffe", "tf", "torch") else f" [{row['preprocessing']}]"
    return f"{row['backbone']} {layer}{row['pooling']} {row['image_size']}px{extra}"


def scored_on(row: dict[str, Any]) -> str:
    """Where a row was scored, for tables: "test split", "test split, jpeg:50", "other_faces (all images)"."""
    test_set = row.get("test_set") or OWN_TEST_SPLIT
    if test_set == OWN_TEST_SPLIT:
        where = "test split"
    elif PAIRED_TEST_SET.match(str(test_set).split(" + ")[0]):
        where = str(test_set)  # a paired test set's label (fake=DIR + real faces), as is
    else:
        where = f"{Path(str(test_set)).name} (all images)"
    return f"{where}, {row['view']}" if row.get("view") else where


# Columns that the compare and sweep tables share.
FEATURES_COLUMN = Column("features", features_text)
WEIGHTS_COLUMN = Column("weights", lambda r: short_weights(r.get("weights_label")))
PROBE_COLUMN = Column("probe", lambda r: str(r["probe"]))
FIT_COLUMN = Column("fit s", lambda r: f"{r['fit_seconds']:.1f}" + (" (reused)" if r.get("reused") else ""), "right")
SCORED_ON_COLUMN = Column("scored on", scored_on)

WIDE_COLUMNS = (
    FEATURES_COLUMN, WEIGHTS_COLUMN, PROBE_COLUMN,
    Column("accuracy [95% CI]", lambda r: with_interval(r, "accuracy"), "right"),
    Column("acc real", number("accuracy_real"), "right"),
    Column("acc fake", number("accuracy_fake"), "right"),
    Column("bal. acc", number("balanced_accuracy"), "right"),
    Column("ROC AUC [95% CI]", lambda r: with_interval(r, "roc_auc"), "right"),
    Column("AP", number("average_precision"), "right"),
    Column("EER", number("eer"), "right"),
    Column("TPR@1%FPR", number("tpr_at_1pct_fpr"), "right"),
    Column("F1", number("f1"), "right"),
    Column("thr (valid)", lambda r: format(r["threshold"], ".3g") + (" (valid+views)" if r.get("threshold_on")
                                                                      == "valid+views" else ""), "right"),
    # At the best threshold for THIS test set (as UnivFD reports it): tells ranking from calibration, never chooses.
    Column("oracle acc", number("oracle_accuracy"), "right"),
    Column("P(fake) real/fake", lambda r: (f"{r['mean_p_fake_real']:.2f}/{r['mean_p_fake_fake']:.2f}"
                                           if r.get("mean_p_fake_real") is not None else ""), "right"),
    FIT_COLUMN,
    Column("flags", flags_text),
)
COMPACT_COLUMNS = (FEATURES_COLUMN, PROBE_COLUMN, WIDE_COLUMNS[3], Column("ROC AUC", number("roc_auc"), "right"),
                   WIDE_COLUMNS[8], WIDE_COLUMNS[-1])


def columns_for(rows: list[dict[str, Any]], columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """The columns, led by "scored on" when some rows were scored on a view or another test set (blocks), and
    by "data" when the rows come from caches of more than one data set."""
    if len({row.get("data") for row in rows}) > 1:
        columns = (Column("data", lambda r: str(r.get("data") or "")), *columns)
    return (SCORED_ON_COLUMN, *columns) if any(scored_elsewhere(row) for row in rows) else columns


def weights_footnotes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per distinct weights label that the short column abbreviates."""
    labels = sorted({r.get("weights_label") or "" for r in rows})
    return [f"{short_weights(label)}: {label}" for label in labels if label and short_weights(label) != label]


def _row_style(row: dict[str, Any]) -> str | None:
    return "red" if row.get("collapsed") else ("yellow" if row.get("random_features") else None)


def results_document(rows: list[dict[str, Any]], title: str = "featurekit compare (test split)",
                     wide: bool = True) -> Document:
    """Compare rows in every format: every metric (or the compact columns on a terminal), weights footnotes."""
    notes = weights_footnotes(rows)
    caption = list(notes) if wide else ["compact view: --wide (or --format md/csv/json) shows every metric"]
    blocks: list[Any] = [Table(rows, columns_for(rows, WIDE_COLUMNS if wide else COMPACT_COLUMNS), title=title,
                               caption="\n".join(caption) or None, row_style=_row_style)]
    if notes:
        blocks.append(Note(md="".join(f"- {note}\n" for note in notes).rstrip("\n")))
    public = public_rows(rows)
    return Document(blocks, data=public, records=public, fieldnames=list(ROW_KEYS), name="compare rows")


def results_table(rows: list[dict[str, Any]], title: str = "featurekit compare (test split)", wide: bool = True):
    """The rich table of `compare`: every metric, or the compact columns."""
    return render(results_document(rows, title, wide), "table")


def results_table_for(console, rows: list[dict[str, Any]], title: str, wide: bool = False):
    """The wide table where it fits the console (or `wide` is asked for), else the compact one."""
    table = results_table(rows, title, wide=True)
    return table if wide or natural_width(console, table) <= console.width else results_table(rows, title, wide=False)


def render_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    """Compare rows as csv/json/md text (every column)."""
    if fmt in FORMATS and not FORMATS[fmt].to_file:
        raise unknown_format(fmt, [name for name, entry in FORMATS.items() if entry.to_file])
    return render(results_document(rows), fmt)
