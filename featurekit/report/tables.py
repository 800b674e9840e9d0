"""Columns of the tables every command prints (`featurekit.report.document.Table`), and how cells show figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Column:
    """One column of a table: its header and how a row shows in it (tables and Markdown).

    CSV and JSON carry the rows' own keys instead, unformatted.
    """

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
