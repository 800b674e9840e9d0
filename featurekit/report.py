"""Renderers: result rows and cache descriptions -> rich tables, CSV, JSON, Markdown, ROC plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def cache_summary(path: str | Path):
    """A rich renderable that says what a cache holds and what made it."""
    from rich.console import Group
    from rich.table import Table

    from featurekit.cache import open_cache

    path = Path(path)
    with open_cache(path) as cache:
        attrs = dict(cache.attrs)
        about = Table(title=f"{path}  ({path.stat().st_size / 2**20:.1f} MiB)", show_header=False)
        about.add_column("attribute", style="bold")
        about.add_column("value")
        shown = ("backbone", "weights", "weights_label", "weights_sha256", "random_features", "layer", "pooling",
                 "image_size", "preprocessing", "dtype", "feature_dim", "n_rows", "n_skipped", "class_names",
                 "data_root", "layout", "data_fingerprint", "fingerprint", "created_utc", "schema_version")
        for key in shown:
            if key in attrs:
                value = attrs[key]
                about.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
        about.add_row("versions", ", ".join(f"{k} {v}" for k, v in attrs.get("versions", {}).items()))
        counts = Table(title="images per split and class")
        counts.add_column("split")
        names = cache.class_names
        for name in names:
            counts.add_column(name, justify="right")
        for split in ("train", "valid", "test"):
            labels = cache.labels[cache.splits == split]
            counts.add_row(split, *(str(int(np.sum(labels == i))) for i in range(len(names))))
        parts: list[Any] = [about, counts]
        if cache.skipped:
            skipped = Table(title="skipped files")
            skipped.add_column("path")
            skipped.add_column("reason")
            for skipped_path, reason in cache.skipped:
                skipped.add_row(skipped_path, reason)
            parts.append(skipped)
    return Group(*parts)
