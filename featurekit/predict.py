"""Images -> P(fake) with a fitted model, through the same backbone, weights and preprocessing as its cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featurekit.data import IMAGE_SUFFIXES
from featurekit.errors import FeaturekitError, WeightsUnavailableError
from featurekit.fitting import load_fitted
from featurekit.hashing import file_sha256


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Image files named directly or found (recursively) in named folders, in a stable order."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise FeaturekitError("Input not found.", received=str(item), fix="Pass image files or folders that exist.")
    if not files:
        raise FeaturekitError("No images to predict.", received=", ".join(map(str, inputs)),
                              fix=f"Pass image files or folders holding {', '.join(IMAGE_SUFFIXES)} files.")
    return files


def embedder_for(embedding: dict[str, Any]):
    """Rebuild the embedder that made a model's cache; refuse when its weights cannot be had as they were."""
    from featurekit.embedder import build_embedder

    weights = embedding.get("weights") or "none"
    expected_sha = embedding.get("weights_sha256") or ""
    if weights not in ("none", "imagenet") and Path(weights).exists() and expected_sha:
        if file_sha256(weights) != expected_sha:
            raise FeaturekitError(
                "The weights file has changed since the model's cache was extracted.",
                received=f"{weights} (sha256 differs from {expected_sha[:12]}...)",
                fix="Restore the original file, or re-extract the cache and refit the model.")
    try:
        embedder = build_embedder(embedding["backbone"], weights=weights, image_size=embedding["image_size"],
                                  layer=embedding.get("layer"), pooling=embedding["pooling"],
                                  preprocessing=embedding.get("preprocessing"), seed=int(embedding.get("seed") or 0))
    except (WeightsUnavailableError, FileNotFoundError) as error:
        raise FeaturekitError(
            f"The model's backbone weights are not available here: {error}",
            received=f"weights {weights}",
            fix="Make the same weights file available at that path (or Keras' ImageNet file in ~/.keras/models).",
        ) from None
    label = embedder.describe()["weights_label"]
    if label != embedding.get("weights_label"):
        raise FeaturekitError(
            "The backbone weights found here are not the ones the model's cache was made with.",
            received=f"{label!r}, expected {embedding.get('weights_label')!r}",
            fix="Provide the original weights, or re-extract the cache and refit.")
    return embedder


def predict(model_dir: str | Path, inputs: list[str | Path], batch_size: int = 32) -> list[dict[str, Any]]:
    """P(fake) and the label at the model's stored threshold for every input image.

    Args:
        model_dir: A fitted-model folder (``runs/<cache>/<probe>``).
        inputs: Image files and/or folders.
        batch_size: Images per forward pass.

    Returns:
        One dict per file: path, p_fake, label, threshold (and error for files that did not decode).
    """
    from featurekit.pipeline import image_batches
    from featurekit.probes import fake_scores

    fitted = load_fitted(model_dir)
    files = collect_images(inputs)
    embedder = embedder_for(fitted.meta["embedding"])
    class_names = fitted.meta["class_names"]
    threshold = fitted.threshold
    rows: list[dict[str, Any]] = []
    batches = image_batches("", [str(f.resolve()) for f in files], fitted.meta["embedding"]["image_size"], batch_size)
    for number, (images, ok, reasons) in enumerate(batches):
        batch_files = files[number * batch_size:number * batch_size + len(ok)]
        scores = np.full(len(ok), np.nan)
        if ok.any():
            scores[ok] = fake_scores(fitted.estimator, embedder(images)[ok])
        for file, good, score, reason in zip(batch_files, ok, scores, reasons):
            if good:
                rows.append({"path": str(file), "p_fake": float(score), "label": class_names[int(score >= threshold)],
                             "threshold": threshold})
            else:
                rows.append({"path": str(file), "p_fake": None, "label": None, "threshold": threshold,
                             "error": reason})
    return rows
