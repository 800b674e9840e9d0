"""Training InceptionV1 from scratch (`ScratchTraining`): the network, with the "tf" preprocessing in front and a
small binary top, trained end to end on shuffled, augmented image batches.

    uint8 image -> Rescaling to [-1, 1] ("tf" mode) -> InceptionV1 -> GlobalAveragePooling
                -> Dense(512, relu) -> Dropout(0.5) -> Dense(1, sigmoid)

The backbone alone, with the best epoch's weights, is what extraction uses afterwards; the top is dropped.
`ScratchTraining` is one of the two ways `featurekit.training.runner` trains (the other is
`featurekit.training.finetune.FineTuning`); both offer the same small interface: `identity`, `describe`, `build`,
`datasets`, `warm_start`, `record`, `saves_classifier`. Also here: parameter counts, which both ways use.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras

from featurekit.data import ImageFolder, Sample
from featurekit.training.checks import TrainRequest

HEAD_UNITS = 512
HEAD_DROPOUT = 0.5
# Keras' default batch-norm momentum, 0.99, averages the inference statistics over ~100 steps: with ~40
# steps an epoch they lag the changing weights by epochs, and validation (inference mode) misjudges the
# network (val_loss 40 after epoch 1 on 1,230 faces; early stopping then keeps a poor epoch). 0.9 averages
# over ~10 steps. Momentum only shapes training updates: the saved files are unaffected.
BATCHNORM_MOMENTUM = 0.9


def build_classifier(image_size: int) -> tuple[keras.Model, keras.Model]:
    """InceptionV1 with the "tf" preprocessing in front and the small binary top; returns (classifier, backbone)."""
    from featurekit.backbones.inception_v1 import InceptionV1

    # The class defaults (batch_norm=True, width=1.0) are what the registered `inceptionv1` builds, so
    # extraction accepts the saved file.
    backbone = InceptionV1(input_size=image_size)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BATCHNORM_MOMENTUM
    inputs = keras.Input((image_size, image_size, 3), name="image")
    # x / 127.5 - 1 as a layer (not a Lambda), so classifier.keras loads with safe_mode=True.
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_tf")(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(HEAD_UNITS, activation="relu", kernel_initializer="he_normal", name="head_dense")(x)
    x = keras.layers.Dropout(HEAD_DROPOUT, name="head_dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="head_output")(x)
    return keras.Model(inputs, outputs, name="inceptionv1_classifier"), backbone


class ScratchTraining:
    """InceptionV1 with He init and batch norm, trained end to end on the images (flips and small crops)."""

    saves_classifier = True

    def __init__(self, request: TrainRequest):
        self.request = request

    def identity(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return f"Training {self.request.backbone} from scratch"

    def build(self):
        """(classifier images -> P(fake), backbone); the backbone's layers are the classifier's."""
        return build_classifier(self.request.image_size)

    def datasets(self, out: Path, folder: ImageFolder, train: list[Sample], valid: list[Sample], log):
        from featurekit.training.batches import ImageBatches

        request = self.request
        return tuple(ImageBatches(folder.root, [s.path for s in samples], [s.label for s in samples],
                                  request.image_size, request.batch_size, train=training, seed=request.seed)
                     for samples, training in ((train, True), (valid, False)))

    def warm_start(self, train_batches, log) -> None:
        """Nothing to do before the first epoch: the network starts from its He initialisation."""

    def record(self) -> dict[str, Any]:
        """What training.json says (under `config`) about the network and its training, besides the identity."""
        return {"config": {
            "architecture": {"batch_norm": True, "width": 1.0, "input_size": self.request.image_size},
            "batchnorm_momentum": BATCHNORM_MOMENTUM,
            "top": f"GlobalAveragePooling2D -> Dense({HEAD_UNITS}, relu) -> Dropout({HEAD_DROPOUT}) -> "
                   "Dense(1, sigmoid); dropped from inceptionv1.keras",
            "augmentation": "train only: random horizontal flip, random crop of 7/8..1 of the side resized back"}}


def param_counts(classifier: keras.Model, backbone: keras.Model) -> dict[str, int]:
    """Parameters of the backbone, the top (the classifier's own weights outside the backbone) and the whole
    network (trainable, and batch-norm statistics). A fine-tuned classifier holds only part of the backbone."""
    def count(weights) -> int:
        return sum(math.prod(w.shape) for w in weights)

    in_backbone = {id(w) for w in backbone.weights}
    backbone_total = int(backbone.count_params())
    top = count(w for w in classifier.weights if id(w) not in in_backbone)
    return {
        "backbone": backbone_total,
        "backbone_trainable": count(w for w in classifier.trainable_weights if id(w) in in_backbone),
        "backbone_batchnorm_statistics": count(w for w in backbone.weights
                                               if w.path.split("/")[-1].startswith("moving_")),
        "top": top,
        "total": backbone_total + top,
        "total_trainable": count(classifier.trainable_weights),
    }
