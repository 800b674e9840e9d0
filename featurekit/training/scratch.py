"""Training InceptionV1 from scratch: the network (with its top) and shuffled, augmented image batches.

One of the two ways `featurekit.training.runner` trains (the other is `featurekit.training.finetune`); both
offer the same small interface: `identity`, `describe`, `build`, `datasets`, `warm_start`, `record`,
`saves_classifier`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from featurekit.data import ImageFolder, Sample
from featurekit.training.checks import TrainRequest


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
        from featurekit.training.model import build_classifier

        return build_classifier(self.request.image_size)

    def datasets(self, out: Path, folder: ImageFolder, train: list[Sample], valid: list[Sample],
                 log: Callable[[str], None]):
        from featurekit.training.batches import ImageBatches

        request = self.request
        return (ImageBatches(folder.root, [s.path for s in train], [s.label for s in train], request.image_size,
                             request.batch_size, train=True, seed=request.seed),
                ImageBatches(folder.root, [s.path for s in valid], [s.label for s in valid], request.image_size,
                             request.batch_size, train=False, seed=request.seed))

    def warm_start(self, train_batches, log: Callable[[str], None]) -> None:
        """Nothing to do before the first epoch: the network starts from its He initialisation."""

    def record(self) -> dict[str, Any]:
        """What training.json says (under `config`) about the network and its training, besides the identity."""
        from featurekit.training.model import BATCHNORM_MOMENTUM, TOP_DESCRIPTION

        return {"config": {
            "architecture": {"batch_norm": True, "width": 1.0, "input_size": self.request.image_size},
            "batchnorm_momentum": BATCHNORM_MOMENTUM, "top": TOP_DESCRIPTION,
            "augmentation": "train only: random horizontal flip, random crop of 7/8..1 of the side resized back"}}
