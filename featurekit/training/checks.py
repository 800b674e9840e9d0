"""What a training request must satisfy before anything is built or written: the checked `TrainRequest`.

The options arrive validated against their declarations (type, bounds, choices: `featurekit.options`); what is
checked here depends on several settings at once, on the backbone, or on the data folder.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from featurekit.backbones import BackboneSpec
from featurekit.data import ImageFolder
from featurekit.errors import FeaturekitError, given
from featurekit.training.schedule import Schedule

# Only networks defined here can be trained from scratch; every registered Keras backbone (these included) can
# be fine-tuned from its weights above a layer (`unfreeze_from`).
TRAINABLE_BACKBONES = ("inceptionv1",)
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

    Epochs and patience are not in it: a resumed run may change them (the run's state holds them).

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
    image_size: int
    batch_size: int
    learning_rate: float
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


def make_request(options: dict[str, Any]) -> TrainRequest:
    """Refuse an untrainable backbone, an image size outside its range, and settings that do not go together.

    Args:
        options: The options of the `train_backbone` command, completed and validated (`options.complete`).

    Returns:
        The checked request (the learning rate resolved: 1e-3 from scratch, 1e-4 fine-tuning when None).
    """
    spec = _trainable_spec(options["backbone"], options["unfreeze_from"])
    spec.check_request(options["image_size"])  # the backbone's own check: an image size in its range
    if options["batch_size"] < 2:
        raise FeaturekitError("The batch size must be at least 2 (batch norm needs two images per batch).",
                              received=given("batch_size", options["batch_size"]),
                              fix="Use e.g. `batch_size` 32.")
    # Declared above 0: a learning rate that is not None is set.
    learning_rate = options["learning_rate"] or (
        SCRATCH_LEARNING_RATE if options["unfreeze_from"] is None else FINETUNE_LEARNING_RATE)
    schedule = Schedule(options["schedule"], learning_rate, options["epochs"], options["min_learning_rate"],
                        options["warmup_epochs"], options["plateau_factor"], options["plateau_patience"],
                        options["monitor"])
    resolved = dict(spec=spec, learning_rate=learning_rate, schedule=schedule, weights=str(options["weights"]),
                    augment_views=_augment_views(options))
    # The other settings as the options have them.
    return TrainRequest(**resolved, **{f.name: options[f.name] for f in fields(TrainRequest) if f.name not in resolved})


def _trainable_spec(backbone: str, unfreeze_from: str | None) -> BackboneSpec:
    from featurekit.backbones import get_spec, list_backbones

    # A network is an entry with weights to train (a hand-made feature has none).
    networks = [name for name in list_backbones(include_test=True) if "weights" in get_spec(name).request_options]
    if backbone in networks and (backbone in TRAINABLE_BACKBONES or unfreeze_from is not None):
        return get_spec(backbone)
    others = [n for n in list_backbones() if n not in TRAINABLE_BACKBONES and n in networks]
    if backbone in networks:
        problem = (f"Backbone {backbone!r} cannot be trained from scratch here: only {', '.join(TRAINABLE_BACKBONES)} "
                   f"can ({backbone} is used frozen, as it is, or fine-tuned from its weights above a layer).")
    elif backbone in list_backbones(include_test=True):
        problem = f"{backbone!r} is a {get_spec(backbone).kind}: it has no weights to train."
    else:
        problem = f"{backbone!r} is no registered backbone: only {', '.join(TRAINABLE_BACKBONES)} can be trained."
    raise FeaturekitError(
        problem, received=given("backbone", backbone),
        fix=f"Use `backbone` {TRAINABLE_BACKBONES[0]} to train from scratch, or fine-tune one of "
        f"{', '.join(others)} with `unfreeze_from` LAYER (e.g. inceptionv3 with mixed5).")


def _augment_views(options: dict[str, Any]) -> tuple[str, ...]:
    """The canonical augmentation views; refuse fine-tuning settings without `unfreeze_from`, views without copies."""
    from featurekit.views import parse_views

    views = tuple(view.name for view in parse_views(options["augment_views"]) if view is not None)
    copies = options["augment_copies"]
    if options["unfreeze_from"] is None:
        settings = {"weights": options["weights"], "top_layer": options["top_layer"], "augment_views": list(views),
                    "augment_copies": copies}  # each unset at "default", None, [] or 0
        given_settings = [given(name, value) for name, value in settings.items()
                          if value not in ("default", None, [], 0)]
        if given_settings:
            raise FeaturekitError(
                "These settings belong to fine-tuning, which starts from weights above a layer; training from "
                "scratch does not use them.", received=", ".join(given_settings),
                fix="Pass `unfreeze_from` LAYER to fine-tune, or leave them out.")
    if views and not copies:
        raise FeaturekitError(
            "Augmentation views are drawn into cached copies of the training images, and none was asked for.",
            received=f"{given('augment_views', list(views))} with {given('augment_copies', 0)}",
            fix="Pass `augment_copies` 2 (two augmented copies per image besides the clean one).")
    return views


def check_split_sizes(folder: ImageFolder) -> None:
    """Refuse a data folder whose train or valid split is too small to train or to judge an epoch."""
    counts = folder.split_counts()
    for split, least in (("train", MIN_TRAIN_IMAGES_PER_CLASS), ("valid", MIN_VALID_IMAGES_PER_CLASS)):
        if min(counts[split].values()) < least:
            raise FeaturekitError(
                f"Too few images to train: the {split} split needs at least {least} images of each class, "
                f"it has {counts_text(counts[split])}.",
                received=f"{given('data', str(folder.root))} ({len(folder.samples)} images, layout {folder.layout})",
                fix="Add images, or give that split a larger share with `split` (e.g. 0.7,0.15,0.15).",
            )


def counts_text(counts: dict[str, int]) -> str:
    """'20 real, 20 fake': a split's images per class."""
    return ", ".join(f"{n} {name}" for name, n in counts.items())
