"""Train a backbone from scratch on an image folder, so it can then serve as a frozen feature extractor.

The original study trained its InceptionV1 (no batch norm) for one epoch and got a constant classifier
(test loss ln 2, accuracy 0.50): a network without pretrained weights is useless as a feature extractor
until it is trained. Here the network (with batch norm and He init, see `featurekit.training.model`) is
trained end to end with Adam and binary cross-entropy on the `train` split (flips and small crops), with a
learning-rate schedule (cosine by default; see `featurekit.training.schedule`), early-stopped on `valid`, and
the backbone alone, with the best epoch's weights, is saved as `inceptionv1.keras` for `extract --backbone
inceptionv1 --weights PATH`. `training.json` beside it records the run and exactly which images it trained on
(see `featurekit.training.provenance`).

Calling `train_backbone` again with the same settings resumes an interrupted run from the last finished
epoch (see `featurekit.training.state`). Training batches are a pure function of (seed, epoch, step), so
resumed epochs see the same shuffles and augmentations, and the same learning rates (a pure function of the
epoch and the recorded validation values), as an uninterrupted run; only dropout draws differ
(each call seeds Keras afresh), so a resumed run is comparable, not bit-identical.

It runs on any Keras backend: the data come through a `keras.utils.PyDataset` and nothing imports
TensorFlow unless it is the backend.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from featurekit.data import DEFAULT_SPLIT_FRACTIONS, ImageFolder, Sample, scan_image_folder
from featurekit.errors import FeaturekitError, given, option_name
from featurekit.training.checks import check_request, check_split_sizes
from featurekit.training.schedule import Schedule, make_schedule
from featurekit.training.state import (
    BACKUP_DIR,
    CLASSIFIER_FILE,
    IDENTITY_KEYS,
    LEGACY_IDENTITY,
    MODEL_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
    backup_epochs,
    out_lock,
    prepare_out,
    read_weights,
    remove_unfinished_files,
    write_json,
)
from featurekit.options import default as declared


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        model_path: The saved backbone (`inceptionv1.keras`), best epoch's weights.
        best_epoch: 1-based epoch whose weights were kept.
        best_valid_accuracy: Validation accuracy at the best epoch.
        best_valid_loss: Validation loss at the best epoch.
        epochs_run: Epochs finished, over all calls of an interrupted and resumed run.
        history: Per-epoch lists: loss, accuracy, val_loss, val_accuracy, learning_rate (the rate the epoch
            trained at), epoch_seconds, train_seconds, train_images_per_second.
        seconds: Wall-clock seconds of all calls, model building and saving included.
        train_images_per_second: Median over epochs of train images / seconds of the training phase (the
            median ignores the first epoch of a call, which also compiles the step).
        seconds_to_best: Summed epoch seconds (training and validation) up to the end of the best epoch.
        out: The output folder.
        stopped_early: Whether early stopping ended the run before `epochs`.
        resumed_from: 0-based epochs already finished when each resuming call started (empty if none).
        params: Parameter counts of the backbone, the top and the whole trained network.
        weights_label: How extraction labels the saved backbone ("inceptionv1 trained on ...").
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
    weights_label: str = ""


def default_out_dir(data: str | Path, backbone: str, image_size: int, runs_dir: str | Path = "runs") -> Path:
    """``runs/<backbone>-<data-folder-name>-<image_size>/``."""
    name = Path(data).expanduser().resolve().name
    return Path(runs_dir) / f"{backbone}-{name}-{image_size}"


def train_backbone(
    data: str | Path,
    backbone: str = declared("train_backbone", "backbone"),
    epochs: int = declared("train_backbone", "epochs"),
    image_size: int = declared("train_backbone", "image_size"),
    batch_size: int = declared("train_backbone", "batch_size"),
    learning_rate: float = declared("train_backbone", "learning_rate"),
    patience: int = declared("train_backbone", "patience"),
    seed: int = declared("train_backbone", "seed"),
    out: str | Path | None = None,
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
    log: Callable[[str], None] = print,
    progress: bool = True,
    overwrite: bool = declared("train_backbone", "overwrite"),
    monitor: str = declared("train_backbone", "monitor"),
    schedule: str = declared("train_backbone", "schedule"),
    min_learning_rate: float = declared("train_backbone", "min_learning_rate"),
    warmup_epochs: int = declared("train_backbone", "warmup_epochs"),
    plateau_factor: float = declared("train_backbone", "plateau_factor"),
    plateau_patience: int = declared("train_backbone", "plateau_patience"),
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
        learning_rate: Adam's learning rate (where a schedule starts, after any warmup).
        patience: Epochs without improvement of `monitor` before training stops.
        seed: Seed of initialisation, dropout, shuffling and augmentation.
        out: Output folder; default `runs/<backbone>-<data-folder-name>-<image_size>/`.
        split_fractions: train/valid/test fractions for the class-folder layout.
        log: Where messages go, one line per epoch included.
        progress: Keras' progress bar within each epoch (on a terminal only; the per-epoch line goes to
            `log` either way).
        overwrite: Replace a finished run, or discard an unfinished one, in `out` instead of refusing or
            resuming.
        monitor: "val_loss" or "val_accuracy": what picks the best epoch and drives early stopping (and the
            plateau schedule).
        schedule: "cosine" (default: a fixed budget that ends at a small rate, so the last epochs settle;
            deterministic, where plateau reacts to a small valid split's noise), "plateau" or "constant" (the
            behaviour before schedules). Part of the run's identity: resuming with another is refused.
        min_learning_rate: The cosine schedule's last rate, the plateau schedule's floor.
        warmup_epochs: Epochs of linear warmup before the cosine decay (cosine only).
        plateau_factor: The plateau schedule's factor.
        plateau_patience: Epochs without a better `monitor` before the plateau schedule lowers the rate.
        save_classifier: Also save the whole trained network (with its top) as `classifier.keras`.
        callbacks: Extra Keras callbacks, called after the ones that record progress and back up.
        config: The resolved config of the command, stored in training.json.

    Returns:
        The TrainResult; the same is written to `out/training.json`.

    Raises:
        FeaturekitError: An untrainable backbone, an image size outside the backbone's range, schedule settings
            the schedule cannot use, too few images in train or valid, a finished run in `out` (without
            overwrite), or an unfinished run there with other settings (the schedule included).
    """
    started = time.perf_counter()
    spec = check_request(backbone, epochs, image_size, batch_size, learning_rate, patience, monitor)
    lr_schedule = make_schedule(schedule, learning_rate, epochs, min_learning_rate, warmup_epochs, plateau_factor,
                                plateau_patience, monitor)
    folder = scan_image_folder(data, split_fractions)
    counts = folder.split_counts()
    check_split_sizes(folder, counts)
    out = Path(out) if out is not None else default_out_dir(folder.root, backbone, image_size)
    identity = {
        "backbone": backbone, "image_size": image_size, "batch_size": batch_size,
        "learning_rate": learning_rate, "schedule": lr_schedule.identity(), "seed": seed, "monitor": monitor,
        "split_fractions": list(split_fractions), "data_fingerprint": folder.fingerprint(),
    }
    out.mkdir(parents=True, exist_ok=True)
    with out_lock(out):
        state = prepare_out(out, identity, overwrite)
        state["epochs"], state["patience"], state["config"] = epochs, patience, config or {}
        return _train(folder, spec, out, state, lr_schedule, save_classifier, callbacks or [], progress, log, started)


