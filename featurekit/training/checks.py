"""What a training request must satisfy before anything is built or written."""

from __future__ import annotations

from featurekit.backbones import BackboneSpec
from featurekit.data import ImageFolder
from featurekit.errors import FeaturekitError, given, option_name

# Only networks defined here can be trained from scratch; the keras.applications backbones are used with
# their (near-)ImageNet weights, frozen.
TRAINABLE_BACKBONES = ("inceptionv1",)
MONITORS = ("val_loss", "val_accuracy")
# Below these counts a split cannot train (batch norm needs a few images per class) or judge an epoch.
MIN_TRAIN_IMAGES_PER_CLASS = 8
MIN_VALID_IMAGES_PER_CLASS = 2


def check_request(backbone: str, epochs: int, image_size: int, batch_size: int, learning_rate: float,
                  patience: int, monitor: str) -> BackboneSpec:
    """Refuse an untrainable backbone, an image size outside its range, and out-of-range settings.

    Returns:
        The backbone's spec.
    """
    from featurekit.backbones import get_spec, list_backbones
    from featurekit.embedder import check_image_size

    if backbone not in TRAINABLE_BACKBONES:
        known = backbone in list_backbones(include_test=True)
        others = [n for n in list_backbones() if n not in TRAINABLE_BACKBONES]
        raise FeaturekitError(
            f"Backbone {backbone!r} cannot be trained from scratch here: only "
            f"{', '.join(TRAINABLE_BACKBONES)} can"
            + (f" ({backbone} is used frozen, as it is)." if known else f" ({backbone!r} is no registered backbone)."),
            received=given("backbone", backbone),
            fix=f"Use {option_name('backbone')} {TRAINABLE_BACKBONES[0]}; the other backbones ({', '.join(others)}) "
            "need no training: use them directly with `python cli.py extract`.",
        )
    spec = get_spec(backbone)
    check_image_size(spec, image_size)
    for name, value, least, example in (("epochs", epochs, 1, 30), ("batch_size", batch_size, 2, 32),
                                        ("patience", patience, 1, 5)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            why = " (batch norm needs at least two images per batch)" if name == "batch_size" else ""
            raise FeaturekitError(f"The {name.replace('_', ' ')} must be a whole number, at least {least}{why}.",
                                  received=given(name, value), fix=f"Use e.g. {option_name(name)} {example}.")
    if not learning_rate > 0:
        raise FeaturekitError("The learning rate must be positive.", received=given("learning_rate", learning_rate),
                              fix=f"Use e.g. {option_name('learning_rate')} 0.001.")
    if monitor not in MONITORS:
        raise FeaturekitError(f"Unknown monitor {monitor!r}.", received=given("monitor", monitor),
                              fix=f"Use one of: {', '.join(MONITORS)}.")
    return spec


def check_split_sizes(folder: ImageFolder, counts: dict[str, dict[str, int]]) -> None:
    """Refuse a data folder whose train or valid split is too small to train or to judge an epoch."""
    for split, least in (("train", MIN_TRAIN_IMAGES_PER_CLASS), ("valid", MIN_VALID_IMAGES_PER_CLASS)):
        found = counts[split]
        if min(found.values()) < least:
            have = ", ".join(f"{n} {name}" for name, n in found.items())
            raise FeaturekitError(
                f"Too few images to train: the {split} split needs at least {least} images of each class, "
                f"it has {have}.",
                received=f"{given('data', str(folder.root))} ({len(folder.samples)} images, layout {folder.layout})",
                fix=f"Add images, or give that split a larger share with {option_name('split')} (e.g. 0.7,0.15,0.15).",
            )
