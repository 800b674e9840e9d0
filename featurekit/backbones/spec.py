"""`BackboneSpec`: one Keras network of the registry, as data, and how it builds its own embedder.

A spec names its builder by import path ("module:function"), so declaring and listing a backbone imports no
Keras: the builder's module is imported when a network is first built. What the listing shows that would
otherwise need a built network (output shape and parameters at the native size) is declared here, and a test
builds every network once to check it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

from featurekit.backbones.checks import check_image_size, check_preprocessing, pooled_dim
from featurekit.backbones.weights import STANDARD_VARIANT, keras_imagenet_record, record_path, shipped_record
from featurekit.errors import refuse_unknown
from featurekit.parameters import BATCH_SIZE, POOLINGS

NO_RECORD_LICENCE = "n/a (no published weights: random init or your own file)"


@dataclass(frozen=True)
class BackboneSpec:
    """Everything featurekit knows about one Keras backbone.

    Attributes:
        name: Registry name (`backbone=NAME`).
        builder: "module:function" of `builder(input_shape, weights) -> keras.Model` without classification top;
            `weights` is "imagenet" (where `pretrained` has it) or None (random init, seeded by the loader, which
            also loads weight files).
        input_size: Native square input size in pixels.
        preprocessing: One of PREPROCESSING_MODES; applied to float pixels in [0, 255].
        taps: The layers worth tapping, shallow to deep; the last is the network's output. Any layer name works.
        output_shape: Shape of the output for one image at the native size, e.g. (7, 7, 512).
        params: Number of parameters of the network (any input size).
        pretrained: Named weights the builder can fetch itself, e.g. ("imagenet",).
        description: One line for the `backbones` listing.
        min_input_size: Smallest input the architecture accepts.
        is_test: True for tiny test backbones (hidden from user-facing listings and error messages).
        variants: "module:function" builders of other architecture variants, by name. A weights record names the
            variant its file was trained in, and loading that file builds it (InceptionV3's "tf-2015-12-05").
    """

    kind: ClassVar[str] = "Keras network"
    request_options: ClassVar[tuple[str, ...]] = (
        "weights", "layer", "pooling", "image_size", "preprocessing", "precision", "seed")

    name: str
    builder: str
    input_size: int
    preprocessing: str
    taps: tuple[str, ...]
    output_shape: tuple[int, ...]
    params: int
    pretrained: tuple[str, ...] = ()
    description: str = ""
    min_input_size: int = 32
    is_test: bool = False
    variants: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def default_weights(self) -> str:
        """What weights="default" means: the shipped file, else the first pretrained name, else random init.

        A shipped file wins over "imagenet" because it works offline and its bytes never change.
        """
        shipped = shipped_record(self.name)
        if shipped is not None:
            return str(record_path(shipped))
        return self.pretrained[0] if self.pretrained else "none"

    @property
    def weights_licence(self) -> str:
        """Licence of the default weights, from their record (the shipped file's, else Keras' download's)."""
        record = shipped_record(self.name) or keras_imagenet_record(self.name)
        return record.licence if record is not None else NO_RECORD_LICENCE

    @property
    def output_layer(self) -> str:
        """The layer the network ends with (what an embedder taps when no layer is asked for)."""
        return self.taps[-1]

    def builder_for(self, variant: str = STANDARD_VARIANT) -> Callable[..., Any]:
        """The builder of an architecture variant (STANDARD_VARIANT: `builder`), its module imported on first use."""
        path = self.builder if variant == STANDARD_VARIANT else self.variants[variant]
        module, _, function = path.partition(":")
        return getattr(importlib.import_module(module), function)

    def create_network(self, weights: str = "default", image_size: int | None = None, seed: int = 0) -> Any:
        """The frozen keras.Model (see `featurekit.backbones.create_backbone`)."""
        from featurekit.backbones.loading import build_with_weights

        return build_with_weights(self, weights, image_size, seed)  # None: the native size

    # --- the registry protocol (featurekit.backbones.registry.RegistryEntry) ---

    def check_request(self, image_size: Any = None, poolings: Sequence[str] = ("flatten",),
                      preprocessing: str | None = None, precision: str = "float32",
                      weights: str | Sequence[str] = "default") -> tuple[tuple[str, ...], str]:
        """Refuse a bad image size, pooling or preprocessing before anything is built.

        Returns:
            (poolings, precision): the poolings as asked, the precision resolved ("auto" decided here).

        Weights are checked when the network is built (a missing file may fall back to the next choice).
        """
        from featurekit.backend import resolve_precision

        check_image_size(self, image_size)
        for pooling in poolings:
            refuse_unknown("pooling", pooling, POOLINGS)
        check_preprocessing(self.preprocessing if preprocessing is None else preprocessing)
        return tuple(poolings), resolve_precision(precision)

    def build_embedder(self, taps: Sequence[tuple[str | None, str]], weights: str = "default",
                       image_size: int | None = None, preprocessing: str | None = None, seed: int = 0,
                       precision: str = "float32", batch_size: int = BATCH_SIZE) -> Any:
        """A `featurekit.backbones.embedder.MultiEmbedder` over (layer, pooling) taps, one forward pass per batch, for
        a checked request (`precision` resolved)."""
        from featurekit.backbones.embedder import multi_embedder_for_spec

        return multi_embedder_for_spec(self, list(taps), weights=weights, image_size=image_size,
                                       preprocessing=preprocessing, seed=seed, precision=precision,
                                       batch_size=batch_size)

    def rebuild_embedder(self, embedding: dict[str, Any], weights: str | None = None) -> Any:
        """The `featurekit.backbones.embedder.Embedder` that made a cache, from its recorded attributes."""
        taps = [(embedding.get("layer"), embedding["pooling"])]
        return self.build_embedder(
            taps, weights=weights or embedding.get("weights") or "none", image_size=embedding["image_size"],
            preprocessing=embedding.get("preprocessing"), seed=int(embedding.get("seed") or 0),
            precision=embedding.get("precision") or "float32").embedders[0]

    def cache_name_layer(self, layer: str | None) -> str | None:
        """The layer asked for, as it is."""
        return layer

    def listing(self) -> dict[str, Any]:
        """Name, sizes, preprocessing, taps, features per pooling and weights, from the declared data."""
        return {
            "name": self.name, "kind": self.kind, "description": self.description, "input_size": self.input_size,
            "min_input_size": self.min_input_size, "preprocessing": self.preprocessing, "taps": list(self.taps),
            "output_layer": self.output_layer, "output_shape": list(self.output_shape),
            "feature_dim": {pooling: pooled_dim(self.output_shape, pooling) for pooling in POOLINGS},
            "params": self.params, "pretrained": list(self.pretrained), "default_weights": self.default_weights,
            "weights_options": [*self.pretrained, "none", "PATH.weights.h5", "PATH.keras"],
            "weights_licence": self.weights_licence, "is_test": self.is_test,
        }
