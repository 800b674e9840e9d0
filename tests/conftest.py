"""Shared fixtures: synthetic image folders made in tmp_path, the shared data folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_FACES = SHARED / "data" / "ffhq_stylegan_140k_sample"
SHARED_WEIGHTS = SHARED / "weights"
BUNDLED_FACES = REPO / "data" / "faces_sample"


def quiet(message: str) -> None:
    """A `log` that shows nothing."""


QUIET = {"log": quiet}


def invoke(*args):
    """The CLI in this process (Typer's CliRunner), each argument as a string."""
    from typer.testing import CliRunner

    from featurekit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def extract_tiny(data: Path, cache: Path, **options):
    """`extract` with the tiny test backbone, avg pooling, batches of 4, silent.

    float32 unless asked: tests compare features exactly (the default, auto, is bfloat16 on some CPUs).
    """
    from featurekit.extraction.extract import extract

    options = {"backbone": "test_tiny", "pooling": "avg", "batch_size": 4, "precision": "float32", "log": quiet,
               **options}
    return extract(data, cache=cache, **options)


def write_image(path: Path, seed: int, size: int = 40, mode: str = "RGB", fmt: str | None = None) -> Path:
    """A random-noise image; class differences come from the caller's seed ranges."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)
    return path


def make_image_folder(root: Path, per_class: int = 12, size: int = 40, classes=("real", "fake")) -> Path:
    """DIR/<class>/img_XX.png with a learnable difference: fake images are brighter."""
    from PIL import Image

    for label, name in enumerate(classes):
        for i in range(per_class):
            rng = np.random.default_rng(1000 * label + i)
            pixels = rng.integers(0, 160, (size, size, 3)) + 90 * label
            path = root / name / f"img_{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "faces")


@pytest.fixture
def shared_faces() -> Path:
    if not SHARED_FACES.exists():
        pytest.skip(f"shared faces not found at {SHARED_FACES} (they sit beside the checkout on dev machines and CI)")
    return SHARED_FACES


@pytest.fixture
def shared_weights() -> Path:
    if not SHARED_WEIGHTS.exists():
        pytest.skip(f"shared near-ImageNet weights not found at {SHARED_WEIGHTS}")
    return SHARED_WEIGHTS


def make_cache(path: Path, features: np.ndarray, labels, splits, class_names=("real", "fake"), **attrs) -> Path:
    """A finished cache with given rows, written through the real writer (no backbone needed)."""
    from featurekit.cache import PartialCache, finalize_cache
    from featurekit.data import Sample

    samples = [Sample(f"{class_names[int(y)]}/{i:05d}.png", int(y), split, f"{i:064x}")
               for i, (y, split) in enumerate(zip(labels, splits))]
    partial = PartialCache(path)
    partial.start({"n_batches": 1})
    partial.write_batch(0, np.arange(len(samples)), features, np.array([], int), [], "float32")
    base = dict(backbone="test_tiny", weights="none", weights_label="random-init (seed 0)", weights_sha256="",
                random_features=True, layer="pool2", pooling="avg", image_size=32, preprocessing="tf",
                feature_dim=features.shape[1], dtype="float32", data_fingerprint=f"synthetic-{path.name}",
                class_names=list(class_names), versions={}, config={}, created_utc="2026-01-01T00:00:00+00:00")
    finalize_cache(partial, samples, {**base, **attrs})
    return path


def separable_cache(path: Path, n: int = 240, d: int = 8, seed: int = 0, shift: float = 1.5) -> Path:
    """Two Gaussian classes a linear probe separates well; 60/20/20 splits with both classes in each."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    features = rng.normal(size=(n, d)).astype(np.float32) + shift * labels[:, None]
    # Pairs of rows (one real, one fake) share a split, so every split holds both classes.
    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]
    return make_cache(path, features, labels, splits)
