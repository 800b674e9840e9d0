"""What a training request must satisfy before anything is built or written: the checked `TrainRequest`."""

from __future__ import annotations

from dataclasses import dataclass

from featurekit.backbones import BackboneSpec
from featurekit.data import ImageFolder
from featurekit.errors import FeaturekitError, given, option_name
from featurekit.training.schedule import Schedule, make_schedule

# Only networks defined here can be trained from scratch; every registered Keras backbone (these included) can
# be fine-tuned from its weights above a layer (`unfreeze_from`).
TRAINABLE_BACKBONES = ("inceptionv1",)
MONITORS = ("val_loss", "val_accuracy")
HEAD_POOLINGS = ("meanstd", "avg")
# The learning rate when none is given: Adam's usual rate from scratch, ten times lower when fine-tuning
# pretrained weights (the second stage of the Keras transfer-learning guide uses 1e-5 with a larger model).
SCRATCH_LEARNING_RATE = 1e-3
FINETUNE_LEARNING_RATE = 1e-4
# Below these counts a split cannot train (batch norm needs a few images per class) or judge an epoch.
MIN_TRAIN_IMAGES_PER_CLASS = 8
MIN_VALID_IMAGES_PER_CLASS = 2


@dataclass(frozen=True)
class TrainRequest:
    """A checked training request. `unfreeze_from` set: fine-tuning `weights`; unset: training from scratch.

    Attributes:
        spec: The backbone's registry entry.
        weights: The parent weights request of a fine-tuning ("default" from scratch).
        unfreeze_from: Fine-tuning: the layer whose output ends the frozen trunk; the layers above it train.
        top_layer: Fine-tuning: the layer the head sits on (None: the backbone's output).
        head_pooling: Fine-tuning: how the head pools the top layer's map (meanstd or avg).
        augment_views: Fine-tuning: view texts (featurekit.views grammar) drawn per augmented copy.
        augment_copies: Fine-tuning: augmented copies of each training image cached besides the clean one.
    """

    spec: BackboneSpec
    epochs: int
    image_size: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int
    monitor: str
    schedule: Schedule
    weights: str = "default"
    unfreeze_from: str | None = None
    top_layer: str | None = None
    head_pooling: str = "meanstd"
    augment_views: tuple[str, ...] = ()
    augment_copies: int = 0

    @property
    def backbone(self) -> str:
        return self.spec.name

    @property
    def fine_tunes(self) -> bool:
        return self.unfreeze_from is not None


