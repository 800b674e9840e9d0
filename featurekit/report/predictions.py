"""`predict`: P(positive class) and the label of each image."""

from __future__ import annotations

from typing import Any

from featurekit.report.document import Column, Document, Table
from featurekit.report.formats import render

PREDICT_KEYS = ["path", "p_fake", "label", "threshold", "error"]


def render_predictions(rows: list[dict[str, Any]], fmt: str, title: str, positive_class: str = "fake"):
    """`predict` rows: a rich table (undecodable files in red), or csv/json/md text.

    `p_fake` is the probability of the model's positive class (label 1: `fake` with real/fake folders); the
    table and Markdown headers name that class.
    """
    columns = (Column("path", lambda r: str(r["path"])),
               Column(f"P({positive_class})", lambda r: "-" if r.get("p_fake") is None else f"{r['p_fake']:.4f}",
                      "right"),
               Column("label", lambda r: r.get("label") or f"error: {r.get('error')}"))
    table = Table(rows, columns, title=title, row_style=lambda r: "red" if r.get("error") else None)
    return render(Document([table], data=rows, records=rows, fieldnames=PREDICT_KEYS, name="predictions"), fmt)
