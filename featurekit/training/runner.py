"""Train a backbone on an image folder, so it can then serve as a frozen feature extractor: `train_backbone`.

Two ways, chosen once by the request: from scratch (InceptionV1, `featurekit.training.model`) or fine-tuning
any registered Keras backbone from its weights above a layer (`featurekit.training.finetune`). The original
study trained its InceptionV1 (no batch norm) for one epoch and got a constant classifier (test loss ln 2,
accuracy 0.50); here the network is trained with Adam and binary cross-entropy on the `train` split, with a
learning-rate schedule (cosine by default; see `featurekit.training.schedule`), early-stopped on `valid`, and
the backbone alone, with the best epoch's weights, is saved as `<backbone>.keras`, for extraction's `weights`.
`training.json` beside it records the run and exactly which images it trained on (see
`featurekit.backbones.provenance`).

The flow is request -> plan -> run: the options are validated against their declarations
(`featurekit.options.complete`), `plan_run` checks the request (`featurekit.training.checks.make_request`),
reads the data folder, prepares the network's parent and checks which images decode (nothing is written until
then), and the run, under the folder's lock, builds, fits and saves.
Calling `train_backbone` again with the same settings resumes an interrupted run from the last finished
epoch (see `featurekit.training.state`). Training batches are a pure function of (seed, epoch, step), so
resumed epochs see the same shuffles and augmentations, and the same learning rates, as an uninterrupted run;
only dropout draws differ (each call seeds Keras afresh), so a resumed run is comparable, not bit-identical.

It runs on any Keras backend: the data come through a `keras.utils.PyDataset` and nothing imports
TensorFlow unless it is the backend.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from featurekit.data import ImageFolder, Sample, scan_image_folder
from featurekit.errors import FeaturekitError, given
from featurekit.fsutil import atomic_write_json, exclusive_lock
from featurekit.options import complete
from featurekit.training.checks import TrainRequest, check_split_sizes, counts_text, make_request
from featurekit.training.state import (
    BACKUP_DIR,
    CLASSIFIER_FILE,
    LEGACY_IDENTITY,
    LOCK_FILE,
    RESULT_FILE,
    backup_epochs,
    model_file,
    prepare_out,
    read_weights,
    remove_unfinished_files,
)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        model_path: The saved backbone (`<backbone>.keras`), best epoch's weights.
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
    stopped_early: bool
    resumed_from: list[int]
    params: dict[str, int]
    weights_label: str


@dataclass
class TrainPlan:
    """What a run will do: the request, how it trains (scratch or fine-tuning), the data, where it writes.

    `train` and `valid` hold the split's images that decode (checked once, so every batch of every epoch is
    full); `skipped` the (path, reason) of the others.
    """

    request: TrainRequest
    method: Any  # ScratchTraining | FineTuning: identity, describe, build, datasets, warm_start, record
    folder: ImageFolder
    split_fractions: tuple[float, float, float]
    train: list[Sample]
    valid: list[Sample]
    skipped: list[tuple[str, str]]
    out: Path
    identity: dict[str, Any]


def default_out_dir(data: str | Path, backbone: str, image_size: int, runs_dir: str | Path = "runs",
                    unfreeze_from: str | None = None) -> Path:
    """``runs/<backbone>-<data-folder-name>-<image_size>/`` (fine-tuning: ``<backbone>-from-<layer>-...``)."""
    name = Path(data).expanduser().resolve().name
    stem = backbone if unfreeze_from is None else f"{backbone}-from-{unfreeze_from}"
    return Path(runs_dir) / f"{stem}-{name}-{image_size}"


def train_backbone(data: str | Path, *, log: Callable[[str], None] = print, callbacks: list | None = None,
                   **settings: Any) -> TrainResult:
    """Train `backbone` from scratch, or fine-tune it from `weights` above `unfreeze_from`; save the backbone.

    Args:
        data: Data folder (`DIR/<class>/...` or `DIR/{train,valid,test}/<class>/...`).
        log: Where messages go, one line per epoch included.
        callbacks: Extra Keras callbacks, called after the ones that record progress and back up.
        **settings: The options of the `train_backbone` command, by name; each is validated against, and
            defaults to, its declaration in `featurekit.options` (where the help of each stands):
            backbone (from scratch only names in TRAINABLE_BACKBONES, fine-tuning any Keras backbone), epochs,
            image_size, batch_size (at least 2: batch norm), learning_rate (None: 1e-3 from scratch, 1e-4
            fine-tuning), patience, seed, monitor, out (default
            `runs/<backbone>[-from-<layer>]-<data-folder-name>-<image_size>/`), runs_dir, split (train, valid,
            test fractions), overwrite, progress; the schedule: schedule ("cosine", "plateau" or "constant",
            part of the run's identity), min_learning_rate, warmup_epochs, plateau_factor, plateau_patience
            (see `featurekit.training.schedule`); fine-tuning: weights (the parent weights), unfreeze_from (the
            layer whose output ends the frozen trunk; None trains from scratch), top_layer, head_pooling,
            augment_views, augment_copies.

    Returns:
        The TrainResult; the same is written to `out/training.json`, with the resolved options.

    Raises:
        FeaturekitError: An unusable setting, layer, weights or data folder (before anything is written), a
            finished run in `out` (without overwrite), or an unfinished run there with other settings.
    """
    options = complete("train_backbone", {**settings, "data": data})
    return _train(options, log, options["progress"], callbacks or [])


def train_from_options(options: dict[str, Any], log: Callable[[str], None] = print,
                       progress: bool = True) -> TrainResult:
    """`train_backbone` with the options of the `train_backbone` command, stored in training.json.

    Options left out take their declared defaults (featurekit.options), the same as on the command line.

    Raises:
        FeaturekitError: an unknown option, a value of the wrong type, or no `data`.
    """
    return _train(complete("train_backbone", options), log, progress, [])


def _train(options: dict[str, Any], log: Callable[[str], None], progress: bool, callbacks: list) -> TrainResult:
    """Request -> plan -> run: under the folder's lock (two runs writing one folder would interleave their
    backups), build the network, fit the epochs still to run (none for a finished fit), save the best epoch."""
    import keras

    from featurekit.backend import seeded
    from featurekit.training.model import param_counts

    started = time.perf_counter()
    plan = plan_run(options, log)
    plan.out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(plan.out / LOCK_FILE, "Another process ({holder}) is training into this folder right now.",
                        received=given("out", str(plan.out)), fix="Wait for it to finish, or pass another `out`."):
        state = prepare_out(plan.out, plan.identity, options["overwrite"])
        state["epochs"], state["patience"] = options["epochs"], options["patience"]
        state["config"] = {key: (str(value) if isinstance(value, Path) else value) for key, value in options.items()}
        since = started - state["seconds"]  # the run's clock: earlier calls of an interrupted run count too
        done = backup_epochs(plan.out)
        finished_fit = state["fit_finished"] or state["stopped_early"] or (done >= state["epochs"] and done > 0)
        # A resumed call gets its own seed for dropout, so its epochs do not replay the first epochs' draws.
        with seeded(plan.request.seed + done):
            classifier, backbone = plan.method.build()
            params = param_counts(classifier, backbone)
            classifier.compile(optimizer=keras.optimizers.Adam(learning_rate=plan.request.learning_rate),
                               loss="binary_crossentropy", metrics=["accuracy"])
            # Adam's slot variables made eagerly take under a second; made inside the first compiled train step
            # (Keras' default) they add ~10 s to a compilation that already takes ~30 s on a CPU.
            classifier.optimizer.build(classifier.trainable_variables)
            if finished_fit:
                log(f"Training in {plan.out} had finished ({len(state['history'].get('loss', []))} epochs); saving "
                    "its best epoch.")
            else:
                _fit(plan, state, classifier, params, done, callbacks, progress, log, since)
        return _finish(plan, state, classifier, backbone, params, log, since)


def plan_run(options: dict[str, Any], log: Callable[[str], None] = print) -> TrainPlan:
    """Check the request, read the data folder and its splits, prepare the way of training, check which images
    decode (logging the others); nothing is written."""
    from featurekit.config import parse_split_fractions
    from featurekit.pipeline import decodable
    from featurekit.training.finetune import FineTuning
    from featurekit.training.model import ScratchTraining

    request = make_request(options)
    split_fractions = parse_split_fractions(options["split"])
    folder = scan_image_folder(options["data"], split_fractions)
    check_split_sizes(folder)
    method = FineTuning(request) if request.unfreeze_from is not None else ScratchTraining(request)
    kept, skipped = [], []
    for split in ("train", "valid"):
        samples = [s for s in folder.samples if s.split == split]
        good, bad = decodable(folder.root, [s.path for s in samples], request.image_size)
        kept.append([samples[i] for i in good])
        skipped += bad
    for path, reason in skipped:
        log(f"  skipped {path}: {reason}")
    identity = {
        "backbone": request.backbone, "image_size": request.image_size, "batch_size": request.batch_size,
        "learning_rate": request.learning_rate, "schedule": request.schedule.identity(), "seed": request.seed,
        "monitor": request.monitor, "split_fractions": list(split_fractions), "data_fingerprint": folder.fingerprint(),
        **method.identity(),
    }
    return TrainPlan(request, method, folder, split_fractions, *kept, skipped, _run_folder(options), identity)


def _fit(plan: TrainPlan, state: dict[str, Any], classifier, params: dict[str, int], done: int,
         extra_callbacks: list, progress: bool, log: Callable[[str], None], since: float) -> None:
    """Run the epochs from `done` on, recording each, backing up after each, stopping early on valid."""
    import keras

    from featurekit.training.callbacks import ProgressRecorder

    request, out = plan.request, plan.out
    if done:
        state["resumed_from"].append(done)
        # History rows past the backup belong to an epoch that will run again. (A best epoch among them,
        # from a kill between progress.json and the backup, keeps its weights: they are a finished epoch's.)
        state["history"] = {key: values[:done] for key, values in state["history"].items()}
        # A run interrupted before rates were recorded trained at its one constant rate.
        state["history"].setdefault("learning_rate", [request.learning_rate] * done)
        log(f"Resuming from epoch {done + 1}/{state['epochs']} ({done} finished; backup in {out / BACKUP_DIR}).")
    else:
        _log_start(plan, state, params, log)
    train_batches, valid_batches = plan.method.datasets(out, plan.folder, plan.train, plan.valid, log)
    if not done:
        plan.method.warm_start(train_batches, log)
    sys.stdout.flush()
    # Batches and learning rates are functions of the epoch (resumed runs start past epoch 0); plateau reads the
    # monitored values of the epochs finished before (the recorder appends each epoch's row when it ends).
    epoch_setter = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: train_batches.set_epoch(epoch))
    scheduler = keras.callbacks.LearningRateScheduler(
        lambda epoch: request.schedule.rate(epoch, state["history"].get(request.schedule.monitor, [])))
    recorder = ProgressRecorder(out, state, len(train_batches) * request.batch_size, since, log)
    # double_checkpoint: a kill while the backup is being written leaves the previous epoch's copy.
    backup = keras.callbacks.BackupAndRestore(backup_dir=str(out / BACKUP_DIR), double_checkpoint=True)
    verbose = 1 if progress and sys.stdout.isatty() else 0
    with closing(train_batches), closing(valid_batches):
        classifier.fit(train_batches, validation_data=valid_batches, epochs=state["epochs"], verbose=verbose,
                       callbacks=[epoch_setter, scheduler, recorder, backup, *extra_callbacks])


def _log_start(plan: TrainPlan, state: dict[str, Any], params: dict[str, int], log: Callable[[str], None]) -> None:
    request, counts, schedule = plan.request, plan.folder.split_counts(), plan.request.schedule
    log(f"{plan.method.describe()} on {plan.folder.root}: {len(plan.train)} train images "
        f"({counts_text(counts['train'])}), {len(plan.valid)} valid ({counts_text(counts['valid'])}), "
        f"{request.image_size}x{request.image_size}, batch {request.batch_size}, up to {state['epochs']} epochs, "
        f"{schedule.describe()}, early stop on {request.monitor} (patience {state['patience']}).")
    if schedule.name == "plateau" and schedule.plateau_patience >= state["patience"]:
        log(f"Note: the plateau patience ({schedule.plateau_patience}) is not below the early-stopping "
            f"patience ({state['patience']}): the run stops before the schedule lowers the learning rate.")
    log(f"Parameters: backbone {params['backbone']:,} ({params['backbone_trainable']:,} trainable), "
        f"top {params['top']:,}, total {params['total']:,}.")


def _finish(plan: TrainPlan, state: dict[str, Any], classifier, backbone, params: dict[str, int],
            log: Callable[[str], None], since: float) -> TrainResult:
    """Load the best epoch's weights, save the backbone (and classifier), write training.json, tidy up."""
    from featurekit.probes.persistence import save_keras

    out = plan.out
    if state["best"] is None:
        raise FeaturekitError(
            "No epoch gave a usable validation result (the validation metric was NaN every epoch).",
            received=given("learning_rate", plan.request.learning_rate),
            fix="Try a smaller `learning_rate`, and check the images decode (extraction lists bad "
            "files).",
        )
    classifier.set_weights(read_weights(out / state["best"]["weights"]))
    model_path = save_keras(backbone, out / model_file(plan.request.backbone))
    if plan.method.saves_classifier:
        save_keras(classifier, out / CLASSIFIER_FILE)
    record = _result_record(plan, state, params, model_path, time.perf_counter() - since)
    # The result is what training.json records, with the paths as paths.
    result = TrainResult(model_path=model_path, out=out, **{
        field.name: record[field.name] for field in fields(TrainResult) if field.name not in ("model_path", "out")})
    atomic_write_json(out / RESULT_FILE, record)
    remove_unfinished_files(out)
    log(f"Best epoch {result.best_epoch} of {result.epochs_run}: val_accuracy {result.best_valid_accuracy:.3f}, "
        f"val_loss {result.best_valid_loss:.4f}; {result.seconds:.0f} s in all, "
        f"{result.train_images_per_second:.1f} train images/s. Backbone saved to {result.model_path} "
        f"({result.weights_label}).")
    sys.stdout.flush()
    return result


