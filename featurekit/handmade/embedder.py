"""Hand-made features behind the embedder interface that extraction and prediction use (numpy only).

A `featurekit.handmade.HandmadeSpec` builds these through its registry protocol (`build_embedder`,
`rebuild_embedder`); this module knows nothing of the spec but what a tap calls on its feature.

`extract` talks to a `MultiEmbedder`: ``embedder(uint8 batch) -> [features per tap]``, ``embedder.image_size``,
``embedder.batch_size`` and ``embedder.embedders[i].describe()``; `predict` to a single `Embedder`:
``embedder(uint8 batch) -> features``. `HandmadeEmbedder` and `HandmadeTap` offer the same, so the extraction
loop and its engines need no change, and nothing here imports Keras or TensorFlow.

What a hand-made cache records, chosen so that names, identity and `compare` rows read naturally:

- ``backbone``: the feature's name (`spam`, `spectrum`); ``weights`` "none", ``weights_label``
  "hand-made (no weights)", ``weights_sha256`` "", ``random_features`` False (the features are not random:
  they are a fixed computation); ``backbone_params`` 0.
- ``layer``: the feature's parameters, in full and in declaration order, e.g.
  ``threshold=3+order=2+normalisation=joint``: what a layer tap says of a CNN (which features), and part of
  the identity, so SPAM at T=2 is never answered by a T=3 cache. `layer` takes overrides in the same
  grammar (``threshold=2`` or ``threshold=2+order=1``; several variants are computed from one decode of each
  image, as several taps of a CNN come from one forward pass).
  The default cache name carries only the overrides: ``<data>-spam-none-256.h5``,
  ``<data>-spam-threshold=2-none-256.h5``.
- ``pooling`` "none": the feature is one vector per image already. `pooling` flatten (the declared default)
  and none are accepted and mean that; avg, max and meanstd are refused.
- ``preprocessing`` "none" (uint8 RGB as stored); ``precision`` "float32" (numpy; other precisions are
  refused); ``architecture_variant`` "handmade-v<version>" (the code version of the feature, so caches made
  before a change of the computation are told apart); ``handmade``: the spec's `describe()` (name,
  parameters, version, reference).
- ``image_size``: the data's own size (256 for the faces) with no resampling: without `image_size`, images
  must be stored at that size and any other is refused (`featurekit.views.ViewDecoder`); with an explicit
  `image_size` every image is resized to it, as for a CNN. Where the images already have that size the two
  give the same cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featurekit.parameters import BATCH_SIZE, HANDMADE_POOLING
from featurekit.errors import FeaturekitError

# What a hand-made feature records as its preprocessing: it takes uint8 RGB as stored.
HANDMADE_PREPROCESSING = "none"
HANDMADE_WEIGHTS_LABEL = "hand-made (no weights)"


class HandmadeTap:
    """One hand-made feature with its parameters at one image size: the `Embedder` interface, in numpy.

    Attributes:
        feature: The `HandmadeSpec` with this tap's parameters.
        image_size: Square input size.
        layer: The recorded parameter text (see the module docstring).
        pooling: "none".
        preprocessing: "none".
        feature_dim: Features per image.
        batch_size: Images per call (kept for the interface; a batch is computed whole).
    """

    def __init__(self, feature: Any, image_size: int, batch_size: int = BATCH_SIZE):
        self.feature = feature
        self.image_size = int(image_size)
        self.layer = feature.variant_text()
        self.pooling = HANDMADE_POOLING
        self.preprocessing = HANDMADE_PREPROCESSING
        self.batch_size = int(batch_size)
        self.feature_dim = feature.feature_dim(self.image_size)

    def __call__(self, images: Any) -> np.ndarray:
        """Features of a uint8 RGB batch [B, S, S, 3] as float32 [B, feature_dim]."""
        pixels = np.asarray(images)
        if pixels.ndim != 4 or pixels.shape[1:] != (self.image_size, self.image_size, 3):
            raise FeaturekitError(
                f"Hand-made feature {self.feature.name!r} takes image batches of shape [B, {self.image_size}, "
                f"{self.image_size}, 3].", received=f"an array of shape {pixels.shape}",
                fix="Decode the images at the cache's image size and stack them into one batch.")
        return np.asarray(self.feature.extract(pixels), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """What the cache records (see the module docstring); the keys of `Embedder.describe()`."""
        return {
            "backbone": self.feature.name, "weights": "none", "weights_label": HANDMADE_WEIGHTS_LABEL,
            "weights_sha256": "", "random_features": False, "architecture_variant": f"handmade-v{self.feature.version}",
            "layer": self.layer, "pooling": self.pooling, "image_size": self.image_size,
            "preprocessing": self.preprocessing, "precision": "float32", "backend": "numpy",
            "feature_dim": self.feature_dim, "backbone_params": 0, "handmade": self.feature.describe(self.image_size),
        }

    def __repr__(self) -> str:
        return (f"HandmadeTap({self.feature.name}, {self.layer}, image_size={self.image_size}, "
                f"feature_dim={self.feature_dim})")


class HandmadeEmbedder:
    """Several variants of one hand-made feature from one decode of each image: the `MultiEmbedder` interface.

    Attributes:
        embedders: One HandmadeTap per requested variant, in output order.
        image_size: Square input size.
        batch_size: Images per batch.
        stored_size: When set, images must be stored at this size (no resampling; see `featurekit.views`).
    """

    def __init__(self, embedders: list[HandmadeTap], batch_size: int, stored_size: int | None = None):
        self.embedders = embedders
        self.image_size = embedders[0].image_size
        self.batch_size = int(batch_size)
        self.stored_size = stored_size

    def __call__(self, images: Any) -> list[np.ndarray]:
        """One float32 array [B, D_i] per tap; a variant asked for twice is computed once."""
        computed = {tap.layer: tap(images) for tap in {tap.layer: tap for tap in self.embedders}.values()}
        return [computed[tap.layer] for tap in self.embedders]

    def check_images(self, root: Any, paths: list[str]) -> None:
        """Refuse, before anything is written, images not stored at the size this feature reads them at.

        Reads each file's header only (Pillow decodes nothing until asked); files that do not open are left to
        the decoder, which skips and lists them as for any backbone.
        """
        if self.stored_size is None:
            return
        from PIL import Image

        from featurekit.views import ViewDecoder

        for relative in paths:
            try:
                with Image.open(Path(root) / relative) as image:
                    size = image.size
            except Exception:  # undecodable files are skipped and listed at decode time
                continue
            if size != (self.stored_size, self.stored_size):
                raise ViewDecoder(stored_size=self.stored_size, feature=self.embedders[0].feature.name,
                                  root=str(root)).size_error(relative, size)

    def bytes_per_image(self) -> int:
        """Memory one image takes, roughly: its uint8 pixels and a few float64 intermediate arrays."""
        return self.image_size ** 2 * 3 * (1 + 4 * 8)
