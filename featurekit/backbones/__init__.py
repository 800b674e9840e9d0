"""The backbone registry: one frozen spec per backbone, as data.

`list_backbones()`, `get_spec(name)` and `create_backbone(name, ...)` are the only ways in. Modules in
this package register their specs on import; TensorFlow is imported only when a model is built, so
listing names stays instant.

Hand-made forensic features (`featurekit.handmade`: `spam`, `spectrum`) are backbones too: their specs carry
the `HandmadeSpec` (`spec.handmade`), need no weights and no Keras model, and are computed by the numpy
adapter `featurekit.handmade.embedder`. They register without importing Keras, and `get_spec` finds them
without importing the Keras modules, so extracting hand-made features never loads Keras or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from featurekit.backbones.weights import STANDARD_VARIANT, record_path, shipped_record
from featurekit.errors import FeaturekitError, given

# Preprocessing modes. The first three are keras.applications.imagenet_utils modes; "rescale" is the
# original study's x/255, kept only as an explicit, labelled option.
PREPROCESSING_MODES = ("caffe", "tf", "torch", "rescale")
POOLINGS = ("flatten", "avg", "max", "meanstd")
# What a hand-made feature records as its preprocessing and pooling: it takes uint8 RGB as stored, and its
# output is already one vector per image.
HANDMADE_PREPROCESSING = "none"
HANDMADE_POOLING = "none"


@dataclass(frozen=True)
class BackboneSpec:
    """Everything featurekit knows about one backbone.

    Attributes:
        name: Registry name (`--backbone NAME`).
        builder: `builder(input_shape, weights, seed) -> keras.Model` without classification top.
            `weights` is "imagenet", None (seeded random init) or a path to a `.weights.h5` file.
        input_size: Native square input size in pixels.
        preprocessing: One of PREPROCESSING_MODES; applied to float pixels in [0, 255].
        pretrained: Named weights the builder can fetch itself, e.g. ("imagenet",).
        weights_licence: Licence of the default weights (the records in `weights.py` give each file's).
        description: One line for `python cli.py backbones`.
        min_input_size: Smallest input the architecture accepts.
        is_test: True for tiny test backbones (hidden from user-facing listings).
        variants: Builders of other architecture variants, by name, with the builder's signature. A weights
            record names the variant its file was trained in, and loading that file builds it (InceptionV3's
            "tf-2015-12-05"); the standard variant is `builder`.
        handmade: For a hand-made feature, its `featurekit.handmade.HandmadeSpec` (then there is no Keras model:
            `builder` refuses, and the preprocessing is HANDMADE_PREPROCESSING); None for a CNN.
    """

    name: str
    builder: Callable[..., Any]
    input_size: int
    preprocessing: str
    pretrained: tuple[str, ...] = ()
    weights_licence: str = "n/a"
    description: str = ""
    min_input_size: int = 32
    is_test: bool = False
    variants: Mapping[str, Callable[..., Any]] = field(default_factory=dict, compare=False)
    handmade: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.handmade is not None and self.preprocessing == HANDMADE_PREPROCESSING:
            return
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(f"{self.name}: preprocessing {self.preprocessing!r} not in {PREPROCESSING_MODES}")

    @property
    def is_handmade(self) -> bool:
        """A hand-made feature (numpy, no weights, no Keras model), not a CNN."""
        return self.handmade is not None

    @property
    def default_weights(self) -> str:
        """What weights="default" means: the shipped file, else the first pretrained name, else random init.

        A shipped file wins over "imagenet" because it works offline and its bytes never change.
        """
        shipped = shipped_record(self.name)
        if shipped is not None:
            return str(record_path(shipped))
        return self.pretrained[0] if self.pretrained else "none"

    def builder_for(self, variant: str) -> Callable[..., Any]:
        """The builder of an architecture variant (STANDARD_VARIANT: `builder`)."""
        if variant == STANDARD_VARIANT:
            return self.builder
        if variant not in self.variants:
            raise ValueError(f"backbone {self.name!r} has no architecture variant {variant!r}")
        return self.variants[variant]


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a spec to the registry (import-time, once per name)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_registered() -> None:
    # Importing the modules registers their specs; kept lazy so import order never matters.
    _ensure_handmade_registered()
    from featurekit.backbones import inception_v1, keras_applications, tiny  # noqa: F401


def _no_keras_model(*args: Any, **kwargs: Any) -> Any:
    raise FeaturekitError("A hand-made feature has no Keras model.", received="create_backbone of a hand-made feature",
                          fix="Extract it with `python cli.py extract --backbone NAME` (featurekit.handmade.embedder).")


def _ensure_handmade_registered() -> None:
    """Adopt every hand-made feature as a backbone (numpy only: no Keras import)."""
    from featurekit.handmade import get_handmade, list_handmade

    for name in list_handmade():
        if name in _REGISTRY:
            continue
        feature = get_handmade(name)
        register_backbone(BackboneSpec(
            name=name, builder=_no_keras_model, input_size=feature.input_size, preprocessing=HANDMADE_PREPROCESSING,
            weights_licence="n/a (no weights)", description=f"hand-made: {feature.description}",
            min_input_size=8, handmade=feature))


def is_handmade(name: str) -> bool:
    """Whether `name` is a registered hand-made feature (answered without importing Keras)."""
    _ensure_handmade_registered()
    return name in _REGISTRY and _REGISTRY[name].is_handmade


def list_backbones(include_test: bool = False) -> list[str]:
    """Registered backbone names, sorted; test backbones only when asked."""
    _ensure_registered()
    return sorted(n for n, s in _REGISTRY.items() if include_test or not s.is_test)


def get_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone; unknown names get an error listing the valid ones.

    A hand-made feature is found without importing the Keras modules of the CNN backbones.
    """
    if is_handmade(name):
        return _REGISTRY[name]
    _ensure_registered()
    if name not in _REGISTRY:
        raise FeaturekitError(
            f"Unknown backbone {name!r}.",
            received=given("backbone", name),
            fix=f"Choose one of: {', '.join(list_backbones(include_test=True))} (`python cli.py backbones` lists them).",
        )
    return _REGISTRY[name]


def create_backbone(name: str, weights: str = "default", image_size: int | None = None, seed: int = 0):
    """Build a frozen backbone (no classification top) as a keras.Model.

    Args:
        name: Registry name.
        weights: "default" (the shipped file, else the spec's pretrained weights, else random), "imagenet",
            "none" (seeded random init: a random-features baseline), or a path to a `.weights.h5` or
            `.keras` file. A known file (see `weights.py`) builds the architecture variant it was trained in.
        image_size: Square input size; defaults to the spec's native size.
        seed: Seed of the random initialisation for weights="none".

    Returns:
        The model, with `trainable = False`.
    """
    from featurekit.backbones.loading import build_with_weights

    spec = get_spec(name)
    if spec.is_handmade:
        raise FeaturekitError(
            f"Backbone {name!r} is a hand-made feature: it has no Keras model and no weights.",
            received=given("backbone", name),
            fix=f"Extract it with `python cli.py extract --backbone {name} --data DIR` (computed with numpy).")
    return build_with_weights(spec, weights, image_size or spec.input_size, seed)


def backbone_listing(name: str) -> dict[str, Any]:
    """What `python cli.py backbones` shows for one backbone (`featurekit.embedder.backbone_summary` for a CNN,
    which builds it once; `featurekit.handmade.embedder.handmade_summary` for a hand-made feature)."""
    if is_handmade(name):
        from featurekit.handmade.embedder import handmade_summary

        return handmade_summary(name)
    from featurekit.embedder import backbone_summary

    return backbone_summary(name)
