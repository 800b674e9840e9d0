"""The most confident mistakes of a row: which test images it got wrong with the most conviction, as thumbnails.

Thumbnails are small JPEGs inlined as data URIs, so the page needs nothing beside it and opens offline.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np

THUMBNAIL_PIXELS = 144


def confident_mistakes(row: dict[str, Any], limit: int = 12) -> list[dict[str, Any]]:
    """The row's wrong test decisions farthest from its threshold (chosen on valid), most confident first.

    Each: path (relative to the data folder), p_fake, true class name, predicted class name.
    """
    scores, labels, paths = row.get("_scores"), row.get("_labels"), row.get("_paths")
    if scores is None or labels is None or paths is None:
        return []
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
    threshold = float(row["threshold"])
    wrong = np.flatnonzero((scores >= threshold) != (labels == 1))
    order = wrong[np.argsort(-np.abs(scores[wrong] - threshold), kind="stable")][:limit]
    names = list(row.get("_class_names") or ["real", "fake"])
    return [{"path": str(paths[i]), "p_fake": float(scores[i]), "true": names[int(labels[i])],
             "predicted": names[int(scores[i] >= threshold)]} for i in order]


def thumbnail_uri(path: Path, pixels: int = THUMBNAIL_PIXELS) -> str | None:
    """A JPEG data URI of the image at most `pixels` on a side; None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (pixels, pixels))  # JPEG: decode at a reduced scale
            image.thumbnail((pixels, pixels))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=85)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def gallery_items(row: dict[str, Any], limit: int = 12) -> list[dict[str, Any]]:
    """The confident mistakes, each with its thumbnail (`uri`, None when the file is gone)."""
    root = Path(str(row.get("_image_root") or ""))
    return [{**item, "uri": thumbnail_uri(root / item["path"])} for item in confident_mistakes(row, limit)]
