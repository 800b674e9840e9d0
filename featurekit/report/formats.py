"""Output formats as data: format name -> renderer of a Document. Adding a format is one entry of FORMATS.

`table` gives a rich renderable for the terminal; every other format gives text for a file or a pipe.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from featurekit.errors import FeaturekitError, given
from featurekit.fsutil import check_output_file
from featurekit.report.document import Document
from featurekit.rows import plain


def json_text(payload: Any) -> str:
    """Indented JSON (NumPy scalars as plain numbers, paths as strings)."""
    return json.dumps(plain(payload), indent=2, default=str) + "\n"


def csv_text(records: Iterable[dict[str, Any]], fieldnames: list[str]) -> str:
    """CSV with a header line; keys missing from a record are empty, extra keys are left out."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def _terminal(document: Document):
    from rich.console import Group

    parts = [part for part in (block.rich() for block in document.blocks) if part is not None]
    return parts[0] if len(parts) == 1 else Group(*parts)


def _markdown(document: Document) -> str:
    return "\n".join(text for text in (block.markdown() for block in document.blocks) if text is not None)


@dataclass(frozen=True)
class Format:
    """One output format: how a Document becomes it, and whether a Document can (CSV needs records)."""

    render: Callable[[Document], Any]
    accepts: Callable[[Document], bool] = lambda document: True
    to_file: bool = True


FORMATS: dict[str, Format] = {
    "table": Format(_terminal, to_file=False),
    "csv": Format(lambda d: csv_text(d.records or [], list(d.fieldnames)), accepts=lambda d: d.records is not None),
    "json": Format(lambda d: json_text(d.data)),
    "md": Format(_markdown),
}


def unknown_format(fmt: str, usable: Iterable[str], what: str = "") -> FeaturekitError:
    """The refusal of format `fmt` (`what`: " for compare rows"), naming the `usable` ones."""
    return FeaturekitError(f"Unknown output format {fmt!r}{what}.", received=given("format", fmt),
                           fix=f"Use one of: {', '.join(usable)}.")


def render(document: Document, fmt: str):
    """The Document in format `fmt`: a rich renderable for `table`, else text."""
    entry = FORMATS.get(fmt)
    if entry is None or not entry.accepts(document):
        raise unknown_format(fmt, [name for name, f in FORMATS.items() if f.accepts(document)], f" for {document.name}")
    return entry.render(document)


def check_output(fmt: str, out: str | Path | None) -> None:
    """Refuse an output file for the terminal table, or one that cannot be written (before any work is done).

    `fmt` is one of the command's declared `format` choices (checked with the options), each a key of FORMATS.
    """
    if out and not FORMATS[fmt].to_file:
        files = [name for name, f in FORMATS.items() if f.to_file]
        raise FeaturekitError(f"`out` needs a file format.",
                              received=f"{given('out', str(out))} {given('format', fmt)}",
                              fix=f"Add {' or '.join(given('format', name) for name in files)}.")
    if out:
        check_output_file(out)