def finished_model(options: dict[str, Any]) -> Path | None:
    """The backbone file of a finished run for these options, or None when there is none to reuse.

    Reuse is decided by the run's folder, backbone, size, layers and learning-rate schedule; that the backbone
    is not then scored on its own training images is checked at extraction, by image content (see
    `featurekit.backbones.provenance`).

    Args:
        options: As for `train_from_options`; `out` (else runs_dir, data, backbone and image_size) locates the
            run, whose training.json must say it finished with the same backbone, image size and schedule.

    Returns:
        Path of `<backbone>.keras`, or None.
    """
    options = complete("train_backbone", options)
    out = _run_folder(options)
    record_path, model_path = out / RESULT_FILE, out / model_file(options["backbone"])
    if not (record_path.is_file() and model_path.is_file()):
        return None
    config = {**LEGACY_IDENTITY, **json.loads(record_path.read_text()).get("config", {})}
    request = make_request(options)
    wanted = {"backbone": request.backbone, "image_size": request.image_size, "unfreeze_from": request.unfreeze_from,
              "schedule": request.schedule.identity()}
    # Another run there: training then refuses the folder, naming the finished run in it.
    return model_path if all(config.get(key) == value for key, value in wanted.items()) else None


def _run_folder(options: dict[str, Any]) -> Path:
    return Path(options["out"]) if options["out"] else default_out_dir(
        options["data"], options["backbone"], options["image_size"], options["runs_dir"], options["unfreeze_from"])


