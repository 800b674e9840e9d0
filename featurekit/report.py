"""Renderers: rows -> rich tables, CSV, JSON, Markdown, ROC plots; cache descriptions; whole tables.

Every table of the command line goes through `rich_table`, whose cells are rich `Text`: file names,
cache names, weights labels, layer and probe names are shown exactly as they are, never read as
markup (`face[hidden].jpg`) or emoji codes (`:smile:`). `print_whole` prints a table at its natural
width, so a narrow terminal or a pipe gets every character instead of ellipses.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from featurekit.errors import FeaturekitError, given, option_name

FORMATS = ("table", "csv", "json", "md")


# --------------------------------------------------------------------------------------------------
# Generic: columns, tables in every format, output


@dataclass(frozen=True)
class Column:
    """One column of a table: its header and how a row shows in it (tables and Markdown).

    CSV and JSON carry the rows' own keys instead, unformatted.
    """

    header: str
    text: Callable[[dict[str, Any]], str]
    justify: str = "left"


def rich_table(rows: Iterable[dict[str, Any]], columns: Iterable[Column], title: str | None = None,
               caption: str | None = None, row_style: Callable[[dict[str, Any]], str | None] | None = None):
    """A rich Table whose every cell, title and caption is plain text (no markup, no emoji codes)."""
    from rich.table import Table
    from rich.text import Text

    columns = list(columns)
    table = Table(title=Text(title) if title else None, caption=Text(caption) if caption else None)
    for column in columns:
        table.add_column(Text(column.header), justify=column.justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(Text(column.text(row)) for column in columns), style=row_style(row) if row_style else None)
    return table


def markdown_table(rows: Iterable[dict[str, Any]], columns: Iterable[Column]) -> str:
    """A GitHub Markdown table with the same cells as the terminal table (pipes escaped)."""
    columns = list(columns)

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c.header) for c in columns) + " |",
             "|" + "|".join("---:" if c.justify == "right" else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(cell(c.text(row)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(records: Iterable[dict[str, Any]], fieldnames: list[str]) -> str:
    """CSV with a header line; keys missing from a record are empty, extra keys are left out."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def json_text(payload: Any) -> str:
    """Indented JSON (NumPy scalars as plain numbers, paths as strings)."""
    return json.dumps(plain(payload), indent=2, default=str) + "\n"


def plain(value: Any) -> Any:
    """NumPy scalars and arrays, tuples and paths as plain JSON values, recursively."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def check_output(fmt: str, out: str | Path | None) -> None:
    """Refuse an output file for the terminal table (before any work is done)."""
    if fmt not in FORMATS:
        raise FeaturekitError(f"Unknown output format {fmt!r}.", received=given("format", fmt),
                              fix=f"Use one of: {', '.join(FORMATS)}.")
    if out and fmt == "table":
        raise FeaturekitError(f"{option_name('out')} needs a file format.",
                              received=f"{given('out', str(out))} {given('format', fmt)}",
                              fix=f"Add {given('format', 'md')}, {given('format', 'csv')} or {given('format', 'json')}.")


def write_text(text: str, out: str | Path) -> Path:
    """Write an output file atomically (never half-written, never through a symlink)."""
    from featurekit.fsutil import atomic_write_text

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out, text)


def natural_width(console, renderable) -> int:
    """The width a renderable takes when nothing limits it."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(100_000), renderable).maximum


def print_whole(console, renderable) -> None:
    """Print at least at the renderable's natural width: never squeeze cells into ellipses.

    A terminal narrower than the table wraps its lines, a pipe or a log file gets them whole; both
    keep every character of every cell.
    """
    width = console.width
    console.width = max(width, natural_width(console, renderable))  # print() alone cannot exceed it
    try:
        console.print(renderable)
    finally:
        console.width = width


def print_text(console, text: str) -> None:
    """Print csv/json/md text as it is: no wrapping at the terminal width, no markup, no highlighting."""
    console.out(text, highlight=False, end="")


# --------------------------------------------------------------------------------------------------
# backbones


