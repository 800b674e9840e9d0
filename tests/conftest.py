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