def train_from_options(options: dict[str, Any], log: Callable[[str], None] = print,
                       progress: bool = True) -> TrainResult:
    """`train_backbone` with the options of the `train_backbone` command, stored in training.json.

    Options left out take their declared defaults (featurekit.options), the same as on the command line.

    Args:
        options: data, backbone, epochs, image_size, batch_size, learning_rate, patience, seed, out, runs_dir,
            split ("0.7,0.15,0.15" or three numbers), monitor, overwrite, schedule, min_learning_rate,
            warmup_epochs, plateau_factor, plateau_patience.
        log: Where messages go.
        progress: Keras' progress bar within each epoch (on a terminal).

    Returns:
        The TrainResult.

    Raises:
        FeaturekitError: an unknown option, a value of the wrong type, or no `data`.
    """
    from featurekit.config import parse_split_fractions
    from featurekit.options import complete

    options = complete("train_backbone", options)
    stored = {key: (str(value) if isinstance(value, Path) else value) for key, value in options.items()}
    return train_backbone(
        data=options["data"], backbone=options["backbone"], epochs=options["epochs"],
        image_size=options["image_size"], batch_size=options["batch_size"], learning_rate=options["learning_rate"],
        patience=options["patience"], seed=options["seed"], out=_out_from_options(options),
        split_fractions=parse_split_fractions(options["split"]), log=log, progress=progress,
        overwrite=bool(options["overwrite"]), monitor=options["monitor"], schedule=options["schedule"],
        min_learning_rate=options["min_learning_rate"], warmup_epochs=options["warmup_epochs"],
        plateau_factor=options["plateau_factor"], plateau_patience=options["plateau_patience"], config=stored)