def make_request(backbone: str, epochs: int, image_size: int, batch_size: int, learning_rate: float | None,
                 patience: int, seed: int, monitor: str, schedule: dict, weights: str = "default",
                 unfreeze_from: str | None = None, top_layer: str | None = None, head_pooling: str = "meanstd",
                 augment_views: tuple[str, ...] | list[str] | None = None, augment_copies: int = 0) -> TrainRequest:
    """Refuse an untrainable backbone, an image size outside its range, and out-of-range settings.

    Args:
        schedule: make_schedule's keyword arguments other than learning_rate, epochs and monitor.

    Returns:
        The checked request (the learning rate resolved: 1e-3 from scratch, 1e-4 fine-tuning when None).
    """
    from featurekit.backbones.checks import check_image_size

    spec = _trainable_spec(backbone, unfreeze_from)
    check_image_size(spec, image_size)
    for name, value, least, example in (("epochs", epochs, 1, 30), ("batch_size", batch_size, 2, 32),
                                        ("patience", patience, 1, 5), ("augment_copies", augment_copies, 0, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            why = " (batch norm needs at least two images per batch)" if name == "batch_size" else ""
            raise FeaturekitError(f"The {name.replace('_', ' ')} must be a whole number, at least {least}{why}.",
                                  received=given(name, value), fix=f"Use e.g. {option_name(name)} {example}.")
    if learning_rate is None:
        learning_rate = FINETUNE_LEARNING_RATE if unfreeze_from is not None else SCRATCH_LEARNING_RATE
    if not learning_rate > 0:
        raise FeaturekitError("The learning rate must be positive.", received=given("learning_rate", learning_rate),
                              fix=f"Use e.g. {option_name('learning_rate')} 0.001.")
    if monitor not in MONITORS:
        raise FeaturekitError(f"Unknown monitor {monitor!r}.", received=given("monitor", monitor),
                              fix=f"Use one of: {', '.join(MONITORS)}.")
    views = _checked_fine_tuning_settings(unfreeze_from, weights, top_layer, head_pooling, augment_views,
                                          augment_copies)
    lr_schedule = make_schedule(learning_rate=learning_rate, epochs=epochs, monitor=monitor, **schedule)
    return TrainRequest(spec=spec, epochs=epochs, image_size=image_size, batch_size=batch_size,
                        learning_rate=float(learning_rate), patience=patience, seed=seed, monitor=monitor,
                        schedule=lr_schedule, weights=str(weights), unfreeze_from=unfreeze_from, top_layer=top_layer,
                        head_pooling=head_pooling, augment_views=views, augment_copies=augment_copies)


def _trainable_spec(backbone: str, unfreeze_from: str | None) -> BackboneSpec:
    from featurekit.backbones import get_spec, list_backbones

    def is_network(name: str) -> bool:  # an entry with weights to train (a hand-made feature has none)
        return "weights" in get_spec(name).request_options

    known = backbone in list_backbones(include_test=True)
    if known and unfreeze_from is not None and is_network(backbone):
        return get_spec(backbone)
    if known and backbone in TRAINABLE_BACKBONES:
        return get_spec(backbone)
    others = [n for n in list_backbones() if n not in TRAINABLE_BACKBONES and is_network(n)]
    if known and not is_network(backbone):
        problem = f"{backbone!r} is a {get_spec(backbone).kind}: it has no weights to train."
    elif known:
        problem = (f"Backbone {backbone!r} cannot be trained from scratch here: only {', '.join(TRAINABLE_BACKBONES)} "
                   f"can ({backbone} is used frozen, as it is, or fine-tuned from its weights above a layer).")
    else:
        problem = f"{backbone!r} is no registered backbone: only {', '.join(TRAINABLE_BACKBONES)} can be trained."
    raise FeaturekitError(
        problem, received=given("backbone", backbone),
        fix=f"Use {option_name('backbone')} {TRAINABLE_BACKBONES[0]} to train from scratch, or fine-tune one of "
        f"{', '.join(others)} with {option_name('unfreeze_from')} LAYER (e.g. inceptionv3 with mixed5).")


def _checked_fine_tuning_settings(unfreeze_from: str | None, weights: str, top_layer: str | None,
                                  head_pooling: str, augment_views, augment_copies: int) -> tuple[str, ...]:
    """The canonical augmentation views; refuse fine-tuning settings without `unfreeze_from`, or unknown ones."""
    from featurekit.views import parse_views

    views = tuple(view.name for view in parse_views(augment_views) if view is not None)
    if unfreeze_from is None:
        given_settings = [text for text, is_set in (
            (given("weights", weights), str(weights) != "default"), (given("top_layer", top_layer), top_layer),
            (given("augment_views", list(views)), views), (given("augment_copies", augment_copies), augment_copies))
            if is_set]
        if given_settings:
            raise FeaturekitError(
                "These settings belong to fine-tuning, which starts from weights above a layer; training from "
                "scratch does not use them.", received=", ".join(given_settings),
                fix=f"Pass {option_name('unfreeze_from')} LAYER to fine-tune, or leave them out.")
    if head_pooling not in HEAD_POOLINGS:
        raise FeaturekitError(f"Unknown head pooling {head_pooling!r}.", received=given("head_pooling", head_pooling),
                              fix=f"Use one of: {', '.join(HEAD_POOLINGS)}.")
    if views and not augment_copies:
        raise FeaturekitError(
            "Augmentation views are drawn into cached copies of the training images, and none was asked for.",
            received=f"{given('augment_views', list(views))} with {given('augment_copies', 0)}",
            fix=f"Pass {option_name('augment_copies')} 2 (two augmented copies per image besides the clean one).")
    return views


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
