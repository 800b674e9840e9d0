"""Where rendered output goes: files written atomically, tables printed whole, text printed as it is."""

from __future__ import annotations

from pathlib import Path

from featurekit.fsutil import atomic_write_bytes, make_folder


def write_text(text: str, out: str | Path) -> Path:
    """Write a UTF-8 output file atomically (never half-written, never through a symlink)."""
    return write_bytes(text.encode("utf-8"), out)


def write_bytes(data: bytes, out: str | Path) -> Path:
    """Write an output file (a PNG, or text as bytes) atomically, never through a symlink."""
    out = Path(out)
    make_folder(out.parent, f"create the folder of {out.name}")
    return atomic_write_bytes(out, data)


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