def _result_record(plan: TrainPlan, state: dict[str, Any], params: dict[str, int], model_path: Path,
                   seconds: float) -> dict[str, Any]:
    """training.json: the result, the resolved settings, exactly which images trained, and library versions."""
    from featurekit.cache import library_versions
    from featurekit.hashing import file_sha256
    from featurekit.backbones.provenance import data_record, trained_label

    identity, best, history = state["identity"], state["best"], state["history"]
    method, rates = plan.method.record(), history.get("train_images_per_second", [])
    record = {
        "finished": True,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_path": model_path.name,
        "model_sha256": file_sha256(model_path),
        "classifier_path": CLASSIFIER_FILE if plan.method.saves_classifier else None,
        "best_epoch": best["epoch"], "best_valid_accuracy": best["val_accuracy"], "best_valid_loss": best["val_loss"],
        "epochs_run": len(history.get("loss", [])), "stopped_early": state["stopped_early"],
        "resumed_from": state["resumed_from"], "seconds": seconds,
        "seconds_to_best": sum(history["epoch_seconds"][: best["epoch"]]),
        "train_images_per_second": statistics.median(rates) if rates else 0.0, "params": params,
        "config": {
            **{key: value for key, value in identity.items() if key != "data_fingerprint"},
            "epochs": state["epochs"],
            "patience": state["patience"],
            "preprocessing": plan.request.spec.preprocessing,
            **method.pop("config"),
            "optimizer": "adam",
            "schedule_applied": "per epoch, set when the epoch begins; history.learning_rate holds each epoch's rate",
            "loss": "binary_crossentropy",
        },
        **method,
        "data": data_record(plan.folder, plan.split_fractions, plan.train, plan.valid, plan.skipped),
        "resolved_config": state.get("config", {}),
        "history": history,
        "versions": library_versions(),
    }
    record["weights_label"] = trained_label(record)
    return record
