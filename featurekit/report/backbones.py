"""`backbones`: the registry listing and the known weights files."""

from __future__ import annotations

from typing import Any

from featurekit.report.document import Column, Document, Table
from featurekit.report.formats import render


def backbone_rows(summaries: list[dict[str, Any]], default_weights: dict[str, str]) -> list[dict[str, Any]]:
    """Flat rows (for CSV) from the entries' `listing()` dicts; `default_weights`: each Keras backbone's default weights
    in words, by name (hand-made features have no weights: their `weights_text` says so)."""
    return [{"name": s["name"], "input_size": s["input_size"], "preprocessing": s["preprocessing"],
             "output_layer": s["output_layer"], **{f"feature_dim_{p}": dim for p, dim in s["feature_dim"].items()},
             "params": s["params"], "default_weights": s.get("weights_text") or default_weights[s["name"]],
             "weights": s.get("weights_text") or ", ".join(["default", *s["pretrained"], "none", "PATH"])}
            for s in summaries]


BACKBONE_COLUMNS = (
    Column("name", lambda r: str(r["name"])),
    Column("native size", lambda r: str(r["input_size"]), "right"),
    Column("preprocessing", lambda r: str(r["preprocessing"])),
    Column("last block", lambda r: str(r["output_layer"])),
    Column("features (flatten / avg / max / meanstd)",
           lambda r: " / ".join(str(v) for k, v in r.items() if k.startswith("feature_dim_")), "right"),
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


def render_backbones(summaries: list[dict[str, Any]], fmt: str, files: list[dict[str, Any]] | None = None,
                     default_weights: dict[str, str] | None = None):
    """The `backbones` listing: a rich table, or csv/json/md text; with `files`, the known weights files too
    (CSV then lists the files).

    `default_weights`: each Keras backbone's default weights in words, by name
    (`featurekit.backbones.weights.default_weights_label`).
    """
    rows = backbone_rows(summaries, default_weights or {})
    blocks = [Table(rows, BACKBONE_COLUMNS, title="Backbones")]
    data, records, first_key = summaries, rows, "name"
    if files is not None:
        blocks.append(Table(files, WEIGHTS_FILE_COLUMNS, title="Known weights files"))
        data, records, first_key = {"backbones": summaries, "weights_files": files}, files, "backbone"
    return render(Document(blocks, data=data, records=records, fieldnames=list(records[0]) if records else [first_key],
                           name="the backbones listing"), fmt)
