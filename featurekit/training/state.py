"""The output folder of a training run: its files, its lock, and the state an interrupted run resumes from.

Once finished the folder holds `<backbone>.keras` (`inceptionv1.keras`), `classifier.keras` (optional) and
`training.json` (the finished marker). While a run is unfinished it holds `progress.json` (history, best epoch,
early-stopping count), `best-epochNNN.npz` (the best epoch's weights), `backup/` (Keras' BackupAndRestore:
weights and optimizer state after the last finished epoch) and, when fine-tuning, `trunk/` (the frozen trunk's
output maps, computed once per run). Every file is written through `featurekit.fsutil`: under a
temporary name, fsynced, renamed, so a kill at any moment leaves the previous complete file.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.errors import FeaturekitError, given
from featurekit.fsutil import atomic_write_bytes, atomic_write_json

CLASSIFIER_FILE = "classifier.keras"
RESULT_FILE = "training.json"
PROGRESS_FILE = "progress.json"
BACKUP_DIR = "backup"
TRUNK_DIR = "trunk"
LOCK_FILE = ".lock"
BEST_WEIGHTS_GLOB = "best-epoch*.npz"
# What an unfinished run from before a key existed had (its progress.json lacks the key).
LEGACY_IDENTITY = {"schedule": {"name": "constant"}}


def write_weights(path: Path, weights: list[np.ndarray]) -> None:
    """A model's arrays as `.npz` (arrays only: nothing in it can run code when loaded), atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, *weights)
    atomic_write_bytes(path, buffer.getvalue())


def read_weights(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def model_file(backbone: str) -> str:
    """The saved backbone's file name in a run's folder: `<backbone>.keras`."""
    return f"{backbone}.keras"


def remove_unfinished_files(out: Path) -> None:
    """What only an unfinished run needs: progress.json, best-epoch weights, Keras' backup and the trunk's maps."""
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    for path in out.glob(BEST_WEIGHTS_GLOB):
        path.unlink()
    for folder in (BACKUP_DIR, TRUNK_DIR):
        if not (out / folder).is_symlink():  # never follow a link planted in place of our folder
            shutil.rmtree(out / folder, ignore_errors=True)


def prepare_out(out: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Refuse a finished run, start afresh, or load the state of an unfinished run with the same settings.

    Args:
        out: The run's folder.
        identity: The settings a resumed run must share with the interrupted one (backbone, image size, batch
            size, learning rate, schedule, seed, monitor, split, data; a fine-tuning adds its own: parent
            weights, layers, augmentation). Epochs and patience may change, except that a cosine schedule's length
            is part of `schedule` (see `featurekit.training.schedule.Schedule.identity`).
        overwrite: Remove a finished or unfinished run's files first.
    """
    result_path, progress_path = out / RESULT_FILE, out / PROGRESS_FILE
    if overwrite:
        for name in (model_file(identity["backbone"]), CLASSIFIER_FILE, RESULT_FILE):
            (out / name).unlink(missing_ok=True)
        remove_unfinished_files(out)
    if result_path.exists():
        finished = json.loads(result_path.read_text())
        raise FeaturekitError(
            f"{out} holds a finished training run (best epoch {finished.get('best_epoch')}, valid accuracy "
            f"{finished.get('best_valid_accuracy', float('nan')):.3f}).",
            received=given("out", str(out)),
            fix=f"Use its {model_file(identity['backbone'])} as it is, pass `overwrite` to train "
            "again, or pass another `out`.",
        )
    if progress_path.exists():
        state = json.loads(progress_path.read_text())
        stored = {**LEGACY_IDENTITY, **state["identity"]}
        differences = [f"{key} {stored.get(key)!r} (interrupted run) vs {identity.get(key)!r} (now)"
                       for key in [*identity, *sorted(set(stored) - set(identity))]
                       if stored.get(key) != identity.get(key)]
        if differences:
            cosine_changed = stored["schedule"].get("name") == "cosine" and stored["schedule"] != identity["schedule"]
            note = (" A cosine schedule decays over the run's epochs, so they are part of it: resuming with other "
                    "epochs would change the rate of every epoch.") if cosine_changed else ""
            raise FeaturekitError(
                f"{out} holds an unfinished training run with other settings: {'; '.join(differences)}.{note}",
                received=given("out", str(out)),
                fix="Re-run with the interrupted run's settings to resume it, pass `overwrite` to "
                "discard it, or pass another `out`.",
            )
        state["identity"] = identity  # the same settings, with any key the interrupted run predates
        return state
    state = {"identity": identity, "history": {}, "best": None, "wait": 0, "stopped_early": False,
             "fit_finished": False, "seconds": 0.0, "resumed_from": []}
    atomic_write_json(progress_path, state)
    return state


def backup_epochs(out: Path) -> int:
    """Epochs finished according to BackupAndRestore's metadata (0 when there is no backup)."""
    metadata = out / BACKUP_DIR / "training_metadata.json"
    for path in (metadata, Path(f"{metadata}.bkp")):
        try:
            return int(json.loads(path.read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            pass
    return 0
