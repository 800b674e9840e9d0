"""Columns and the two tables every command prints: a rich Table for the terminal, a Markdown table for files.

Every cell, title and caption is plain rich `Text`: file names, cache names, weights labels, layer and
probe names are shown exactly as they are, never read as markup (`face[hidden].jpg`) or emoji codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np


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


def with_interval(row: dict[str, Any], key: str, prefix: str = "") -> str:
    """"0.912 [0.880, 0.940]" from a row's `key` and `key_ci_low/high`; the value alone without an interval."""
    value, low, high = row[prefix + key], row.get(f"{prefix}{key}_ci_low"), row.get(f"{prefix}{key}_ci_high")
    if low is None or high is None or not np.isfinite(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def number(key: str, spec: str = ".3f") -> Callable[[dict[str, Any]], str]:
    """A column text: the row's `key` formatted with `spec` ("" where the row has no such figure)."""
    return lambda row: "" if row.get(key) is None else format(row[key], spec)


def rank_value(value: Any) -> float:
    """A figure to sort rows by: NaN and missing figures rank below every real one."""
    return float(value) if value is not None and np.isfinite(value) else -1.0
