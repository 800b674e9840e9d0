"""Training InceptionV1 from scratch: it learns, its saved backbone extracts, an interrupted run resumes.

Each `fit` traces its network's training step once, ~30 s for InceptionV1 on two CPU cores, so InceptionV1
trains once here, uninterrupted, on few small images (module fixture `inceptionv1_run`): the tests of
learning, saving, reloading and extracting look at that run. Resuming is the same machinery whatever the
network, so the interrupted-and-resumed run (`resumed_run`: interrupted after epoch 2, resumed to epoch 4,
cosine schedule) trains the tiny test backbone with the same top in place of InceptionV1 (seconds).
Learning-rate schedules are checked as values per epoch, and the plateau schedule through an interrupted
and resumed tiny run against an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder
from featurekit.errors import FeaturekitError
from featurekit.options import defaults
from featurekit.training.runner import finished_model, train_backbone, train_from_options
from featurekit.training.state import BACKUP_DIR, PROGRESS_FILE, RESULT_FILE

IMAGE_SIZE = 32  # InceptionV1's smallest input (1x1 feature map): the cost is tracing the step, not the pixels
EPOCHS = 4
INTERRUPT_AFTER = 2  # epochs finished when the first call is interrupted
SCHEDULE = dict(schedule="cosine", min_learning_rate=1e-4, warmup_epochs=0)
SETTINGS = dict(epochs=EPOCHS, image_size=IMAGE_SIZE, batch_size=8, learning_rate=1e-3, patience=10, seed=0,
                split=(0.7, 0.3, 0.0), progress=False, **SCHEDULE)
INCEPTION_EPOCHS = 3


def _schedule(**changes):
    from featurekit.training.schedule import Schedule

    settings = dict(name="cosine", learning_rate=1e-3, epochs=5, min_learning_rate=1e-5, warmup_epochs=0,
                    plateau_factor=0.5, plateau_patience=2, monitor="val_loss")
    return Schedule(**{**settings, **changes})


def _rates(schedule, monitored=()) -> list[float]:
    """The rate of every epoch of the run, as the training callback asks for them (plateau: given the values)."""
    return [schedule.rate(epoch, monitored) for epoch in range(schedule.epochs)]


def _weights_snapshot(model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def inceptionv1_run(tmp_path_factory):
    """InceptionV1 trained from scratch, uninterrupted, on 40 images of 32x32 for 3 epochs."""
    root = tmp_path_factory.mktemp("train")
    # Fake images are clearly brighter: a learnable difference, so a collapse to ln 2 means a broken network.
    data = make_image_folder(root / "faces", per_class=20, size=IMAGE_SIZE)
    log: list[str] = []
    result = train_backbone(data, out=root / "run", log=log.append,
                            **{**SETTINGS, "epochs": INCEPTION_EPOCHS})
    return {"data": data, "out": root / "run", "result": result, "log": log}


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """The tiny network: train 2 epochs, interrupt (Ctrl-C in a callback), then call again with the same settings."""
    import keras

    import featurekit.training.model as model

    root = tmp_path_factory.mktemp("resume")
    data = make_image_folder(root / "faces", per_class=20, size=IMAGE_SIZE)
    out = root / "run"
    seen: dict = {"interrupted_weights": None, "resumed_epochs": [], "resumed_start_weights": None,
                  "optimizer_rates": [], "resumed_start_iterations": None}

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # Called after the progress recorder and the backup have saved this epoch, like a Ctrl-C then.
            seen["optimizer_rates"].append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
            if epoch + 1 == INTERRUPT_AFTER:
                seen["interrupted_weights"] = _weights_snapshot(self.model)
                seen["interrupted_iterations"] = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
                raise KeyboardInterrupt

    class Observe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if not seen["resumed_epochs"]:
                seen["resumed_start_weights"] = _weights_snapshot(self.model)
                seen["resumed_start_iterations"] = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            seen["resumed_epochs"].append(epoch)

        def on_epoch_end(self, epoch, logs=None):
            # The rate the optimizer actually trained this epoch at (the schedule sets it when an epoch begins).
            seen["optimizer_rates"].append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    python_state, numpy_state = random.getstate(), np.random.get_state()
    seen["global_draws_expected"] = (random.random(), float(np.random.random()))
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model, "build_classifier", _tiny_classifier)
        first_log: list[str] = []
        with pytest.raises(KeyboardInterrupt):
            train_backbone(data, out=out, log=first_log.append, callbacks=[Interrupt()], **SETTINGS)
        seen["first_log"] = first_log
        seen["backup_existed"] = (out / BACKUP_DIR).is_dir()
        seen["progress_after_interrupt"] = json.loads((out / PROGRESS_FILE).read_text())
        for name, change in (("other_settings_error", {"learning_rate": 1e-2}),
                             ("other_schedule_error", {"schedule": "constant"}),
                             ("longer_cosine_error", {"epochs": EPOCHS + 2})):
            with pytest.raises(FeaturekitError) as refused:
                train_backbone(data, out=out, log=lambda _: None, **{**SETTINGS, **change})
            seen[name] = str(refused.value)
        log: list[str] = []
        result = train_backbone(data, out=out, log=log.append, callbacks=[Observe()], **SETTINGS)
    seen["global_draws_after"] = (random.random(), float(np.random.random()))
    return {"data": data, "out": out, "result": result, "log": log, **seen}


@pytest.mark.slow  # InceptionV1's training step traces for ~30 s: once, in CI's slow step
def test_training_loss_falls_clearly_below_ln2(inceptionv1_run):
    # The original study's network stayed at ln 2 = 0.693 (a constant classifier); this one must learn.
    losses = inceptionv1_run["result"].history["loss"]
    assert len(losses) == INCEPTION_EPOCHS
    assert losses[-1] < 0.5 < math.log(2)
    assert inceptionv1_run["result"].history["accuracy"][-1] > 0.8
    # In inference mode too (batch-norm moving statistics, as extraction uses them), on held-out images: 15 valid
    # images (9 fake), where a constant classifier gets at most 9 right (0.6); CPUs differ by an image (14 or 13).
    assert inceptionv1_run["result"].best_valid_accuracy >= 0.8


def test_interrupted_run_resumes_at_next_epoch(resumed_run):
    result = resumed_run["result"]
    assert resumed_run["backup_existed"]
    assert len(resumed_run["progress_after_interrupt"]["history"]["loss"]) == INTERRUPT_AFTER
    # The second call ran only the missing epochs, starting from the interrupted run's weights.
    assert resumed_run["resumed_epochs"] == list(range(INTERRUPT_AFTER, EPOCHS))
    for restored, saved in zip(resumed_run["resumed_start_weights"], resumed_run["interrupted_weights"], strict=True):
        np.testing.assert_array_equal(restored, saved)
    assert f"Resuming from epoch {INTERRUPT_AFTER + 1}/{EPOCHS}" in "\n".join(resumed_run["log"])
    assert result.resumed_from == [INTERRUPT_AFTER]
    assert result.epochs_run == EPOCHS
    # The interrupted epochs' history is kept, not re-run.
    assert result.history["loss"][:INTERRUPT_AFTER] == resumed_run["progress_after_interrupt"]["history"]["loss"]
    # One line per epoch reaches `log` (progress=False, and pytest's stdout is no terminal).
    epoch_lines = [line for line in resumed_run["first_log"] + resumed_run["log"] if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == [f"epoch {e}/{EPOCHS}" for e in range(1, EPOCHS + 1)]
    # A finished run leaves only its results.
    out = resumed_run["out"]
    assert not (out / BACKUP_DIR).exists() and not (out / PROGRESS_FILE).exists()
    assert not list(out.glob("best-epoch*"))


def test_unfinished_run_with_other_settings_is_refused(resumed_run):
    message = resumed_run["other_settings_error"]
    assert "unfinished training run with other settings" in message
    assert "learning_rate 0.001" in message and "0.01" in message


def test_unfinished_run_with_another_schedule_is_refused(resumed_run):
    message = resumed_run["other_schedule_error"]
    assert "unfinished training run with other settings: schedule {'name': 'cosine'" in message
    assert "vs {'name': 'constant'} (now)" in message
    # A cosine schedule's length is its run's epochs: more epochs would change every epoch's rate.
    message = resumed_run["longer_cosine_error"]
    assert f"'epochs': {EPOCHS}," in message and f"'epochs': {EPOCHS + 2}," in message
    assert "A cosine schedule decays over the run's epochs" in message


def test_resumed_run_continues_the_schedule_where_it_stopped(resumed_run):
    expected = _rates(_schedule(learning_rate=SETTINGS["learning_rate"], epochs=EPOCHS,
                                min_learning_rate=SCHEDULE["min_learning_rate"]))
    # Every epoch, before and after the interruption, trained at the uninterrupted run's rate for that epoch
    # (a resumed run that restarted the schedule would train epoch 3 at the first epoch's rate again).
    assert resumed_run["optimizer_rates"] == pytest.approx(expected, rel=1e-6)
    assert resumed_run["result"].history["learning_rate"] == pytest.approx(expected, rel=1e-6)
    assert expected[0] == pytest.approx(1e-3) and expected[-1] == pytest.approx(1e-4)
    assert expected[INTERRUPT_AFTER] < expected[INTERRUPT_AFTER - 1]
    # BackupAndRestore gave the optimizer back its step count too (what a per-step schedule would rely on).
    assert resumed_run["resumed_start_iterations"] == resumed_run["interrupted_iterations"] > 0
    record = json.loads((resumed_run["result"].out / RESULT_FILE).read_text())
    assert record["config"]["schedule"] == {"name": "cosine", "epochs": EPOCHS, "warmup_epochs": 0,
                                            "min_learning_rate": SCHEDULE["min_learning_rate"]}


@pytest.mark.slow  # InceptionV1's training step traces for ~30 s: once, in CI's slow step
def test_saved_backbone_reloads_and_extracts(inceptionv1_run):
    import keras

    from featurekit.backbones.inception_v1 import InceptionV1
    from featurekit.data import scan_image_folder
    from featurekit.backbones.embedder import build_embedder
    from featurekit.pipeline import image_batches

    result = inceptionv1_run["result"]
    backbone = keras.saving.load_model(result.model_path, safe_mode=True)
    assert isinstance(backbone, InceptionV1)
    assert (backbone.batch_norm, backbone.width, backbone.input_size) == (True, 1.0, IMAGE_SIZE)
    assert backbone.count_params() == result.params["backbone"] == 5_995_392
    assert result.params["total"] == 6_520_705

    classifier = keras.saving.load_model(result.out / "classifier.keras", safe_mode=True)
    folder = scan_image_folder(inceptionv1_run["data"], SETTINGS["split"])
    valid = [s for s in folder.samples if s.split == "valid"]
    batches = image_batches(folder.root, [s.path for s in valid], IMAGE_SIZE, batch_size=16)
    images = np.concatenate([batch for batch, _, _ in batches])
    # The saved backbone is the classifier's own backbone: identical outputs, not merely close ones. (Direct
    # calls, not predict(): each predict() traces a graph, seconds on a CPU.)
    pixels = images.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(np.asarray(backbone(pixels, training=False)),
                                  np.asarray(classifier.get_layer(backbone.name)(pixels, training=False)))
    # It holds the best epoch's weights: the classifier reproduces that epoch's validation loss.
    labels = np.array([s.label for s in valid], np.float32)[:, None]
    probabilities = classifier(images.astype(np.float32), training=False)
    loss = float(keras.losses.BinaryCrossentropy()(labels, probabilities))
    assert loss == pytest.approx(result.best_valid_loss, rel=1e-4, abs=1e-5)

    # Extraction accepts the file, and its "tf" preprocessing is the one the network was trained with.
    embedder = build_embedder("inceptionv1", weights=str(result.model_path), image_size=IMAGE_SIZE, pooling="avg")
    features = embedder(images)
    gap = keras.Model(classifier.input, classifier.get_layer("gap").output)(images.astype(np.float32))
    np.testing.assert_allclose(features, np.asarray(gap), rtol=1e-4, atol=1e-4)
    assert features.std(axis=0).max() > 0  # not one constant embedding for every image


@pytest.mark.slow  # InceptionV1's training step traces for ~30 s: once, in CI's slow step
def test_training_json_records_the_run(inceptionv1_run):
    result = inceptionv1_run["result"]
    record = json.loads((result.out / RESULT_FILE).read_text())
    assert record["finished"] is True
    assert record["best_epoch"] == result.best_epoch
    assert record["best_valid_loss"] == min(record["history"]["val_loss"])  # monitor val_loss
    assert record["data"]["class_names"] == ["real", "fake"]
    assert record["config"]["image_size"] == IMAGE_SIZE and record["config"]["preprocessing"] == "tf"
    assert {"keras", "keras_backend"} <= set(record["versions"])
    # Exactly which images trained (issue 9.16): content hashes of the train and valid splits used.
    from featurekit.data import scan_image_folder
    from featurekit.hashing import file_sha256

    folder = scan_image_folder(inceptionv1_run["data"], SETTINGS["split"])
    data = record["data"]
    assert data["train_sha256"] == sorted(s.sha256 for s in folder.samples if s.split == "train")
    assert data["valid_sha256"] == sorted(s.sha256 for s in folder.samples if s.split == "valid")
    assert data["fingerprint"] == folder.fingerprint() and data["train_images"] == len(data["train_sha256"])
    assert record["model_sha256"] == file_sha256(result.model_path)
    assert record["weights_label"] == result.weights_label == (
        f"inceptionv1 trained on faces (train split, {data['train_images']} images, epoch {result.best_epoch})")
    assert result.seconds_to_best == pytest.approx(sum(record["history"]["epoch_seconds"][: result.best_epoch]))
    assert "parent" not in record  # trained from scratch: no parent weights


def test_training_leaves_the_global_random_state_as_it_was(resumed_run):
    # Keras' seeding reseeds Python's and NumPy's global generators; the caller's draws must not change.
    assert resumed_run["global_draws_after"] == resumed_run["global_draws_expected"]


def test_finished_run_is_refused_without_overwrite(resumed_run):
    with pytest.raises(FeaturekitError, match="holds a finished training run.*pass `overwrite`"):
        train_backbone(resumed_run["data"], out=resumed_run["out"], log=lambda _: None, **SETTINGS)


def test_finished_model_is_found_for_its_options(resumed_run, tmp_path: Path):
    options = {**defaults("train_backbone"), "data": str(resumed_run["data"]), "image_size": IMAGE_SIZE,
               "epochs": EPOCHS, **SCHEDULE}
    assert finished_model({**options, "out": str(resumed_run["out"])}) == resumed_run["result"].model_path
    assert finished_model({**options, "out": str(resumed_run["out"]), "image_size": 128}) is None
    # Trained with another schedule: not the model these options ask for.
    assert finished_model({**options, "out": str(resumed_run["out"]), "schedule": "constant"}) is None
    assert finished_model({**options, "out": str(resumed_run["out"]), "min_learning_rate": 1e-6}) is None
    assert finished_model({**options, "runs_dir": str(tmp_path)}) is None


def test_options_without_data_are_refused():
    with pytest.raises(FeaturekitError, match=r"Missing option data\."):
        train_from_options(dict(defaults("train_backbone")))


def test_options_reach_train_backbone(tmp_path: Path):
    data = make_image_folder(tmp_path / "faces", per_class=2)
    options = {**defaults("train_backbone"), "data": data, "image_size": 16, "runs_dir": str(tmp_path / "runs")}
    with pytest.raises(FeaturekitError, match="image_size=16"):
        train_from_options(options)


@pytest.mark.parametrize(
    "backbone, match",
    [("vgg16", "only inceptionv1 can .*used frozen"),
     ("resnet9000", "no registered backbone: only inceptionv1 can be trained")],
)
def test_untrainable_backbones_are_refused(tmp_path: Path, backbone: str, match: str):
    data = make_image_folder(tmp_path / "faces", per_class=2)
    with pytest.raises(FeaturekitError, match=match):
        train_backbone(data, backbone=backbone, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_too_small_image_size_is_refused(tmp_path: Path):
    data = make_image_folder(tmp_path / "faces", per_class=2)
    with pytest.raises(FeaturekitError, match="at least 32x32.*image_size=31"):
        train_backbone(data, image_size=31, out=tmp_path / "run")


def test_too_few_images_are_refused(tmp_path: Path):
    data = make_image_folder(tmp_path / "faces", per_class=10)
    with pytest.raises(FeaturekitError, match="Too few images to train: the (train|valid) split needs"):
        train_backbone(data, image_size=32, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # InceptionV1's training step traces for ~30 s: once, in CI's slow step
def test_extracting_the_backbones_own_training_images_as_test_is_refused(inceptionv1_run, tmp_path: Path):
    from featurekit.extraction.extract import extract

    result = inceptionv1_run["result"]
    n_train = json.loads((result.out / RESULT_FILE).read_text())["data"]["train_images"]
    # The same images, all put in the test split: every one the backbone trained on would be scored.
    with pytest.raises(FeaturekitError, match=rf"trained on {n_train} images .*\({n_train} in test\)"):
        extract(inceptionv1_run["data"], "inceptionv1", weights=str(result.model_path), image_size=IMAGE_SIZE,
                pooling="avg", split_fractions=(0.0, 0.0, 1.0), cache=tmp_path / "c.h5", progress=False,
                log=lambda m: None)
    assert not (tmp_path / "c.h5").exists()


# --------------------------------------------------------------------------------------------------
# Learning-rate schedules


def test_cosine_falls_from_the_learning_rate_to_the_minimum_at_the_last_epoch():
    rates = _rates(_schedule(epochs=5, learning_rate=1e-3, min_learning_rate=1e-5))
    assert len(rates) == 5
    assert rates[0] == pytest.approx(1e-3, rel=1e-6)
    assert rates[-1] == pytest.approx(1e-5, rel=1e-6)
    assert rates[2] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-6)  # half way along the cosine
    assert all(a > b for a, b in zip(rates, rates[1:]))
    # The schedule's end depends on the run's length: the same epoch is at another point of a longer run.
    assert _schedule(epochs=9).rate(4) > rates[4]


def test_cosine_warmup_rises_linearly_to_the_learning_rate_then_decays():
    rates = _rates(_schedule(epochs=6, warmup_epochs=2, learning_rate=1e-3, min_learning_rate=0.0))
    assert rates[:3] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3], rel=1e-6)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert rates[3] > rates[4] > rates[5]


def test_constant_schedule_keeps_the_learning_rate():
    assert _rates(_schedule(name="constant", epochs=4, learning_rate=3e-4)) == [3e-4] * 4


@pytest.mark.parametrize("monitor, flat, better", [("val_loss", 0.5, 0.4), ("val_accuracy", 0.7, 0.8)])
def test_plateau_lowers_the_rate_after_patience_epochs_without_improvement(monitor, flat, better):
    schedule = _schedule(name="plateau", epochs=8, monitor=monitor, plateau_patience=2, plateau_factor=0.5,
                         min_learning_rate=2e-4)
    # Epoch 0 sets the best; epochs 1 and 2 are flat (patience 2): epoch 3 trains at half the rate. Epoch 3
    # improves (the count restarts); 4 and 5 are flat again: 6 is halved, down to the floor, where it stays.
    values = [flat, flat, flat, better, better, better, better, better]
    assert _rates(schedule, values) == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    assert schedule.rate(7, values + [better] * 4) == pytest.approx(2.5e-4)
    assert _rates(schedule, [flat] * 8)[-1] == pytest.approx(2e-4)  # never below min_learning_rate
    # Only the epochs before the one asked about count.
    assert schedule.rate(3, values[:3]) == schedule.rate(3, values)


@pytest.mark.parametrize("changes, match", [
    (dict(schedule="linear"), r"schedule must be one of: constant, cosine, plateau"),
    (dict(min_learning_rate=-1e-5), r"min_learning_rate must be a number \(no quotes\), >= 0"),
    (dict(plateau_factor=1.0), r"plateau_factor must be a number \(no quotes\), > 0 and < 1"),
    (dict(plateau_patience=0), r"plateau_patience must be an integer \(no quotes\), >= 1"),
    (dict(warmup_epochs=-1), r"warmup_epochs must be an integer \(no quotes\), >= 0"),
])
def test_schedule_options_are_checked(tmp_path: Path, changes: dict, match: str):
    options = {**defaults("train_backbone"), "data": str(tmp_path), **changes}
    with pytest.raises(FeaturekitError, match=match):
        train_from_options(options)


@pytest.mark.parametrize("changes, match", [
    (dict(schedule="cosine", min_learning_rate=1e-3), r"minimum learning rate of the cosine schedule .*below the "
     r"learning rate \(0.001\).*min_learning_rate=0.001"),
    (dict(schedule="plateau", min_learning_rate=2e-3), r"minimum learning rate of the plateau schedule"),
    (dict(schedule="plateau", warmup_epochs=2), r"warmup belongs to the cosine schedule.*schedule='plateau'"),
    (dict(schedule="cosine", warmup_epochs=3, epochs=3), r"leave at least one epoch.*warmup_epochs=3 with epochs=3"),
    (dict(schedule="plateau", plateau_factor=1.5), r"plateau_factor must be a number \(no quotes\), > 0 and < 1"),
])
def test_schedule_settings_the_schedule_cannot_use_are_refused(tmp_path: Path, changes: dict, match: str):
    data = make_image_folder(tmp_path / "faces", per_class=2)
    with pytest.raises(FeaturekitError, match=match):
        train_backbone(data, out=tmp_path / "run", **changes)
    assert not (tmp_path / "run").exists()


def test_constant_schedule_ignores_cosine_and_plateau_settings():
    # min_learning_rate is only checked where it is used; a constant run does not depend on it.
    constant = _schedule(name="constant", min_learning_rate=5.0)
    assert constant.identity() == {"name": "constant"}


def _tiny_classifier(image_size: int):
    """test_tiny with a one-unit top: the real training machinery without compiling InceptionV1 (seconds)."""
    import keras

    from featurekit.backbones import create_backbone

    backbone = create_backbone("test_tiny", weights="none", image_size=image_size)
    backbone.trainable = True
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(backbone(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x)), backbone


@pytest.mark.backend
@pytest.mark.slow  # three training runs of the tiny network (CI runs it in the slow step and the JAX leg)
def test_plateau_schedule_resumes_with_its_counters(tmp_path: Path, monkeypatch):
    import keras

    import featurekit.training.model as model

    monkeypatch.setattr(model, "build_classifier", _tiny_classifier)
    data = make_image_folder(tmp_path / "faces", per_class=20, size=32)
    settings = dict(epochs=7, image_size=32, batch_size=8, patience=20, monitor="val_accuracy", schedule="plateau",
                    plateau_patience=2, plateau_factor=0.5, split=(0.7, 0.3, 0.0), progress=False,
                    log=lambda _: None)
    straight = train_backbone(data, out=tmp_path / "straight", **settings)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 3:  # four epochs finished, the plateau's count of flat epochs possibly under way
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_backbone(data, out=tmp_path / "resumed", callbacks=[Interrupt()], **settings)
    resumed = train_backbone(data, out=tmp_path / "resumed", **settings)
    assert resumed.resumed_from == [4]
    schedule = _schedule(name="plateau", epochs=7, monitor="val_accuracy", plateau_patience=2, plateau_factor=0.5)
    for run in (straight, resumed):
        # Each epoch trained at the rate Keras' ReduceLROnPlateau gives for the validation values before it.
        assert run.history["learning_rate"] == pytest.approx(_rates(schedule, run.history["val_accuracy"]), rel=1e-6)
    # The tiny network stops improving on valid within a few epochs: the rate falls, and the resumed run falls
    # on the same epochs as the uninterrupted one (a plateau whose counters restarted at the resume would not).
    assert resumed.history["val_accuracy"] == straight.history["val_accuracy"]
    assert resumed.history["learning_rate"] == pytest.approx(straight.history["learning_rate"], rel=1e-6)
    assert min(straight.history["learning_rate"][4:]) < 1e-3


def test_training_batches_at_the_faces_own_size_are_not_resampled(tmp_path: Path):
    from PIL import Image

    from featurekit.training.batches import ImageBatches

    pixels = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(tmp_path / f"face{i}.png")
    batches = ImageBatches(tmp_path, ["face0.png", "face1.png"], np.array([0, 1]), 256, 2, train=False)
    try:
        images, labels = batches[0]
    finally:
        batches.close()
    np.testing.assert_array_equal(images, pixels.astype(np.float32))  # exactly the file's pixels
    np.testing.assert_array_equal(labels, [0, 1])


def test_unfinished_run_from_before_schedules_resumes_only_as_constant(tmp_path: Path):
    from featurekit.training.state import PROGRESS_FILE, prepare_out

    identity = {"backbone": "inceptionv1", "image_size": 64, "batch_size": 8, "learning_rate": 1e-3, "seed": 0,
                "monitor": "val_loss", "split_fractions": [0.7, 0.3, 0.0], "data_fingerprint": "f"}
    legacy = {"identity": identity, "history": {"loss": [0.7]}, "best": None, "wait": 0, "stopped_early": False,
              "fit_finished": False, "seconds": 1.0, "resumed_from": []}
    (tmp_path / PROGRESS_FILE).write_text(json.dumps(legacy))
    # It trained at one constant rate: resuming it with a cosine schedule would change its rates midway.
    with pytest.raises(FeaturekitError, match=r"schedule \{'name': 'constant'\} \(interrupted run\) vs \{'name': "
                                              r"'cosine'"):
        prepare_out(tmp_path, {**identity, "schedule": _schedule().identity()}, overwrite=False)
    state = prepare_out(tmp_path, {**identity, "schedule": {"name": "constant"}}, overwrite=False)
    assert state["identity"]["schedule"] == {"name": "constant"} and state["history"] == {"loss": [0.7]}

