"""Train a backbone from scratch on an image folder, so it can then serve as a frozen feature extractor.

The original study trained its InceptionV1 (no batch norm) for one epoch and got a constant classifier
(test loss ln 2, accuracy 0.50): a network without pretrained weights is useless as a feature extractor
until it is trained. Here the network (with batch norm and He init, as `InceptionV1` provides) gets a
small classification top,

    uint8 image -> Rescaling to [-1, 1] ("tf" mode) -> InceptionV1 -> GlobalAveragePooling
                -> Dense(512, relu) -> Dropout(0.5) -> Dense(1, sigmoid)

is trained end to end with Adam and binary cross-entropy on the `train` split (flips and small crops),
early-stopped on `valid`, and the backbone alone, with the best epoch's weights, is saved as
`inceptionv1.keras` for `extract --backbone inceptionv1 --weights PATH`.

The output folder holds, once finished: `inceptionv1.keras`, `classifier.keras` (optional) and
`training.json` (the finished marker). While a run is unfinished it holds `progress.json` (history,
best epoch, early-stopping count), `best-epochNNN.npz` (the best epoch's weights) and `backup/` (Keras'
BackupAndRestore: weights and optimizer state after the last finished epoch). Calling `train_backbone`
again with the same settings resumes from the last finished epoch. The resumed epochs see other (still
seeded) shuffles and augmentations than an uninterrupted run would: a resumed run is comparable, not
bit-identical.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from featurekit.data import DEFAULT_SPLIT_FRACTIONS, ImageFolder, scan_image_folder
from featurekit.errors import FeaturekitError

# Only networks defined here can be trained from scratch; the keras.applications backbones are used with
# their (near-)ImageNet weights, frozen.
TRAINABLE_BACKBONES = ("inceptionv1",)
MONITORS = ("val_loss", "val_accuracy")
# Below these counts a split cannot train (batch norm needs a few images per class) or judge an epoch.
MIN_TRAIN_IMAGES_PER_CLASS = 8
MIN_VALID_IMAGES_PER_CLASS = 2
HEAD_UNITS = 512
HEAD_DROPOUT = 0.5
# Keras' default batch-norm momentum, 0.99, averages the inference statistics over ~100 steps: with ~40
# steps an epoch they lag the changing weights by epochs, and validation (inference mode) misjudges the
# network (val_loss 40 after epoch 1 on 1,230 faces; early stopping then keeps a poor epoch). 0.9 averages
# over ~10 steps. Momentum only shapes training updates: the saved files are unaffected.
BATCHNORM_MOMENTUM = 0.9

MODEL_FILE = "inceptionv1.keras"
CLASSIFIER_FILE = "classifier.keras"
RESULT_FILE = "training.json"
PROGRESS_FILE = "progress.json"
BACKUP_DIR = "backup"
LOCK_FILE = ".lock"
BEST_WEIGHTS_GLOB = "best-epoch*.npz"
# Settings a resumed run must share with the interrupted one; epochs and patience may change.
IDENTITY_KEYS = ("backbone", "image_size", "batch_size", "learning_rate", "seed", "monitor",
                 "split_fractions", "data_fingerprint")


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        model_path: The saved backbone (`inceptionv1.keras`), best epoch's weights.
        best_epoch: 1-based epoch whose weights were kept.
        best_valid_accuracy: Validation accuracy at the best epoch.
        best_valid_loss: Validation loss at the best epoch.
        epochs_run: Epochs finished, over all calls of an interrupted and resumed run.
        history: Per-epoch lists: loss, accuracy, val_loss, val_accuracy, epoch_seconds, train_seconds,
            train_images_per_second.
        seconds: Wall-clock seconds of all calls, model building and saving included.
        train_images_per_second: Median over epochs of train images / seconds of the training phase (the
            median ignores the first epoch of a call, which also traces the graph).
        seconds_to_best: Summed epoch seconds (training and validation) up to the end of the best epoch.
        out: The output folder.
        stopped_early: Whether early stopping ended the run before `epochs`.
        resumed_from: 0-based epochs already finished when each resuming call started (empty if none).
        params: Parameter counts of the backbone, the top and the whole trained network.
    """

    model_path: Path
    best_epoch: int
    best_valid_accuracy: float
    best_valid_loss: float
    epochs_run: int
    history: dict[str, list[float]]
    seconds: float
    train_images_per_second: float
    seconds_to_best: float
    out: Path
    stopped_early: bool = False
    resumed_from: list[int] = field(default_factory=list)
    params: dict[str, int] = field(default_factory=dict)


