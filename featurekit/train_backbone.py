"""`train-backbone`: train InceptionV1 from scratch (the implementation lives in `featurekit.training`).

Kept as the stable import path of the command and its callers: `train_backbone`, `train_from_options`,
`finished_model`, `default_out_dir`, `TrainResult` and the names of the files a run writes.
"""

from __future__ import annotations

from featurekit.training.checks import MONITORS, TRAINABLE_BACKBONES
from featurekit.training.runner import TrainResult, default_out_dir, finished_model, train_backbone, train_from_options
from featurekit.training.state import (
    BACKUP_DIR,
    CLASSIFIER_FILE,
    IDENTITY_KEYS,
    MODEL_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
)

__all__ = [
    "BACKUP_DIR", "CLASSIFIER_FILE", "IDENTITY_KEYS", "MODEL_FILE", "MONITORS", "PROGRESS_FILE", "RESULT_FILE",
    "TRAINABLE_BACKBONES", "TrainResult", "default_out_dir", "finished_model", "train_backbone", "train_from_options",
]
