"""What a command shows, as data: a Document of blocks (tables and notes) with its JSON and CSV payloads.

A command builds one Document; `featurekit.report.formats` turns it into a terminal table, CSV, JSON or
Markdown. A block knows its terminal form (`rich`) and its Markdown form (`markdown`); a note meant for
one of the two only leaves the other text empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from featurekit.report.tables import Column, markdown_table, rich_table


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
        from rich.text import Text

        if self.empty is not None and not self.rows:
            return Text((self.title or "") + (f"; {self.caption}" if self.caption else ""))
        return rich_table(self.rows, self.columns, title=self.title, caption=self.caption, row_style=self.row_style)

    def markdown(self) -> str:
        empty = self.empty is not None and not self.rows
        body = self.empty + "\n" if empty else markdown_table(self.rows, self.columns)
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

        return Text(self.text or "", style=self.style)

    def markdown(self) -> str:
        return (self.md or "") + "\n"


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

    def on_terminal(self) -> list[Block]:
        return [block for block in self.blocks if not (isinstance(block, Note) and block.text is None)]

    def in_markdown(self) -> list[Block]:
        return [block for block in self.blocks if not (isinstance(block, Note) and block.md is None)]