def default_out_dir(data: str | Path, backbone: str, image_size: int, runs_dir: str | Path = "runs") -> Path:
    """``runs/<backbone>-<data-folder-name>-<image_size>/``."""
    name = Path(data).expanduser().resolve().name
    return Path(runs_dir) / f"{backbone}-{name}-{image_size}"


def train_backbone(
    data: str | Path,
    backbone: str = "inceptionv1",
    epochs: int = 30,
    image_size: int = 224,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    patience: int = 5,
    seed: int = 0,
    out: str | Path | None = None,
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
    log: Callable[[str], None] = print,
    progress: bool = True,
    overwrite: bool = False,
    monitor: str = "val_loss",
    save_classifier: bool = True,
    callbacks: list | None = None,
    config: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `backbone` from scratch with a small binary top; save the backbone with its best weights.

    Args:
        data: Data folder (`DIR/<class>/...` or `DIR/{train,valid,test}/<class>/...`).
        backbone: Registry name; only names in TRAINABLE_BACKBONES can be trained.
        epochs: Most epochs to run (early stopping may end sooner).
        image_size: Square input size in pixels the network is trained at.
        batch_size: Images per training step (at least 2: batch norm).
        learning_rate: Adam's learning rate.
        patience: Epochs without improvement of `monitor` before training stops.
        seed: Seed of initialisation, dropout, shuffling and augmentation.
        out: Output folder; default `runs/<backbone>-<data-folder-name>-<image_size>/`.
        split_fractions: train/valid/test fractions for the class-folder layout.
        log: Where messages go, one line per epoch included.
        progress: Keras' progress bar within each epoch (on a terminal only; the per-epoch line goes to
            `log` either way).
        overwrite: Replace a finished run, or discard an unfinished one, in `out` instead of refusing or
            resuming.
        monitor: "val_loss" or "val_accuracy": what picks the best epoch and drives early stopping.
        save_classifier: Also save the whole trained network (with its top) as `classifier.keras`.
        callbacks: Extra Keras callbacks, called after the ones that record progress and back up.
        config: The resolved config of the command, stored in training.json.

    Returns:
        The TrainResult; the same is written to `out/training.json`.

    Raises:
        FeaturekitError: An untrainable backbone, too small an image size, too few images in train or
            valid, a finished run in `out` (without overwrite), or an unfinished run there with other
            settings.
    """
    started = time.perf_counter()
    spec = _check_request(backbone, epochs, image_size, batch_size, learning_rate, patience, monitor)
    folder = scan_image_folder(data, split_fractions)
    counts = folder.split_counts()
    _check_split_sizes(folder, counts)
    out = Path(out) if out is not None else default_out_dir(folder.root, backbone, image_size)
    identity = {
        "backbone": backbone, "image_size": image_size, "batch_size": batch_size,
        "learning_rate": learning_rate, "seed": seed, "monitor": monitor,
        "split_fractions": list(split_fractions), "data_fingerprint": folder.fingerprint(),
    }
    out.mkdir(parents=True, exist_ok=True)
    with _out_lock(out):
        state = _prepare_out(out, identity, overwrite)
        state["epochs"], state["patience"], state["config"] = epochs, patience, config or {}
        return _train(folder, counts, spec, out, state, save_classifier, callbacks or [], progress, log, started)


def train_from_options(options: dict[str, Any], log: Callable[[str], None] = print,
                       progress: bool = True) -> TrainResult:
    """`train_backbone` with a resolved config (see featurekit.config.TRAIN_BACKBONE_DEFAULTS), stored in
    training.json.

    Args:
        options: data, backbone, epochs, image_size, batch_size, learning_rate, patience, seed, out, runs_dir,
            split ("0.7,0.15,0.15" or three numbers), monitor, overwrite.
        log: Where messages go.
        progress: Keras' progress bar within each epoch (on a terminal).

    Returns:
        The TrainResult.
    """
    from featurekit.config import parse_split_fractions

    if options.get("data") in (None, ""):
        raise FeaturekitError("Missing option --data.", received="no value on the command line or in --config",
                              fix="Pass it, e.g. --data DIR, or set `data` in a --config file.")
    stored = {key: (str(value) if isinstance(value, Path) else value) for key, value in options.items()}
    return train_backbone(
        data=options["data"], backbone=options["backbone"], epochs=options["epochs"],
        image_size=options["image_size"], batch_size=options["batch_size"], learning_rate=options["learning_rate"],
        patience=options["patience"], seed=options["seed"], out=_out_from_options(options),
        split_fractions=parse_split_fractions(options["split"]), log=log, progress=progress,
        overwrite=bool(options["overwrite"]), monitor=options["monitor"], config=stored)


def finished_model(options: dict[str, Any]) -> Path | None:
    """The backbone file of a finished run for these options, or None when there is none to reuse.

    Args:
        options: As for `train_from_options`; `out` (else runs_dir, data, backbone and image_size) locates the
            run, whose training.json must say it finished with the same backbone and image size.

    Returns:
        Path of `inceptionv1.keras`, or None.
    """
    out = _out_from_options(options)
    record_path, model_path = out / RESULT_FILE, out / MODEL_FILE
    if not (record_path.is_file() and model_path.is_file()):
        return None
    config = json.loads(record_path.read_text()).get("config", {})
    if config.get("backbone") != options["backbone"] or config.get("image_size") != options["image_size"]:
        return None  # training then refuses the folder, naming the finished run in it
    return model_path


def _out_from_options(options: dict[str, Any]) -> Path:
    if options.get("out"):
        return Path(options["out"])
    return default_out_dir(options["data"], options["backbone"], options["image_size"], options.get("runs_dir") or "runs")


def _check_request(backbone: str, epochs: int, image_size: int, batch_size: int, learning_rate: float,
                   patience: int, monitor: str):
    from featurekit.backbones import get_spec, list_backbones

    if backbone not in TRAINABLE_BACKBONES:
        known = backbone in list_backbones(include_test=True)
        others = [n for n in list_backbones() if n not in TRAINABLE_BACKBONES]
        raise FeaturekitError(
            f"Backbone {backbone!r} cannot be trained from scratch here: only "
            f"{', '.join(TRAINABLE_BACKBONES)} can"
            + (f" ({backbone} is used frozen, as it is)." if known else f" ({backbone!r} is no registered backbone)."),
            received=f"--backbone {backbone}",
            fix=f"Use --backbone {TRAINABLE_BACKBONES[0]}; the other backbones ({', '.join(others)}) need no "
            "training: use them directly with `python cli.py extract`.",
        )
    spec = get_spec(backbone)
    if image_size < spec.min_input_size:
        raise FeaturekitError(
            f"Backbone {backbone!r} needs inputs of at least {spec.min_input_size}x{spec.min_input_size} pixels.",
            received=f"--image-size {image_size}",
            fix=f"Use --image-size {spec.min_input_size} or more (native: {spec.input_size}; on a CPU, 128 is a "
            "good compromise).",
        )
    for name, value, least, example in (("epochs", epochs, 1, 30), ("batch size", batch_size, 2, 32),
                                        ("patience", patience, 1, 5)):
        if value < least:
            why = " (batch norm needs at least two images per batch)" if name == "batch size" else ""
            raise FeaturekitError(f"The {name} must be at least {least}{why}.",
                                  received=f"--{name.replace(' ', '-')} {value}",
                                  fix=f"Use e.g. --{name.replace(' ', '-')} {example}.")
    if not learning_rate > 0:
        raise FeaturekitError("The learning rate must be positive.", received=f"--learning-rate {learning_rate}",
                              fix="Use e.g. --learning-rate 0.001.")
    if monitor not in MONITORS:
        raise FeaturekitError(f"Unknown monitor {monitor!r}.", received=f"--monitor {monitor}",
                              fix=f"Use one of: {', '.join(MONITORS)}.")
    return spec


def _check_split_sizes(folder: ImageFolder, counts: dict[str, dict[str, int]]) -> None:
    for split, least in (("train", MIN_TRAIN_IMAGES_PER_CLASS), ("valid", MIN_VALID_IMAGES_PER_CLASS)):
        found = counts[split]
        if min(found.values()) < least:
            have = ", ".join(f"{n} {name}" for name, n in found.items())
            raise FeaturekitError(
                f"Too few images to train: the {split} split needs at least {least} images of each class, "
                f"it has {have}.",
                received=f"--data {folder.root} ({len(folder.samples)} images, layout {folder.layout})",
                fix="Add images, or give that split a larger share with --split (e.g. 0.7,0.15,0.15).",
            )


@contextmanager
def _out_lock(out: Path) -> Iterator[None]:
    # Two runs writing one folder would interleave backups; flock is released by the kernel even on SIGKILL.
    with open(out / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FeaturekitError(
                "Another process is training into this folder right now.",
                received=f"--out {out}",
                fix="Wait for it to finish, or pass another --out.",
            ) from None
        yield


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    # Write-then-rename: a kill mid-write leaves the previous file, never half a file.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(partial, path)


def _remove_run_files(out: Path) -> None:
    for name in (MODEL_FILE, CLASSIFIER_FILE, RESULT_FILE, PROGRESS_FILE):
        (out / name).unlink(missing_ok=True)
    for path in out.glob(BEST_WEIGHTS_GLOB):
        path.unlink()
    shutil.rmtree(out / BACKUP_DIR, ignore_errors=True)


def _prepare_out(out: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Refuse a finished run, start afresh, or load the state of an unfinished run with the same settings."""
    result_path, progress_path = out / RESULT_FILE, out / PROGRESS_FILE
    if overwrite:
        _remove_run_files(out)
    if result_path.exists():
        finished = json.loads(result_path.read_text())
        raise FeaturekitError(
            f"{out} holds a finished training run (best epoch {finished.get('best_epoch')}, valid accuracy "
            f"{finished.get('best_valid_accuracy', float('nan')):.3f}).",
            received=f"--out {out}",
            fix="Use its inceptionv1.keras as it is, pass --overwrite to train again, or pass another --out.",
        )
    if progress_path.exists():
        state = json.loads(progress_path.read_text())
        stored = state["identity"]
        differences = [f"{key} {stored.get(key)!r} (interrupted run) vs {identity[key]!r} (now)"
                       for key in IDENTITY_KEYS if stored.get(key) != identity[key]]
        if differences:
            raise FeaturekitError(
                f"{out} holds an unfinished training run with other settings: {'; '.join(differences)}.",
                received=f"--out {out}",
                fix="Re-run with the interrupted run's settings to resume it, pass --overwrite to discard it, "
                "or pass another --out.",
            )
        return state
    state = {"identity": identity, "history": {}, "best": None, "wait": 0, "stopped_early": False,
             "fit_finished": False, "seconds": 0.0, "resumed_from": []}
    _write_json(progress_path, state)
    return state


