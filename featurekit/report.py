"""Renderers: result rows and cache descriptions -> rich tables, CSV, JSON, Markdown, ROC plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def cache_summary(path: str | Path):
    """A rich renderable that says what a cache holds and what made it."""
    from rich.console import Group
    from rich.table import Table

    from featurekit.cache import open_cache

    path = Path(path)
    with open_cache(path) as cache:
        attrs = dict(cache.attrs)
        about = Table(title=f"{path}  ({path.stat().st_size / 2**20:.1f} MiB)", show_header=False)
        about.add_column("attribute", style="bold")
        about.add_column("value")
        shown = ("backbone", "weights", "weights_label", "weights_sha256", "random_features", "layer", "pooling",
                 "image_size", "preprocessing", "precision", "backend", "dtype", "feature_dim", "n_rows", "n_skipped", "class_names",
                 "data_root", "layout", "data_fingerprint", "fingerprint", "created_utc", "schema_version")
        for key in shown:
            if key in attrs:
                value = attrs[key]
                about.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
        about.add_row("versions", ", ".join(f"{k} {v}" for k, v in attrs.get("versions", {}).items()))
        counts = Table(title="images per split and class")
        counts.add_column("split")
        names = cache.class_names
        for name in names:
            counts.add_column(name, justify="right")
        for split in ("train", "valid", "test"):
            labels = cache.labels[cache.splits == split]
            counts.add_row(split, *(str(int(np.sum(labels == i))) for i in range(len(names))))
        parts: list[Any] = [about, counts]
        if cache.skipped:
            skipped = Table(title="skipped files")
            skipped.add_column("path")
            skipped.add_column("reason")
            for skipped_path, reason in cache.skipped:
                skipped.add_row(skipped_path, reason)
            parts.append(skipped)
    return Group(*parts)


FORMATS = ("table", "csv", "json", "md")


def short_weights(label: str | None) -> str:
    """"near-imagenet (long explanation)" -> "near-imagenet"; the full label goes in a footnote."""
    return (label or "").split(" (")[0]


def _flags(row: dict[str, Any]) -> str:
    flags = []
    if row.get("random_features"):
        flags.append("RANDOM FEATURES")
    if row.get("collapsed"):
        flags.append(f"COLLAPSED: {row['collapsed']}")
    if row.get("streamed"):
        flags.append("streamed")
    return "; ".join(flags)


def _features(row: dict[str, Any]) -> str:
    layer = f"{row['layer']}/" if row.get("layer") else ""
    extra = "" if row.get("preprocessing") in (None, "caffe", "tf", "torch") else f" [{row['preprocessing']}]"
    return f"{row['backbone']} {layer}{row['pooling']} {row['image_size']}px{extra}"


def _interval(row: dict[str, Any], key: str) -> str:
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if low is None or high is None or np.isnan(low):
        return f"{row[key]:.3f}"
    return f"{row[key]:.3f} [{low:.3f}, {high:.3f}]"


DISPLAY_COLUMNS = (
    ("features", _features),
    ("weights", lambda r: short_weights(r.get("weights_label"))),
    ("probe", lambda r: r["probe"]),
    ("accuracy [95% CI]", lambda r: _interval(r, "accuracy")),
    ("bal. acc", lambda r: f"{r['balanced_accuracy']:.3f}"),
    ("ROC AUC [95% CI]", lambda r: _interval(r, "roc_auc")),
    ("AP", lambda r: f"{r['average_precision']:.3f}"),
    ("EER", lambda r: f"{r['eer']:.3f}"),
    ("TPR@1%FPR", lambda r: f"{r['tpr_at_1pct_fpr']:.3f}"),
    ("F1", lambda r: f"{r['f1']:.3f}"),
    ("thr (valid)", lambda r: f"{r['threshold']:.3g}"),
    ("fit s", lambda r: f"{r['fit_seconds']:.1f}" + (" (reused)" if r.get("reused") else "")),
    ("flags", _flags),
)


def weights_footnotes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per distinct weights label that the short column abbreviates."""
    labels = sorted({r.get("weights_label") or "" for r in rows})
    return [f"{short_weights(label)}: {label}" for label in labels if label and short_weights(label) != label]


def results_table(rows: list[dict[str, Any]], title: str = "featurekit compare (test split)"):
    """The rich table of `compare`."""
    from rich.table import Table

    table = Table(title=title, caption="\n".join(weights_footnotes(rows)) or None)
    for name, _ in DISPLAY_COLUMNS:
        table.add_column(name, justify="left" if name in ("features", "weights", "probe", "flags") else "right")
    for row in rows:
        style = "red" if row.get("collapsed") else ("yellow" if row.get("random_features") else None)
        table.add_row(*(render(row) for _, render in DISPLAY_COLUMNS), style=style)
    return table


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table with the same columns as the terminal table."""
    header = [name for name, _ in DISPLAY_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(render(row).replace("|", "/") for _, render in DISPLAY_COLUMNS) + " |")
    notes = weights_footnotes(rows)
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_rows(rows: list[dict[str, Any]], fmt: str, out: str | Path | None) -> str:
    """Render rows as csv/json/md; write to `out` when given; return the text."""
    import csv
    import io
    import json

    from featurekit.compare import ROW_KEYS, public_rows

    plain = public_rows(rows)
    if fmt == "json":
        text = json.dumps(plain, indent=2, default=str) + "\n"
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(ROW_KEYS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(plain)
        text = buffer.getvalue()
    elif fmt == "md":
        text = results_markdown(rows)
    else:
        from featurekit.errors import FeaturekitError

        raise FeaturekitError(f"Unknown output format {fmt!r}.", received=f"--format {fmt}",
                              fix=f"Use one of: {', '.join(FORMATS)}.")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return text


def plot_roc(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """ROC curves of every row on one PNG (scikit-learn's RocCurveDisplay)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    # The legend sits beside the axes: with dozens of rows it would hide the curves.
    figure, axes = plt.subplots(figsize=(14, max(7, 0.22 * len(rows) + 1)))
    for row in rows:
        RocCurveDisplay.from_predictions(row["_labels"], row["_scores"], ax=axes,
                                         name=f"{_features(row)} {short_weights(row.get('weights_label'))} {row['probe']}")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_title("ROC on the test split (positive class: fake)")
    axes.set_aspect("equal")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120, bbox_inches="tight")  # keeps the legend beside the axes in the file
    plt.close(figure)
    return Path(out)
