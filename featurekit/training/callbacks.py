"""The Keras callback that records a training run: history, best epoch, early stopping, progress.json.

Keras' own EarlyStopping keeps its count and best weights in memory, so a resumed run would forget them;
this callback keeps them in `progress.json` (and the best weights in `best-epochNNN.npz`), written after
every epoch before BackupAndRestore backs that epoch up, so a run killed at any moment resumes with the
same best epoch and patience count.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from featurekit.fsutil import atomic_write_json
from featurekit.training.state import BEST_WEIGHTS_GLOB, PROGRESS_FILE, write_weights

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


class ProgressRecorder(keras.callbacks.Callback):
    """Records each epoch into `state`, keeps the best epoch's weights, stops early, saves progress.json.

    Args:
        out: The run's folder.
        state: The run's state (see `featurekit.training.state.prepare_out`), updated in place.
        images_per_epoch: Training images per epoch (for the images/s figure).
        since: The `time.perf_counter()` the run's seconds count from (earlier calls' seconds included).
        log: Where the one line per epoch goes.
    """

    def __init__(self, out: Path, state: dict[str, Any], images_per_epoch: int, since: float,
                 log: Callable[[str], None]):
        super().__init__()
        self.out, self.state, self.images_per_epoch, self.since, self.log = out, state, images_per_epoch, since, log

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_started = time.perf_counter()
        self._train_seconds: float | None = None  # set when validation begins

    def on_test_begin(self, logs: dict | None = None) -> None:
        # fit() validates after the training steps of an epoch: this splits the epoch's time.
        self._train_seconds = time.perf_counter() - self._epoch_started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        state, out = self.state, self.out
        monitor, epochs, patience = state["identity"]["monitor"], state["epochs"], state["patience"]
        now = time.perf_counter()
        epoch_seconds = now - self._epoch_started
        train_seconds = self._train_seconds or epoch_seconds
        row = {**{key: float(logs[key]) for key in HISTORY_KEYS},
               # The rate this epoch trained at (the schedule sets it when an epoch begins and only then).
               "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
               "epoch_seconds": epoch_seconds, "train_seconds": train_seconds,
               "train_images_per_second": self.images_per_epoch / train_seconds}
        # A resumed run may redo an epoch whose backup did not finish: its row is replaced.
        state["history"] |= {key: state["history"].get(key, [])[:epoch] + [value] for key, value in row.items()}
        marker, lower_is_better = "", monitor == "val_loss"
        best = state["best"]["value"] if state["best"] else (math.inf if lower_is_better else -math.inf)
        if row[monitor] < best if lower_is_better else row[monitor] > best:  # a NaN is never better
            # The model's arrays only (save_weights would add Adam's two slots per weight: 3x the bytes).
            weights = out / f"best-epoch{epoch + 1:03d}.npz"
            write_weights(weights, self.model.get_weights())
            state["best"] = {"epoch": epoch + 1, "value": row[monitor], "val_loss": row["val_loss"],
                             "val_accuracy": row["val_accuracy"], "weights": weights.name}
            state["wait"] = 0
            marker = "  (best)"
        else:
            state["wait"] += 1
            if state["wait"] >= patience:
                state["stopped_early"] = True
                self.model.stop_training = True
        state["seconds"] = now - self.since
        # progress.json names the new best file only once it is complete; then the old one can go.
        atomic_write_json(out / PROGRESS_FILE, state)  # fsynced: a kill leaves the previous file
        keep = state["best"]["weights"] if state["best"] else None
        for path in out.glob(BEST_WEIGHTS_GLOB):
            if path.name != keep:
                path.unlink(missing_ok=True)
        self.log(f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.3f}, "
                 f"val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.3f}, "
                 f"learning rate {row['learning_rate']:.3g}, "
                 f"{epoch_seconds:.0f} s ({row['train_images_per_second']:.1f} train images/s){marker}")
        if state["stopped_early"] and state["best"]:
            self.log(f"Early stop: {monitor} did not improve for {patience} epochs; keeping epoch "
                     f"{state['best']['epoch']}.")
        sys.stdout.flush()  # `log=print` into a pipe or file is block-buffered: each epoch shows when it ends

    def on_train_end(self, logs: dict | None = None) -> None:
        # Runs before BackupAndRestore deletes its backup, so a kill from here on never restarts at epoch 1.
        self.state["fit_finished"] = True
        self.state["seconds"] = time.perf_counter() - self.since
        atomic_write_json(self.out / PROGRESS_FILE, self.state)