def _backup_epochs(out: Path) -> int:
    """Epochs finished according to BackupAndRestore's metadata (0 when there is no backup)."""
    metadata = out / BACKUP_DIR / "training_metadata.json"
    for path in (metadata, Path(f"{metadata}.bkp")):
        try:
            return int(json.loads(path.read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            continue
    return 0


def _build_classifier(image_size: int):
    """InceptionV1 with the "tf" preprocessing in front and the small binary top; returns (classifier, backbone)."""
    import keras

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
    classifier = keras.Model(inputs, outputs, name="inceptionv1_classifier")
    return classifier, backbone


def _param_counts(classifier, backbone) -> dict[str, int]:
    def trainable(model) -> int:
        return sum(math.prod(w.shape) for w in model.trainable_weights)

    total = int(classifier.count_params())
    backbone_total = int(backbone.count_params())
    return {
        "backbone": backbone_total,
        "backbone_trainable": trainable(backbone),
        "backbone_batchnorm_statistics": backbone_total - trainable(backbone),
        "top": total - backbone_total,
        "total": total,
        "total_trainable": trainable(classifier),
    }


def _datasets(folder: ImageFolder, image_size: int, batch_size: int, seed: int, log: Callable[[str], None]):
    from featurekit.pipeline import decodable
    from featurekit.training.batches import ImageBatches

    def split(name: str, train: bool):
        samples = [s for s in folder.samples if s.split == name]
        good, bad = decodable(folder.root, [s.path for s in samples], image_size)
        for path, reason in bad:
            log(f"  skipped {path}: {reason}")
        samples = [samples[i] for i in good]
        return ImageBatches(folder.root, [s.path for s in samples], np.array([s.label for s in samples], np.float32),
                            image_size, batch_size, train=train, seed=seed), len(samples)

    import numpy as np

    return split("train", True), split("valid", False)


def _improved(value: float, best: dict[str, Any] | None, monitor: str) -> bool:
    if best is None:
        return value == value  # a NaN never counts as an improvement
    return value < best["value"] if monitor == "val_loss" else value > best["value"]


def _progress_callback(out: Path, state: dict[str, Any], images_per_epoch: int, call_started: float,
                       log: Callable[[str], None]):
    """A Keras callback that records history, keeps the best epoch's weights, stops early, and saves all
    of it to progress.json after every epoch (before BackupAndRestore writes its backup of that epoch)."""
    import keras
    import numpy as np

    monitor, epochs, patience = state["identity"]["monitor"], state["epochs"], state["patience"]
    seconds_before = state["seconds"]

    class ProgressRecorder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_started = time.perf_counter()
            self._train_seconds = None

        def on_test_begin(self, logs=None):
            # fit() validates after the training steps of an epoch: this splits the epoch's time.
            self._train_seconds = time.perf_counter() - self._epoch_started

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            logs = dict(logs or {})
            epoch_seconds = now - self._epoch_started
            train_seconds = self._train_seconds or epoch_seconds
            history = state["history"]
            row = {key: float(logs[key]) for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
            row |= {"epoch_seconds": epoch_seconds, "train_seconds": train_seconds,
                    "train_images_per_second": images_per_epoch / train_seconds}
            for key, value in row.items():
                history.setdefault(key, [])
                # A resumed run may redo an epoch whose backup did not finish: its row is replaced.
                del history[key][epoch:]
                history[key].append(value)
            best = state["best"]
            marker = ""
            if _improved(row[monitor], best, monitor):
                # The model's arrays only (save_weights would add Adam's two slots per weight: 3x the bytes).
                weights = out / f"best-epoch{epoch + 1:03d}.npz"
                partial = weights.with_name(f".partial-{weights.name}")
                with open(partial, "wb") as handle:
                    np.savez(handle, *self.model.get_weights())
                os.replace(partial, weights)
                state["best"] = {"epoch": epoch + 1, "value": row[monitor], "val_loss": row["val_loss"],
                                 "val_accuracy": row["val_accuracy"], "weights": weights.name}
                state["wait"] = 0
                marker = "  (best)"
            else:
                state["wait"] += 1
                if state["wait"] >= patience:
                    state["stopped_early"] = True
                    self.model.stop_training = True
            state["seconds"] = seconds_before + now - call_started
            # progress.json names the new best file only once it is complete; then the old one can go.
            _write_json(out / PROGRESS_FILE, state)
            for path in out.glob(BEST_WEIGHTS_GLOB):
                if path.name != state["best"]["weights"]:
                    path.unlink(missing_ok=True)
            log(f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.3f}, "
                f"val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.3f}, "
                f"{epoch_seconds:.0f} s ({row['train_images_per_second']:.1f} train images/s){marker}")
            if state["stopped_early"]:
                log(f"Early stop: {monitor} did not improve for {patience} epochs; keeping epoch "
                    f"{state['best']['epoch']}.")
            _flush()

        def on_train_end(self, logs=None):
            # Runs before BackupAndRestore deletes its backup, so a kill from here on never restarts at epoch 1.
            state["fit_finished"] = True
            state["seconds"] = seconds_before + time.perf_counter() - call_started
            _write_json(out / PROGRESS_FILE, state)

    return ProgressRecorder()


def _flush() -> None:
    # `log=print` into a pipe or file is block-buffered: flush so each epoch shows when it ends.
    sys.stdout.flush()


def _train(folder: ImageFolder, counts, spec, out: Path, state: dict[str, Any], save_classifier: bool,
           extra_callbacks: list, progress: bool, log: Callable[[str], None], started: float) -> TrainResult:
    import keras
    import numpy as np

    from featurekit.training.batches import EpochSetter

    identity = state["identity"]
    image_size, batch_size, seed = identity["image_size"], identity["batch_size"], identity["seed"]
    epochs, patience, monitor = state["epochs"], state["patience"], identity["monitor"]
    done = _backup_epochs(out)
    seconds_before = state["seconds"]  # earlier calls of an interrupted run
    finished_fit = state["fit_finished"] or state["stopped_early"] or (done >= epochs and done > 0)
    # A resumed call gets its own seeds, so its epochs do not replay the first epochs' shuffles and dropout.
    call_seed = seed + done
    keras.utils.set_random_seed(call_seed)
    classifier, backbone = _build_classifier(image_size)
    params = _param_counts(classifier, backbone)
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate=identity["learning_rate"]),
                       loss="binary_crossentropy", metrics=["accuracy"])
    # Adam's slot variables made eagerly take under a second; made inside the first traced train step
    # (Keras' default) they add ~10 s to a trace that already takes ~30 s on a CPU.
    classifier.optimizer.build(classifier.trainable_variables)
    (train_ds, n_train), (valid_ds, n_valid) = _datasets(folder, image_size, batch_size, seed, log)
    steps_per_epoch = len(train_ds)

    if finished_fit:
        train_ds.close()
        valid_ds.close()
        log(f"Training in {out} had finished ({len(state['history'].get('loss', []))} epochs); saving its best epoch.")
    else:
        if done:
            state["resumed_from"].append(done)
            # History rows past the backup belong to an epoch that will run again. (A best epoch among them,
            # from a kill between progress.json and the backup, keeps its weights: they are a finished epoch's.)
            state["history"] = {key: values[:done] for key, values in state["history"].items()}
            log(f"Resuming from epoch {done + 1}/{epochs} ({done} finished; backup in {out / BACKUP_DIR}).")
        else:
            log(f"Training {identity['backbone']} from scratch on {folder.root}: {n_train} train images "
                f"({_counts_text(counts['train'])}), {n_valid} valid ({_counts_text(counts['valid'])}), "
                f"{image_size}x{image_size}, batch {batch_size}, up to {epochs} epochs, early stop on "
                f"{monitor} (patience {patience}).")
            log(f"Parameters: backbone {params['backbone']:,} ({params['backbone_trainable']:,} trainable), "
                f"top {params['top']:,}, total {params['total']:,}.")
        _flush()
        recorder = _progress_callback(out, state, steps_per_epoch * batch_size, started, log)
        # double_checkpoint: a kill while the backup is being written leaves the previous epoch's copy.
        backup = keras.callbacks.BackupAndRestore(backup_dir=str(out / BACKUP_DIR), double_checkpoint=True)
        verbose = 1 if progress and sys.stdout.isatty() else 0
        try:
            classifier.fit(train_ds, validation_data=valid_ds, epochs=epochs, verbose=verbose,
                           callbacks=[EpochSetter(train_ds), recorder, backup, *extra_callbacks])
        finally:
            train_ds.close()
            valid_ds.close()

    if state["best"] is None:
        raise FeaturekitError(
            "No epoch gave a usable validation result (the validation metric was NaN every epoch).",
            received=f"--learning-rate {identity['learning_rate']}",
            fix="Try a smaller --learning-rate, and check the images decode (python cli.py extract lists bad files).",
        )
    best = state["best"]
    with np.load(out / best["weights"]) as arrays:
        classifier.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
    _save_keras(backbone, out / MODEL_FILE)
    if save_classifier:
        _save_keras(classifier, out / CLASSIFIER_FILE)
    history = state["history"]
    epochs_run = len(history.get("loss", []))
    rates = history.get("train_images_per_second", [])
    seconds = seconds_before + time.perf_counter() - started
    result = TrainResult(
        model_path=out / MODEL_FILE,
        best_epoch=best["epoch"],
        best_valid_accuracy=best["val_accuracy"],
        best_valid_loss=best["val_loss"],
        epochs_run=epochs_run,
        history=history,
        seconds=seconds,
        train_images_per_second=statistics.median(rates) if rates else 0.0,
        seconds_to_best=sum(history["epoch_seconds"][: best["epoch"]]),
        out=out,
        stopped_early=state["stopped_early"],
        resumed_from=state["resumed_from"],
        params=params,
    )
    _write_json(out / RESULT_FILE, _result_record(result, folder, counts, spec, state, save_classifier))
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    for path in out.glob(BEST_WEIGHTS_GLOB):
        path.unlink()
    shutil.rmtree(out / BACKUP_DIR, ignore_errors=True)
    log(f"Best epoch {result.best_epoch} of {epochs_run}: val_accuracy {result.best_valid_accuracy:.3f}, "
        f"val_loss {result.best_valid_loss:.4f}; {result.seconds:.0f} s in all, "
        f"{result.train_images_per_second:.1f} train images/s. Backbone saved to {result.model_path}.")
    _flush()
    return result


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def _save_keras(model, path: Path) -> None:
    # Keras insists on the .keras suffix, so the partial file keeps it; the rename makes the save atomic.
    partial = path.with_name(f".partial-{path.name}")
    model.save(partial)
    os.replace(partial, path)