def finished_model(options: dict[str, Any]) -> Path | None:
    """The backbone file of a finished run for these options, or None when there is none to reuse.

    Reuse is decided by the run's folder, backbone, size and learning-rate schedule; that the backbone is not
    then scored on its own training images is checked at extraction, by image content (see
    `featurekit.training.provenance`).

    Args:
        options: As for `train_from_options`; `out` (else runs_dir, data, backbone and image_size) locates the
            run, whose training.json must say it finished with the same backbone, image size and schedule.

    Returns:
        Path of `inceptionv1.keras`, or None.
    """
    out = _out_from_options(options)
    record_path, model_path = out / RESULT_FILE, out / MODEL_FILE
    if not (record_path.is_file() and model_path.is_file()):
        return None
    config = json.loads(record_path.read_text()).get("config", {})
    schedule = make_schedule(options["schedule"], options["learning_rate"], options["epochs"],
                             options["min_learning_rate"], options["warmup_epochs"], options["plateau_factor"],
                             options["plateau_patience"], options["monitor"])
    if (config.get("backbone") != options["backbone"] or config.get("image_size") != options["image_size"]
            or config.get("schedule", LEGACY_IDENTITY["schedule"]) != schedule.identity()):
        return None  # training then refuses the folder, naming the finished run in it
    return model_path


def _out_from_options(options: dict[str, Any]) -> Path:
    if options.get("out"):
        return Path(options["out"])
    return default_out_dir(options["data"], options["backbone"], options["image_size"], options.get("runs_dir") or "runs")


def _decodable_split(folder: ImageFolder, split: str, image_size: int,
                     log: Callable[[str], None]) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The split's samples that decode (checked once, so every batch of every epoch is full), and the others."""
    from featurekit.pipeline import decodable

    samples = [s for s in folder.samples if s.split == split]
    good, bad = decodable(folder.root, [s.path for s in samples], image_size)
    for path, reason in bad:
        log(f"  skipped {path}: {reason}")
    return [samples[i] for i in good], bad