def backbone_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows (for CSV) from `embedder.backbone_summary` dicts."""
    from featurekit.backbones import POOLINGS
    from featurekit.backbones.weights import default_weights_label

    rows = []
    for summary in summaries:
        row = {"name": summary["name"], "input_size": summary["input_size"], "preprocessing": summary["preprocessing"],
               "output_layer": summary["output_layer"]}
        row.update({f"feature_dim_{p}": summary["feature_dim"][p] for p in POOLINGS if p in summary["feature_dim"]})
        handmade = summary.get("weights_text")  # hand-made features: no weights at all
        row.update(params=summary["params"], default_weights=handmade or default_weights_label(summary["name"]),
                   weights=summary.get("weights_text") or ", ".join(["default", *summary["pretrained"], "none", "PATH"]))
        rows.append(row)
    return rows


def _feature_sizes(row: dict[str, Any]) -> str:
    return " / ".join(str(v) for k, v in row.items() if k.startswith("feature_dim_"))


BACKBONE_COLUMNS = (
    Column("name", lambda r: str(r["name"])),
    Column("native size", lambda r: str(r["input_size"]), "right"),
    Column("preprocessing", lambda r: str(r["preprocessing"])),
    Column("last block", lambda r: str(r["output_layer"])),
    Column("features (flatten / avg / max / meanstd)", _feature_sizes, "right"),
    Column("parameters", lambda r: f"{r['params']:,}", "right"),
    Column("default weights", lambda r: str(r["default_weights"])),
    Column("weights", lambda r: str(r["weights"])),
)
WEIGHTS_FILE_COLUMNS = (
    Column("backbone", lambda r: str(r["backbone"])),
    Column("--weights", lambda r: str(r["weights"])),
    Column("label", lambda r: str(r["label"])),
    Column("exact", lambda r: "yes" if r["exact"] else "no"),
    Column("present", lambda r: str(r["present"])),
    Column("sha256", lambda r: (r["sha256"] or "-")[:16]),
    Column("licence", lambda r: str(r["licence"])),
)


def render_backbones(summaries: list[dict[str, Any]], fmt: str, files: list[dict[str, Any]] | None = None):
    """The `backbones` listing: a rich table, or csv/json/md text; with `files`, the known weights files too."""
    rows = backbone_rows(summaries)
    if fmt == "table":
        tables = [rich_table(rows, BACKBONE_COLUMNS, title="Backbones")]
        if files is not None:
            tables.append(rich_table(files, WEIGHTS_FILE_COLUMNS, title="Known weights files"))
        from rich.console import Group

        return Group(*tables) if len(tables) > 1 else tables[0]
    if fmt == "json":
        return json_text(summaries if files is None else {"backbones": summaries, "weights_files": files})
    if fmt == "csv":
        if files is not None:
            return csv_text(files, list(files[0]) if files else ["backbone"])
        return csv_text(rows, list(rows[0]) if rows else ["name"])
    text = markdown_table(rows, BACKBONE_COLUMNS)
    return text if files is None else text + "\n" + markdown_table(files, WEIGHTS_FILE_COLUMNS)


# --------------------------------------------------------------------------------------------------
# info


# What computed a cache (featurekit.engines): recorded, never part of its identity (the features are the same).
ENGINE_ATTRIBUTES = ("engine", "engine_workers", "cluster_nodes", "cluster_cpus", "cluster_gpus")
CACHE_ATTRIBUTES = ("backbone", "weights", "weights_label", "weights_sha256", "random_features", "layer", "pooling",
                    "image_size", "preprocessing", "precision", "backend", "architecture_variant", "dtype",
                    "feature_dim", "view", "subset", "resize", "handmade", "n_rows", "n_skipped", "class_names",
                    "positive_class", "data_root", "layout", "data_fingerprint", "fingerprint", "train_overlap_valid",
                    "train_overlap_test", "created_utc", "schema_version", "versions",
                    *ENGINE_ATTRIBUTES)


def describe_cache(path: str | Path) -> dict[str, Any]:
    """What a cache holds and what made it, as plain data (for `info` in every format)."""
    from featurekit.cache import open_cache

    path = Path(path)
    with open_cache(path) as cache:
        attrs = dict(cache.attrs)
        names = list(cache.class_names)
        counts = {}
        for split in ("train", "valid", "test"):
            labels = cache.labels[cache.splits == split]
            counts[split] = {name: int(np.sum(labels == i)) for i, name in enumerate(names)}
        return plain({
            "path": str(path), "size_mib": round(path.stat().st_size / 2**20, 3),
            "attributes": {**{key: attrs[key] for key in CACHE_ATTRIBUTES if key in attrs},
                           "positive_class": cache.positive_class},
            "class_names": names, "counts": counts,
            "skipped": [{"path": p, "reason": r} for p, r in cache.skipped],
            "ignored": [{"path": p, "reason": r} for p, r in cache.ignored],
        })


def _attribute_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


_ATTRIBUTE_COLUMNS = (Column("attribute", lambda r: r["key"]), Column("value", lambda r: _attribute_text(r["value"])))
_SKIPPED_COLUMNS = (Column("path", lambda r: r["path"]), Column("reason", lambda r: r["reason"]))


def _count_columns(description: dict[str, Any]) -> list[Column]:
    return [Column("split", lambda r: r["split"])] + [
        Column(name, (lambda r, name=name: str(r[name])), "right") for name in description["class_names"]]


def _count_rows(description: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"split": split, **counts} for split, counts in description["counts"].items()]


def render_cache(description: dict[str, Any], fmt: str):
    """`info`: rich tables (a Group), or json, csv (section,key,value rows) or md text."""
    attributes = [{"key": k, "value": v} for k, v in description["attributes"].items()]
    if fmt == "json":
        return json_text(description)
    if fmt == "csv":
        records = [{"section": "attribute", "key": r["key"], "value": _attribute_text(r["value"])} for r in attributes]
        records += [{"section": "count", "key": f"{split}/{name}", "value": n}
                    for split, counts in description["counts"].items() for name, n in counts.items()]
        records += [{"section": "skipped", "key": s["path"], "value": s["reason"]} for s in description["skipped"]]
        records += [{"section": "ignored", "key": s["path"], "value": s["reason"]} for s in description["ignored"]]
        return csv_text(records, ["section", "key", "value"])
    title = f"{description['path']}  ({description['size_mib']:.1f} MiB)"
    parts: list[tuple[str, list, Any]] = [(title, attributes, _ATTRIBUTE_COLUMNS),
                                          ("images per split and class", _count_rows(description),
                                           _count_columns(description))]
    if description["skipped"]:
        parts.append(("skipped files (did not decode)", description["skipped"], _SKIPPED_COLUMNS))
    if description["ignored"]:
        parts.append(("ignored files (not images, links not followed, unreadable)", description["ignored"],
                      _SKIPPED_COLUMNS))
    if fmt == "md":
        return "\n".join(f"### {heading}\n\n{markdown_table(rows, columns)}" for heading, rows, columns in parts)
    from rich.console import Group

    return Group(*(rich_table(rows, columns, title=heading) for heading, rows, columns in parts))


def cache_summary(path: str | Path):
    """A rich renderable that says what a cache holds and what made it."""
    return render_cache(describe_cache(path), "table")


# --------------------------------------------------------------------------------------------------
# predict


PREDICT_KEYS = ["path", "p_fake", "label", "threshold", "error"]


def predict_columns(positive_class: str = "fake") -> tuple[Column, ...]:
    """The `predict` table's columns; the score column names the positive class (label 1) it is the probability of."""
    return (
        Column("path", lambda r: str(r["path"])),
        Column(f"P({positive_class})", lambda r: "-" if r.get("p_fake") is None else f"{r['p_fake']:.4f}", "right"),
        Column("label", lambda r: r.get("label") or f"error: {r.get('error')}"),
    )