def _result_record(result: TrainResult, folder: ImageFolder, counts, spec, state: dict[str, Any],
                   save_classifier: bool) -> dict[str, Any]:
    """training.json: the result, the resolved settings, the data's identity and the library versions."""
    from featurekit.cache import library_versions

    identity = state["identity"]
    return {
        "finished": True,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_path": MODEL_FILE,
        "classifier_path": CLASSIFIER_FILE if save_classifier else None,
        "best_epoch": result.best_epoch,
        "best_valid_accuracy": result.best_valid_accuracy,
        "best_valid_loss": result.best_valid_loss,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "resumed_from": result.resumed_from,
        "seconds": result.seconds,
        "seconds_to_best": result.seconds_to_best,
        "train_images_per_second": result.train_images_per_second,
        "params": result.params,
        "config": {
            **{key: identity[key] for key in IDENTITY_KEYS if key != "data_fingerprint"},
            "epochs": state["epochs"],
            "patience": state["patience"],
            "preprocessing": spec.preprocessing,
            "architecture": {"batch_norm": True, "width": 1.0, "input_size": identity["image_size"]},
            "batchnorm_momentum": BATCHNORM_MOMENTUM,
            "top": f"GlobalAveragePooling2D -> Dense({HEAD_UNITS}, relu) -> Dropout({HEAD_DROPOUT}) -> "
                   "Dense(1, sigmoid); dropped from inceptionv1.keras",
            "optimizer": "adam",
            "loss": "binary_crossentropy",
            "augmentation": "train only: random horizontal flip, random crop of 7/8..1 of the side resized back",
        },
        "data": {
            "root": str(folder.root.resolve()),
            "layout": folder.layout,
            "fingerprint": identity["data_fingerprint"],
            "class_names": list(folder.class_names),
            "split_counts": counts,
        },
        "resolved_config": state.get("config", {}),
        "history": result.history,
        "versions": library_versions(),
    }
