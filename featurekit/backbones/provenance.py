"""What a trained backbone was trained on, so its features are labelled and never scored on its own images.

`train-backbone` records in `training.json`, beside `<backbone>.keras`, the data folder's fingerprint, the
split assignment and the sha256 of every image it trained on, the sha256 of the saved file, and for a
fine-tuned backbone its parent weights (label and sha256). When that
file is used for extraction, `training_record_for` finds the record (the file's own sha256 must match, so a
record never describes another file), the weights are labelled "inceptionv1 trained on faces (train split,
1230 images, epoch 7)" or "inceptionv3 fine-tuned from ImageNet (InceptionV3 2015-12-05) (sha256 1fa8305f4f56)
above mixed5 on faces (...)", and `train_overlap` counts the extraction's valid and test images the backbone has
seen in training (matched by content, so copies and renamed files count too).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from featurekit.data import ImageFolder, Sample

RECORD_FILE = "training.json"  # the same name as featurekit.training.state.RESULT_FILE
# The splits of an extraction on which a probe is judged: images the backbone trained on must not be there.
JUDGED_SPLITS = ("valid", "test")


def data_record(folder: ImageFolder, split_fractions: tuple[float, float, float], train: list[Sample],
                valid: list[Sample], skipped: list[tuple[str, str]]) -> dict[str, Any]:
    """training.json's `data`: where the images came from and exactly which ones trained and validated.

    Args:
        folder: The scanned data folder.
        split_fractions: The fractions that assigned splits (class-folder layout).
        train: The training images used (decodable ones).
        valid: The validation images used.
        skipped: (path, reason) of files that did not decode.
    """
    train_sha, valid_sha = sorted({s.sha256 for s in train}), sorted({s.sha256 for s in valid})
    lines = [f"{split}\t{sha}\n" for split, hashes in (("train", train_sha), ("valid", valid_sha)) for sha in hashes]
    return {
        "root": str(folder.root.resolve()), "name": folder.root.resolve().name, "layout": folder.layout,
        "fingerprint": folder.fingerprint(), "split_fractions": list(split_fractions),
        "class_names": list(folder.class_names), "split_counts": folder.split_counts(), "train_images": len(train),
        "valid_images": len(valid), "images_digest": hashlib.sha256("".join(lines).encode()).hexdigest(),
        "train_sha256": train_sha, "valid_sha256": valid_sha, "skipped": [list(item) for item in skipped],
    }


def trained_label(record: dict[str, Any]) -> str:
    """The weights label of a trained backbone: what (fine-tuned from which parent weights, above which layer),
    on which data, how many images, which epoch."""
    data, config, parent = record.get("data", {}), record.get("config", {}), record.get("parent")
    backbone = config.get("backbone", "inceptionv1")
    trained = "trained"
    if parent:
        sha = parent.get("weights_sha256", "")[:12] or "-"
        trained = (f"fine-tuned from {parent.get('weights_label', '?')} (sha256 {sha}) above "
                   f"{config.get('unfreeze_from', '?')}")
    return (f"{backbone} {trained} on {data.get('name', '?')} (train split, {data.get('train_images', '?')} images, "
            f"epoch {record.get('best_epoch', '?')})")


def training_record_for(weights: str, weights_sha256: str) -> dict[str, Any] | None:
    """The training.json beside a `.keras` weights file made by train-backbone, if it describes this file.

    Args:
        weights: The weights request (a path, or "imagenet" / "none").
        weights_sha256: sha256 of the file's bytes.

    Returns:
        The parsed record, or None (not a .keras file, no record beside it, or a record of another file).
    """
    path = Path(str(weights)).expanduser()
    if path.suffix != ".keras" or not weights_sha256:
        return None
    try:
        record = json.loads((path.parent / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("model_sha256") == weights_sha256 else None


def train_overlap(record: dict[str, Any], samples: list[Sample]) -> dict[str, int]:
    """How many of an extraction's valid and test images the backbone was trained on, per split."""
    trained = set(record.get("data", {}).get("train_sha256", []))
    return {split: sum(s.split == split and s.sha256 in trained for s in samples) for split in JUDGED_SPLITS}
