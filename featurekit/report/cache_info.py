"""`info`: what a cache holds and what made it (`featurekit.cache.describe.describe_cache`), in every format."""

from __future__ import annotations

from typing import Any

from featurekit.report.document import Column, Document, Table
from featurekit.report.formats import render


def _attribute_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


_ATTRIBUTE_COLUMNS = (Column("attribute", lambda r: r["key"]), Column("value", lambda r: _attribute_text(r["value"])))
_SKIPPED_COLUMNS = (Column("path", lambda r: r["path"]), Column("reason", lambda r: r["reason"]))


_SKIPPED = {"skipped": "skipped files (did not decode)",
            "ignored": "ignored files (not images, links not followed, unreadable)"}


def render_cache(description: dict[str, Any], fmt: str):
    """`info` of a `describe_cache` description: attributes, counts per split and class, skipped files, as rich
    tables (a Group), or json, csv (section,key,value rows) or md text."""
    attributes = [{"key": k, "value": v} for k, v in description["attributes"].items()]
    counts = [{"split": split, **counts} for split, counts in description["counts"].items()]
    count_columns = [Column("split", lambda r: r["split"]), *(Column(name, (lambda r, name=name: str(r[name])), "right")
                                                             for name in description["class_names"])]
    parts = [(f"{description['path']}  ({description['size_mib']:.1f} MiB)", attributes, _ATTRIBUTE_COLUMNS),
             ("images per split and class", counts, count_columns)]
    parts += [(title, description[key], _SKIPPED_COLUMNS) for key, title in _SKIPPED.items() if description[key]]
    records = [{"section": "attribute", "key": r["key"], "value": _attribute_text(r["value"])} for r in attributes]
    records += [{"section": "count", "key": f"{split}/{name}", "value": n}
                for split, counts in description["counts"].items() for name, n in counts.items()]
    records += [{"section": key, "key": s["path"], "value": s["reason"]} for key in _SKIPPED for s in description[key]]
    tables = [Table(rows, columns, title=title, heading=f"### {title}") for title, rows, columns in parts]
    return render(Document(tables, data=description, records=records, fieldnames=["section", "key", "value"],
                           name="a cache description"), fmt)