def _train(folder: ImageFolder, spec, out: Path, state: dict[str, Any], schedule: Schedule, save_classifier: bool,
           extra_callbacks: list, progress: bool, log: Callable[[str], None], started: float) -> TrainResult:
    import keras

    from featurekit.backend import set_random_seed
    from featurekit.training.batches import EpochSetter, ImageBatches
    from featurekit.training.callbacks import ProgressRecorder, flush_output
    from featurekit.training.model import build_classifier, param_counts, save_keras
    from featurekit.training.schedule import schedule_callback

    identity = state["identity"]
    image_size, batch_size, seed = identity["image_size"], identity["batch_size"], identity["seed"]
    epochs, patience, monitor = state["epochs"], state["patience"], identity["monitor"]
    counts = folder.split_counts()
    done = backup_epochs(out)
    seconds_before = state["seconds"]  # earlier calls of an interrupted run
    finished_fit = state["fit_finished"] or state["stopped_early"] or (done >= epochs and done > 0)
    # A resumed call gets its own seed for dropout, so its epochs do not replay the first epochs' draws.
    set_random_seed(seed + done)
    classifier, backbone = build_classifier(image_size)
    params = param_counts(classifier, backbone)
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate=identity["learning_rate"]),
                       loss="binary_crossentropy", metrics=["accuracy"])
    # Adam's slot variables made eagerly take under a second; made inside the first compiled train step
    # (Keras' default) they add ~10 s to a compilation that already takes ~30 s on a CPU.
    classifier.optimizer.build(classifier.trainable_variables)
    train, skipped_train = _decodable_split(folder, "train", image_size, log)
    valid, skipped_valid = _decodable_split(folder, "valid", image_size, log)

    if finished_fit:
        log(f"Training in {out} had finished ({len(state['history'].get('loss', []))} epochs); saving its best epoch.")
    else:
        train_batches = ImageBatches(folder.root, [s.path for s in train], [s.label for s in train], image_size,
                                     batch_size, train=True, seed=seed)
        valid_batches = ImageBatches(folder.root, [s.path for s in valid], [s.label for s in valid], image_size,
                                     batch_size, train=False, seed=seed)
        if done:
            state["resumed_from"].append(done)
            # History rows past the backup belong to an epoch that will run again. (A best epoch among them,
            # from a kill between progress.json and the backup, keeps its weights: they are a finished epoch's.)
            state["history"] = {key: values[:done] for key, values in state["history"].items()}
            # A run interrupted before rates were recorded trained at its one constant rate.
            state["history"].setdefault("learning_rate", [identity["learning_rate"]] * done)
            log(f"Resuming from epoch {done + 1}/{epochs} ({done} finished; backup in {out / BACKUP_DIR}).")
        else:
            log(f"Training {identity['backbone']} from scratch on {folder.root}: {len(train)} train images "
                f"({_counts_text(counts['train'])}), {len(valid)} valid ({_counts_text(counts['valid'])}), "
                f"{image_size}x{image_size}, batch {batch_size}, up to {epochs} epochs, {schedule.describe()}, "
                f"early stop on {monitor} (patience {patience}).")
            if schedule.name == "plateau" and schedule.plateau_patience >= patience:
                log(f"Note: the plateau patience ({schedule.plateau_patience}) is not below the early-stopping "
                    f"patience ({patience}): the run stops before the schedule lowers the learning rate.")
            log(f"Parameters: backbone {params['backbone']:,} ({params['backbone_trainable']:,} trainable), "
                f"top {params['top']:,}, total {params['total']:,}.")
        flush_output()
        recorder = ProgressRecorder(out, state, len(train_batches) * batch_size, started, log)
        # double_checkpoint: a kill while the backup is being written leaves the previous epoch's copy.
        backup = keras.callbacks.BackupAndRestore(backup_dir=str(out / BACKUP_DIR), double_checkpoint=True)
        verbose = 1 if progress and sys.stdout.isatty() else 0
        try:
            classifier.fit(train_batches, validation_data=valid_batches, epochs=epochs, verbose=verbose,
                           callbacks=[EpochSetter(train_batches), schedule_callback(schedule, state), recorder, backup,
                                      *extra_callbacks])
        finally:
            train_batches.close()
            valid_batches.close()

    if state["best"] is None:
        raise FeaturekitError(
            "No epoch gave a usable validation result (the validation metric was NaN every epoch).",
            received=given("learning_rate", identity["learning_rate"]),
            fix=f"Try a smaller {option_name('learning_rate')}, and check the images decode (python cli.py extract "
            "lists bad files).",
        )
    best = state["best"]
    classifier.set_weights(read_weights(out / best["weights"]))
    save_keras(backbone, out / MODEL_FILE)
    if save_classifier:
        save_keras(classifier, out / CLASSIFIER_FILE)
    history = state["history"]
    epochs_run = len(history.get("loss", []))
    rates = history.get("train_images_per_second", [])
    result = TrainResult(
        model_path=out / MODEL_FILE,
        best_epoch=best["epoch"],
        best_valid_accuracy=best["val_accuracy"],
        best_valid_loss=best["val_loss"],
        epochs_run=epochs_run,
        history=history,
        seconds=seconds_before + time.perf_counter() - started,
        train_images_per_second=statistics.median(rates) if rates else 0.0,
        seconds_to_best=sum(history["epoch_seconds"][: best["epoch"]]),
        out=out,
        stopped_early=state["stopped_early"],
        resumed_from=state["resumed_from"],
        params=params,
    )
    record = _result_record(result, folder, spec, state, save_classifier, train, valid,
                            skipped_train + skipped_valid)
    result.weights_label = record["weights_label"]
    write_json(out / RESULT_FILE, record)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    remove_unfinished_files(out)
    log(f"Best epoch {result.best_epoch} of {epochs_run}: val_accuracy {result.best_valid_accuracy:.3f}, "
        f"val_loss {result.best_valid_loss:.4f}; {result.seconds:.0f} s in all, "
        f"{result.train_images_per_second:.1f} train images/s. Backbone saved to {result.model_path} "
        f"({result.weights_label}).")
    flush_output()
    return result


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def _result_record(result: TrainResult, folder: ImageFolder, spec, state: dict[str, Any], save_classifier: bool,
                   train: list[Sample], valid: list[Sample], skipped: list[tuple[str, str]]) -> dict[str, Any]:
    """training.json: the result, the resolved settings, exactly which images trained, and library versions."""
    from featurekit.cache import library_versions
    from featurekit.hashing import file_sha256
    from featurekit.training.model import BATCHNORM_MOMENTUM, TOP_DESCRIPTION
    from featurekit.training.provenance import data_record, trained_label

    identity = state["identity"]
    record = {
        "finished": True,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_path": MODEL_FILE,
        "model_sha256": file_sha256(result.model_path),
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
            "top": TOP_DESCRIPTION,
            "optimizer": "adam",
            "schedule_applied": "per epoch, set when the epoch begins; history.learning_rate holds each epoch's rate",
            "loss": "binary_crossentropy",
            "augmentation": "train only: random horizontal flip, random crop of 7/8..1 of the side resized back",
        },
        "data": data_record(folder, tuple(identity["split_fractions"]), train, valid, skipped),
        "resolved_config": state.get("config", {}),
        "history": result.history,
        "versions": library_versions(),
    }
    record["weights_label"] = trained_label(record)
    return record
