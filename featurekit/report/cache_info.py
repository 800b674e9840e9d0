"""`info`: what a cache holds and what made it (`featurekit.cache.describe.describe_cache`), in every format."""

from __future__ import annotations

from typing import Any

from featurekit.report.document import Document, Table
from featurekit.report.formats import render
from featurekit.report.tables import Column


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


def _csv_records(description: dict[str, Any], attributes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    records = [{"section": "attribute", "key": r["key"], "value": _attribute_text(r["value"])} for r in attributes]
    records += [{"section": "count", "key": f"{split}/{name}", "value": n}
                for split, counts in description["counts"].items() for name, n in counts.items()]
    records += [{"section": "skipped", "key": s["path"], "value": s["reason"]} for s in description["skipped"]]
    records += [{"section": "ignored", "key": s["path"], "value": s["reason"]} for s in description["ignored"]]
    return records


def cache_document(description: dict[str, Any]) -> Document:
    """`info` of a `describe_cache` description: attributes, counts per split and class, skipped files."""
    attributes = [{"key": k, "value": v} for k, v in description["attributes"].items()]
    counts = [{"split": split, **counts} for split, counts in description["counts"].items()]
    parts = [(f"{description['path']}  ({description['size_mib']:.1f} MiB)", attributes, _ATTRIBUTE_COLUMNS),
             ("images per split and class", counts, _count_columns(description))]
    if description["skipped"]:
        parts.append(("skipped files (did not decode)", description["skipped"], _SKIPPED_COLUMNS))
    if description["ignored"]:
        parts.append(("ignored files (not images, links not followed, unreadable)", description["ignored"],
                      _SKIPPED_COLUMNS))
    return Document([Table(rows, columns, title=title, heading=f"### {title}") for title, rows, columns in parts],
                    data=description, records=_csv_records(description, attributes),
                    fieldnames=["section", "key", "value"], name="a cache description")


def render_cache(description: dict[str, Any], fmt: str):
    """`info`: rich tables (a Group), or json, csv (section,key,value rows) or md text."""
    return render(cache_document(description), fmt)
