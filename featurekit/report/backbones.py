"""`backbones`: the registry listing and the known weights files."""

from __future__ import annotations

from typing import Any

from featurekit.report.document import Document, Table
from featurekit.report.formats import render
from featurekit.report.tables import Column


def backbone_rows(summaries: list[dict[str, Any]], default_weights: dict[str, str]) -> list[dict[str, Any]]:
    """Flat rows (for CSV) from `backbone_listing` dicts; `default_weights`: each Keras backbone's default weights
    in words, by name (hand-made features have no weights: their `weights_text` says so)."""
    return [{"name": s["name"], "input_size": s["input_size"], "preprocessing": s["preprocessing"],
             "output_layer": s["output_layer"], **{f"feature_dim_{p}": dim for p, dim in s["feature_dim"].items()},
             "params": s["params"], "default_weights": s.get("weights_text") or default_weights[s["name"]],
             "weights": s.get("weights_text") or ", ".join(["default", *s["pretrained"], "none", "PATH"])}
            for s in summaries]


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


def backbones_document(summaries: list[dict[str, Any]], files: list[dict[str, Any]] | None = None,
                       default_weights: dict[str, str] | None = None) -> Document:
    """The `backbones` listing; with `files`, the known weights files too (CSV then lists the files)."""
    rows = backbone_rows(summaries, default_weights or {})
    blocks = [Table(rows, BACKBONE_COLUMNS, title="Backbones")]
    if files is not None:
        blocks.append(Table(files, WEIGHTS_FILE_COLUMNS, title="Known weights files"))
        return Document(blocks, data={"backbones": summaries, "weights_files": files}, records=files,
                        fieldnames=list(files[0]) if files else ["backbone"], name="the backbones listing")
    return Document(blocks, data=summaries, records=rows, fieldnames=list(rows[0]) if rows else ["name"],
                    name="the backbones listing")


def render_backbones(summaries: list[dict[str, Any]], fmt: str, files: list[dict[str, Any]] | None = None,
                     default_weights: dict[str, str] | None = None):
    """The `backbones` listing: a rich table, or csv/json/md text; with `files`, the known weights files too.

    `default_weights`: each Keras backbone's default weights in words, by name
    (`featurekit.backbones.weights.default_weights_label`).
    """
    return render(backbones_document(summaries, files, default_weights), fmt)
