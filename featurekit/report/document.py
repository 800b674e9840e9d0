"""What a command shows, as data: a Document of blocks (tables and notes) with its JSON and CSV payloads.

A Table shows rows through Columns (a header and how a row shows in it); CSV and JSON carry the rows'
own keys instead, unformatted. A command builds one Document; `featurekit.report.formats` turns it into a
terminal table, CSV, JSON or Markdown. A block knows its terminal form (`rich`) and its Markdown form
(`markdown`); a note meant for one of the two gives None for the other.

Every cell, title and caption on a terminal is plain rich `Text`: file names, cache names, weights labels,
layer and probe names are shown exactly as they are, never read as markup (`face[hidden].jpg`) or emoji codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Column:
    """One column of a table: its header and how a row shows in it (tables and Markdown)."""

    header: str
    text: Callable[[dict[str, Any]], str]
    justify: str = "left"


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


@dataclass(frozen=True)
class Table:
    """A table block.

    Attributes:
        rows, columns: What it shows.
        title, caption: Above and below it on a terminal.
        row_style: A rich style per row (collapsed rows in red ...).
        heading: The Markdown line above it ("### title"); none by default.
        md_caption: A Markdown paragraph under it.
        empty: With no rows: this Markdown text instead of the table, the title (and caption) on a terminal.
    """

    rows: Sequence[dict[str, Any]]
    columns: Sequence[Column]
    title: str | None = None
    caption: str | None = None
    row_style: Callable[[dict[str, Any]], str | None] | None = None
    heading: str | None = None
    md_caption: str | None = None
    empty: str | None = None

    def rich(self):
        """A rich Table of plain-text cells; with no rows and an `empty` text, the title (and caption) alone."""
        from rich.table import Table as RichTable
        from rich.text import Text

        if self.empty is not None and not self.rows:
            return Text((self.title or "") + (f"; {self.caption}" if self.caption else ""))
        table = RichTable(title=Text(self.title) if self.title else None,
                          caption=Text(self.caption) if self.caption else None)
        for column in self.columns:
            table.add_column(Text(column.header), justify=column.justify)  # type: ignore[arg-type]
        for row in self.rows:
            table.add_row(*(Text(column.text(row)) for column in self.columns),
                          style=self.row_style(row) if self.row_style else None)
        return table

    def markdown(self) -> str:
        """A GitHub Markdown table with the same cells as the terminal table (pipes escaped)."""
        def line(cells: Iterable[str]) -> str:
            escaped = (cell.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") for cell in cells)
            return "| " + " | ".join(escaped) + " |\n"

        if self.empty is not None and not self.rows:
            body = self.empty + "\n"
        else:
            body = line(c.header for c in self.columns) + "|" + "|".join(
                "---:" if c.justify == "right" else "---" for c in self.columns) + "|\n"
            body += "".join(line(c.text(row) for c in self.columns) for row in self.rows)
        text = (f"{self.heading}\n\n" if self.heading else "") + body
        return text + (f"\n{self.md_caption}\n" if self.md_caption else "")


@dataclass(frozen=True)
class Note:
    """A paragraph: `text` on a terminal (in `style`), `md` in Markdown; None leaves it out of that output."""

    text: str | None = None
    style: str = ""
    md: str | None = None

    def rich(self):
        from rich.text import Text

        return None if self.text is None else Text(self.text, style=self.style)

    def markdown(self) -> str | None:
        return None if self.md is None else self.md + "\n"


Block = Table | Note


@dataclass(frozen=True)
class Document:
    """A command's output in every format.

    Attributes:
        blocks: Tables and notes, in order (the terminal and Markdown forms).
        data: What the JSON form carries.
        records, fieldnames: The CSV form's rows and columns; None: no CSV form.
        name: What it is, for error messages ("an audit").
    """

    blocks: Sequence[Block]
    data: Any = None
    records: Sequence[dict[str, Any]] | None = None
    fieldnames: Sequence[str] = ()
    name: str = "this output"