PREDICT_COLUMNS = predict_columns()


def render_predictions(rows: list[dict[str, Any]], fmt: str, title: str, positive_class: str = "fake"):
    """`predict` rows: a rich table (undecodable files in red), or csv/json/md text.

    `p_fake` is the probability of the model's positive class (label 1: `fake` with real/fake folders); the
    table and Markdown headers name that class.
    """
    columns = predict_columns(positive_class)
    if fmt == "table":
        return rich_table(rows, columns, title=title, row_style=lambda r: "red" if r.get("error") else None)
    if fmt == "json":
        return json_text(rows)
    if fmt == "csv":
        return csv_text(rows, PREDICT_KEYS)
    return markdown_table(rows, columns)


# --------------------------------------------------------------------------------------------------
# compare


def short_weights(label: str | None) -> str:
    """"near-imagenet (long explanation)" -> "near-imagenet"; the full label goes in a footnote."""
    return (label or "").split(" (")[0]


def _flags(row: dict[str, Any]) -> str:
    flags = []
    if row.get("random_features"):
        flags.append("RANDOM FEATURES")
    if row.get("leaks"):
        flags.append("LEAKS (duplicates across splits)")
    if row.get("train_overlap"):
        flags.append(f"TRAIN OVERLAP: the backbone was trained on {row['train_overlap']} of these valid/test images")
    if row.get("collapsed"):
        flags.append(f"COLLAPSED: {row['collapsed']}")
    if row.get("streamed"):
        flags.append("streamed")
    return "; ".join(flags)


