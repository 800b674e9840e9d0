"""Fine-tuning a pretrained backbone above a layer: the way of training `unfreeze_from` asks for.

    parent (registry backbone + weights) -> trunk (frozen, up to `unfreeze_from`; maps cached once per run)
                                          -> top (the layers above it, batch norm frozen; trains)
                                          -> head (mean+std or average pooling, dropout, Dense(1, sigmoid),
                                             initialised as a logistic regression on the parent's features)

The parent is built in planning, before anything is written, so an unknown layer or unusable weights are
refused first. The saved `<backbone>.keras` is the whole backbone: the trunk and any layers above `top_layer`
as the parent had them, the top with the best epoch's weights. Its `training.json` names the parent weights
(label and sha256) and the training images' hashes, so extraction labels it "fine-tuned from ..." and refuses
to score it on the images it trained on (see `featurekit.backbones.provenance`). Same interface as
`featurekit.training.model.ScratchTraining`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from featurekit.data import ImageFolder, Sample
from featurekit.training.checks import TrainRequest
from featurekit.training.state import TRUNK_DIR, model_file


class FineTuning:
    """The parent backbone cut at `request.unfreeze_from`, its top trained on the trunk's cached maps."""

    saves_classifier = False  # the head reads cached maps, not images: no standalone classifier to save

    def __init__(self, request: TrainRequest):
        from featurekit.backbones.loading import build_with_weights, weights_provenance
        from featurekit.training.layers_split import split_backbone

        self.request = request
        # build_with_weights seeds its own build (a random init is a function of the seed alone).
        self.parent = weights_provenance(request.spec, request.weights, request.seed)
        self.backbone = build_with_weights(request.spec, request.weights, request.image_size, request.seed)
        self.trunk, self.top, self.top_layer = split_backbone(self.backbone, request.backbone, request.unfreeze_from,
                                                              request.top_layer)

    def identity(self) -> dict[str, Any]:
        request = self.request
        return {"parent_weights_sha256": self.parent["weights_sha256"], "parent_weights_label":
                self.parent["weights_label"], "unfreeze_from": request.unfreeze_from, "top_layer": self.top_layer,
                "head_pooling": request.head_pooling, "augment_views": list(request.augment_views),
                "augment_copies": request.augment_copies}

    def describe(self) -> str:
        request = self.request
        augment = (f", {request.augment_copies} augmented copies per image (flip"
                   + (f", one of {', '.join(request.augment_views)}" if request.augment_views else "") + ")"
                   if request.augment_copies else ", no augmentation")
        return (f"Fine-tuning {request.backbone} ({self.parent['weights_label']}) above {request.unfreeze_from} up to "
                f"{self.top_layer}, batch norm frozen, {request.head_pooling} head{augment}")

    def build(self):
        """(head over the top, reading cached maps; the whole backbone, whose top layers the head trains)."""
        from featurekit.training.layers_split import build_head

        self.classifier = build_head(self.top, self.request.head_pooling, self.request.seed)
        self.trained_layers = [layer.name for layer in self.top.layers if layer.trainable_weights]
        return self.classifier, self.backbone

    def warm_start(self, train_batches, log: Callable[[str], None]) -> None:
        """Before the first epoch: the head as a logistic regression on the parent's features (LP-FT)."""
        from featurekit.training.layers_split import linear_probe_init

        accuracy = linear_probe_init(self.classifier, train_batches.versions[0], train_batches.labels,
                                     self.request.batch_size)
        log(f"Head initialised as a logistic regression on the parent's pooled {self.top_layer} features of the "
            f"clean training images (train accuracy {accuracy:.3f}); then every layer above "
            f"{self.request.unfreeze_from} fine-tunes.")

    def datasets(self, out: Path, folder: ImageFolder, train: list[Sample], valid: list[Sample],
                 log: Callable[[str], None]):
        from featurekit.training.trunk_maps import AugmentedCopy, MapBatches, trunk_maps

        request = self.request
        log(f"The frozen trunk's maps (up to {request.unfreeze_from}): computed once per run, in {out / TRUNK_DIR}.")

        def maps(samples: list[Sample], split: str, copy: int):
            decoder = AugmentedCopy(str(folder.root), copy, request.seed, request.augment_views)
            return trunk_maps(self.trunk, request.spec.preprocessing, out / TRUNK_DIR, folder.root,
                              [s.path for s in samples], f"{split}-{copy}", decoder, request.image_size,
                              request.batch_size, log)

        train_versions = [maps(train, "train", copy) for copy in range(request.augment_copies + 1)]
        return (MapBatches(train_versions, [s.label for s in train], request.batch_size, True, request.seed),
                MapBatches([maps(valid, "valid", 0)], [s.label for s in valid], request.batch_size, False,
                           request.seed))

    def record(self) -> dict[str, Any]:
        """training.json's `parent` (what was fine-tuned) and what `config` says about the fine-tuning."""
        from featurekit.training.layers_split import HEAD_DROPOUT, STD_EPSILON

        pooling = (f"mean+std over positions (epsilon {STD_EPSILON:g} inside the square root)"
                   if self.request.head_pooling == "meanstd" else "average over positions")
        return {
            "parent": {key: self.parent[key] for key in ("weights", "weights_label", "weights_sha256",
                                                         "architecture_variant")},
            "config": {
                "trained_layers": self.trained_layers,
                "batchnorm": "frozen: the top's batch-norm layers run in inference mode with the parent's statistics",
                "top": f"{pooling} -> standardisation -> Dropout({HEAD_DROPOUT}) -> Dense(1, sigmoid); dropped from "
                       f"{model_file(self.request.backbone)}",
                "trunk": f"{self.request.unfreeze_from} output maps computed once per run, cached as float16",
                "head_init": "standardisation (a Normalization layer) and logistic regression (C=1) fitted on the "
                             "parent's pooled features of the clean training images, then fine-tuned with the top "
                             "(LP-FT)",
                "augmentation": (f"{self.request.augment_copies} cached copies per training image: random "
                                 "horizontal flip and one of augment_views, drawn per image and copy; each epoch "
                                 "draws the clean image or one copy per image" if self.request.augment_copies
                                 else "none"),
            },
        }