def _features(row: dict[str, Any]) -> str:
    if row.get("pooling") == "none":  # a hand-made feature: its layer is its parameters, no pooling, no preprocessing
        return f"{row['backbone']} {row.get('layer') or ''} {row['image_size']}px".replace("  ", " ")
    layer = f"{row['layer']}/" if row.get("layer") else ""
    extra = "" if row.get("preprocessing") in (None, "caffe", "tf", "torch") else f" [{row['preprocessing']}]"
    return f"{row['backbone']} {layer}{row['pooling']} {row['image_size']}px{extra}"


def _interval(row: dict[str, Any], key: str) -> str:
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if low is None or high is None or np.isnan(low):
        return f"{row[key]:.3f}"
    return f"{row[key]:.3f} [{low:.3f}, {high:.3f}]"


def _number(key: str, spec: str = ".3f") -> Callable[[dict[str, Any]], str]:
    return lambda row: format(row[key], spec)


WIDE_COLUMNS = (
    Column("features", _features),
    Column("weights", lambda r: short_weights(r.get("weights_label"))),
    Column("probe", lambda r: str(r["probe"])),
    Column("accuracy [95% CI]", lambda r: _interval(r, "accuracy"), "right"),
    Column("acc real", _number("accuracy_real"), "right"),
    Column("acc fake", _number("accuracy_fake"), "right"),
    Column("bal. acc", _number("balanced_accuracy"), "right"),
    Column("ROC AUC [95% CI]", lambda r: _interval(r, "roc_auc"), "right"),
    Column("AP", _number("average_precision"), "right"),
    Column("EER", _number("eer"), "right"),
    Column("TPR@1%FPR", _number("tpr_at_1pct_fpr"), "right"),
    Column("F1", _number("f1"), "right"),
    Column("thr (valid)", lambda r: format(r["threshold"], ".3g") + (" (valid+views)" if r.get("threshold_on")
                                                                      == "valid+views" else ""), "right"),
    # At the best threshold for THIS test set (as UnivFD reports it): tells ranking from calibration, never chooses.
    Column("oracle acc", _number("oracle_accuracy"), "right"),
    Column("P(fake) real/fake", lambda r: f"{r['mean_p_fake_real']:.2f}/{r['mean_p_fake_fake']:.2f}", "right"),
    Column("fit s", lambda r: f"{r['fit_seconds']:.1f}" + (" (reused)" if r.get("reused") else ""), "right"),
    Column("flags", _flags),
)
COMPACT_COLUMNS = (
    WIDE_COLUMNS[0], WIDE_COLUMNS[2], WIDE_COLUMNS[3],
    Column("ROC AUC", _number("roc_auc"), "right"),
    WIDE_COLUMNS[8], WIDE_COLUMNS[-1],
)


def _scored_on(row: dict[str, Any]) -> str:
    from featurekit.shifted_scoring import scored_on

    return scored_on(row)


SCORED_ON_COLUMN = Column("scored on", _scored_on)


DATA_COLUMN = Column("data", lambda r: str(r.get("data") or ""))


def columns_for(rows: list[dict[str, Any]], columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """The columns, led by "scored on" when some rows were scored on a view or another test set (blocks), and
    by "data" when the rows come from caches of more than one data set."""
    if len({row.get("data") for row in rows}) > 1:
        columns = (DATA_COLUMN, *columns)
    if any(row.get("view") or row.get("test_set", "test") != "test" for row in rows):
        return (SCORED_ON_COLUMN, *columns)
    return columns


def weights_footnotes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per distinct weights label that the short column abbreviates."""
    labels = sorted({r.get("weights_label") or "" for r in rows})
    return [f"{short_weights(label)}: {label}" for label in labels if label and short_weights(label) != label]


def _row_style(row: dict[str, Any]) -> str | None:
    return "red" if row.get("collapsed") else ("yellow" if row.get("random_features") else None)


def results_table(rows: list[dict[str, Any]], title: str = "featurekit compare (test split)", wide: bool = True):
    """The rich table of `compare`: every metric, or the compact columns."""
    notes = weights_footnotes(rows) if wide else []
    if not wide:
        notes.append("compact view: --wide (or --format md/csv/json) shows every metric")
    return rich_table(rows, columns_for(rows, WIDE_COLUMNS if wide else COMPACT_COLUMNS), title=title,
                      caption="\n".join(notes) or None, row_style=_row_style)


def results_table_for(console, rows: list[dict[str, Any]], title: str, wide: bool = False):
    """The wide table where it fits the console (or `wide` is asked for), else the compact one."""
    table = results_table(rows, title, wide=True)
    if wide or natural_width(console, table) <= console.width:
        return table
    return results_table(rows, title, wide=False)


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table with every column of the wide terminal table, and the weights footnotes."""
    text = markdown_table(rows, columns_for(rows, WIDE_COLUMNS))
    notes = weights_footnotes(rows)
    if notes:
        text += "\n" + "".join(f"- {note}\n" for note in notes)
    return text


def write_rows(rows: list[dict[str, Any]], fmt: str, out: str | Path | None) -> str:
    """Render compare rows as csv/json/md (every column); write to `out` when given; return the text."""
    from featurekit.compare import ROW_KEYS, public_rows

    if fmt == "json":
        text = json_text(public_rows(rows))
    elif fmt == "csv":
        text = csv_text(public_rows(rows), list(ROW_KEYS))
    elif fmt == "md":
        text = results_markdown(rows)
    else:
        raise FeaturekitError(f"Unknown output format {fmt!r}.", received=given("format", fmt),
                              fix=f"Use one of: {', '.join(f for f in FORMATS if f != 'table')}.")
    if out:
        write_text(text, out)
    return text


def _roc_name(row: dict[str, Any]) -> str:
    name = f"{_features(row)} {short_weights(row.get('weights_label'))} {row['probe']}"
    return name + (f" on {_scored_on(row)}" if columns_for([row], ()) else "")


def plot_roc(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """ROC curves of every row on one PNG (scikit-learn's RocCurveDisplay)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    from featurekit.fsutil import atomic_write_bytes

    # The legend sits beside the axes: with dozens of rows it would hide the curves.
    figure, axes = plt.subplots(figsize=(14, max(7, 0.22 * len(rows) + 1)))
    for row in rows:
        RocCurveDisplay.from_predictions(row["_labels"], row["_scores"], ax=axes,
                                         name=_roc_name(row))
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_title("ROC on the test split (positive class: fake)")
    axes.set_aspect("equal")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")  # keeps the legend beside the axes
    plt.close(figure)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(out, buffer.getvalue())


# --------------------------------------------------------------------------------------------------
# audit


AUDIT_FORMATS = ("table", "json", "md")
_BALANCE_FIXED = (Column("split", lambda r: r["split"]), Column("images", lambda r: str(r["total"]), "right"))
_DUPLICATE_COLUMNS = (
    Column("sha256", lambda r: r["sha256"][:12]), Column("path", lambda r: r["path"]), Column("split", lambda r: r["split"]),
    Column("label", lambda r: r["label"]), Column("labels conflict", lambda r: "CONFLICT" if r["conflict"] else ""),
)
_NEAR_COLUMNS = (
    Column("cosine", lambda r: f"{r['similarity']:.4f}", "right"),
    Column("first", lambda r: f"{r['first']['path']} ({r['first']['split']}, {r['first']['label']})"),
    Column("second", lambda r: f"{r['second']['path']} ({r['second']['split']}, {r['second']['label']})"),
)
_SHORTCUT_COLUMNS = (
    Column("shortcut probe", lambda r: r["name"]),
    Column("ROC AUC [95% CI]", lambda r: "n/a" if r["auc"] is None else f"{r['auc']:.3f} [{r['low']:.3f}, {r['high']:.3f}]",
           "right"),
    Column("verdict", lambda r: "SHORTCUT" if r["flagged"] else ""),
)


def _balance_columns(class_names: list[str]) -> list[Column]:
    return [*_BALANCE_FIXED, *(Column(name, (lambda n: lambda r: f"{r['counts'][n]} ({r['fractions'][n]:.1%})")(name),
                                      "right") for name in class_names)]


def _audit_sections(audit: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]], tuple[Column, ...] | list[Column], str]]:
    """(title, rows, columns, caption) of each table of an audit report (`AuditReport.to_dict()`)."""
    sections = [("class balance per split", [{"split": split, **row} for split, row in audit["balance"].items()],
                 _balance_columns(audit["class_names"]), "")]
    duplicates = [{"sha256": group["sha256"], "conflict": group["label_conflict"], **member}
                  for group in audit["exact_duplicates_across_splits"] for member in group["members"]]
    sections.append((f"exact duplicates across splits: {len(audit['exact_duplicates_across_splits'])} groups",
                     duplicates, _DUPLICATE_COLUMNS,
                     f"groups of identical files inside one split (not a leak): "
                     f"{len(audit['exact_duplicates_within_split'])}"))
    near = audit["near_duplicates"]
    if near is not None:
        listed = near["listed"]
        sections.append((f"near-duplicates across splits ({'centred ' if near['centered'] else ''}cosine >= "
                         f"{near['threshold']}): {near['count']} pairs", listed, _NEAR_COLUMNS,
                         f"{len(listed)} most similar listed" if len(listed) < near["count"] else ""))
    shortcuts = audit["shortcuts"]
    if shortcuts is not None and not shortcuts["skipped"]:
        rows = [{"name": name, "auc": probe["roc_auc"], "low": probe["roc_auc_ci_low"], "high": probe["roc_auc_ci_high"],
                 "flagged": name in shortcuts["flagged"]} for name, probe in shortcuts["probes"].items()]
        rows += [{"name": f"{name} alone", "auc": auc, "low": (shortcuts["property_auc_ci"].get(name) or [0, 0])[0],
                  "high": (shortcuts["property_auc_ci"].get(name) or [0, 0])[1], "flagged": name in shortcuts["flagged"]}
                 for name, auc in shortcuts["property_auc"].items()]
        sections.append((f"shortcut probes ({shortcuts['verdict']}): trained on {shortcuts['train_split']} "
                         f"({shortcuts['n_train']}), scored on {shortcuts['eval_split']} ({shortcuts['n_eval']}); "
                         f"a shortcut above ROC AUC {shortcuts['threshold']}", rows, _SHORTCUT_COLUMNS, ""))
    return sections  # shortcut probes that did not run are among the notes


def render_audit(audit: dict[str, Any], fmt: str):
    """An audit report (`AuditReport.to_dict()`) as rich renderables (warnings first), JSON or Markdown.

    Every path, label and message is shown as plain text: a file called `[red]x.jpg` stays that name.
    """
    from rich.console import Group
    from rich.text import Text

    if fmt == "json":
        return json_text(audit)
    heading = (f"audit of {audit['kind']} {audit['source']}: {audit['n_images']} images, classes "
               f"{', '.join(audit['class_names'])}")
    sections = _audit_sections(audit)
    if fmt == "md":
        lines = [f"# {heading}", ""]
        lines += [f"- **WARNING**: {warning}" for warning in audit["warnings"]] or ["No leaks, shortcuts or imbalance found."]
        for title, rows, columns, caption in sections:
            lines += ["", f"## {title}", ""]
            lines.append(markdown_table(rows, columns).rstrip("\n") if rows else "none")
            if caption:
                lines += ["", caption]
        if audit["notes"]:
            lines += ["", "## notes", ""] + [f"- {note}" for note in audit["notes"]]
        return "\n".join(lines) + "\n"
    if fmt != "table":
        raise FeaturekitError(f"Unknown output format {fmt!r} for an audit.", received=given("format", fmt),
                              fix=f"Use one of: {', '.join(AUDIT_FORMATS)}.")
    parts: list[Any] = [Text(f"WARNING: {warning}", style="bold red") for warning in audit["warnings"]]
    parts.append(Text(heading, style="bold"))
    if not audit["warnings"]:
        parts.append(Text("No leaks, shortcuts or imbalance found.", style="green"))
    for title, rows, columns, caption in sections:
        if rows:
            parts.append(rich_table(rows, columns, title=title, caption=caption or None))
        else:
            parts.append(Text(title + (f"; {caption}" if caption else "")))
    parts += [Text(f"note: {note}") for note in audit["notes"]]
    return Group(*parts)
