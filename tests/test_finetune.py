"""Fine-tuning a pretrained backbone above a layer (`train_backbone(..., unfreeze_from=LAYER)`).

One module fixture fine-tunes MobileNet (the ImageNet weights shipped in featurekit/weights/) above
`conv_pw_11_relu` at 64 px, with one augmented copy per image, interrupted after its first epoch and resumed:
the tests of training, resuming, the frozen trunk and batch norm, the saved file, its label and the
train-overlap guard all look at that run. The parts (cut points, the mean+std pooling's gradient, the cached
maps' batches, the augmented copies) are tested on their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder
from featurekit.errors import FeaturekitError
from featurekit.training.runner import train_backbone

IMAGE_SIZE = 64
EPOCHS = 3
UNFREEZE_FROM = "conv_pw_11_relu"
SETTINGS = dict(backbone="mobilenet", weights="default", unfreeze_from=UNFREEZE_FROM, epochs=EPOCHS,
                image_size=IMAGE_SIZE, batch_size=8, learning_rate=1e-3, patience=10, seed=0,
                split=(0.7, 0.3, 0.0), progress=False, augment_copies=1,
                augment_views=["jpeg:30-95", "blur:0-2"])


@pytest.fixture(scope="module")
def finetuned_run(tmp_path_factory):
    import keras

    from featurekit.backbones import create_backbone

    root = tmp_path_factory.mktemp("finetune")
    data = make_image_folder(root / "faces", per_class=16, size=IMAGE_SIZE)
    out = root / "run"
    seen: dict = {}

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen["interrupted_weights"] = [np.array(w) for w in self.model.get_weights()]
            raise KeyboardInterrupt

    class Observe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.setdefault("resumed_start_weights", [np.array(w) for w in self.model.get_weights()])

    first_log: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        train_backbone(data, out=out, log=first_log.append, callbacks=[Interrupt()], **SETTINGS)
    seen["trunk_files"] = sorted(p.name for p in (out / "trunk").iterdir())
    with pytest.raises(FeaturekitError) as refused:
        train_backbone(data, out=out, log=lambda _: None, **{**SETTINGS, "unfreeze_from": "conv_pw_10_relu"})
    seen["other_layer_error"] = str(refused.value)
    log: list[str] = []
    result = train_backbone(data, out=out, log=log.append, callbacks=[Observe()], **SETTINGS)
    parent = create_backbone("mobilenet", weights="default", image_size=IMAGE_SIZE)
    return {"data": data, "out": out, "result": result, "first_log": first_log, "log": log, "parent": parent, **seen}


@pytest.mark.slow  # uses finetuned_run: MobileNet fine-tuned, interrupted and resumed (tens of seconds on 2 cores)
def test_finetuning_trains_and_resumes_with_the_cached_trunk_maps(finetuned_run):
    result = finetuned_run["result"]
    assert result.resumed_from == [1] and result.epochs_run == EPOCHS
    for restored, saved in zip(finetuned_run["resumed_start_weights"], finetuned_run["interrupted_weights"],
                               strict=True):
        np.testing.assert_array_equal(restored, saved)
    # The trunk ran once: clean and augmented training maps and the valid maps were written by the first call,
    # and the resumed call read them instead of computing them again.
    assert finetuned_run["trunk_files"] == ["train-0.npy", "train-1.npy", "valid-0.npy"]
    assert sum("trunk maps" in line for line in finetuned_run["first_log"]) == 3
    assert not any("trunk maps" in line for line in finetuned_run["log"])
    assert not any("Computing" in line for line in finetuned_run["log"])  # the maps were reused, not computed
    # The head starts as a linear probe once, before the first epoch; the resumed call restores it instead.
    assert sum("Head initialised" in line for line in finetuned_run["first_log"]) == 1
    assert not any("Head initialised" in line for line in finetuned_run["log"])
    assert not (result.out / "trunk").exists()  # a finished run keeps only its results
    assert all(np.isfinite(result.history["loss"]))
    assert "unfreeze_from 'conv_pw_11_relu' (interrupted run) vs 'conv_pw_10_relu' (now)" in \
        finetuned_run["other_layer_error"]


@pytest.mark.slow  # uses finetuned_run: MobileNet fine-tuned, interrupted and resumed (tens of seconds on 2 cores)
def test_only_the_layers_above_the_cut_change_and_batch_norm_keeps_its_statistics(finetuned_run):
    import keras

    parent = finetuned_run["parent"]
    tuned = keras.saving.load_model(finetuned_run["result"].model_path, safe_mode=True)
    names = [layer.name for layer in parent.layers]
    cut = names.index(UNFREEZE_FROM)
    changed = []
    for name in [layer.name for layer in parent.layers if layer.weights]:
        before, after = parent.get_layer(name).get_weights(), tuned.get_layer(name).get_weights()
        if isinstance(parent.get_layer(name), keras.layers.BatchNormalization):
            for a, b in zip(before, after, strict=True):  # gamma, beta and the moving statistics: all frozen
                np.testing.assert_array_equal(a, b)
        elif any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True)):
            changed.append(name)
    assert changed and all(names.index(name) > cut for name in changed)
    record = json.loads((finetuned_run["out"] / "training.json").read_text())
    assert set(changed) <= set(record["config"]["trained_layers"])
    assert record["config"]["trained_layers"] == ["conv_dw_12", "conv_pw_12", "conv_dw_13", "conv_pw_13"]


@pytest.mark.slow  # uses finetuned_run: MobileNet fine-tuned, interrupted and resumed (tens of seconds on 2 cores)
def test_training_json_names_the_parent_weights_and_the_training_images(finetuned_run):
    from featurekit.backbones.weights import shipped_record
    from featurekit.data import scan_image_folder

    record = json.loads((finetuned_run["out"] / "training.json").read_text())
    assert record["parent"]["weights_sha256"] == shipped_record("mobilenet").sha256
    assert record["parent"]["weights_label"].startswith("ImageNet")
    folder = scan_image_folder(finetuned_run["data"], SETTINGS["split"])
    assert record["data"]["train_sha256"] == sorted(s.sha256 for s in folder.samples if s.split == "train")
    assert record["config"]["unfreeze_from"] == UNFREEZE_FROM and record["config"]["top_layer"] == "conv_pw_13_relu"
    assert record["config"]["augment_views"] == ["jpeg:30-95@0", "blur:0-2@0"]
    assert record["weights_label"] == finetuned_run["result"].weights_label


@pytest.mark.slow  # uses finetuned_run: MobileNet fine-tuned, interrupted and resumed (tens of seconds on 2 cores)
def test_extract_uses_the_finetuned_file_with_its_label_and_refuses_its_training_images(finetuned_run, tmp_path):
    import keras

    from featurekit.backbones.weights import shipped_record
    from featurekit.extraction.extract import extract

    result = finetuned_run["result"]
    quiet = dict(progress=False, log=lambda _: None, image_size=IMAGE_SIZE, pooling="avg", precision="float32")
    with pytest.raises(FeaturekitError, match=r"trained on \d+ images"):
        extract(finetuned_run["data"], "mobilenet", weights=str(result.model_path), split_fractions=(0.0, 0.0, 1.0),
                cache=tmp_path / "refused.h5", **quiet)
    assert not (tmp_path / "refused.h5").exists()
    extracted = extract(finetuned_run["data"], "mobilenet", weights=str(result.model_path),
                        split_fractions=(0.0, 0.0, 1.0), cache=tmp_path / "c.h5", allow_train_overlap=True, **quiet)
    sha = shipped_record("mobilenet").sha256
    assert extracted.weights_label.startswith(f"mobilenet fine-tuned from ImageNet") and sha[:12] in \
        extracted.weights_label and f"above {UNFREEZE_FROM} on faces" in extracted.weights_label
    # The cache holds the fine-tuned network's features, not the parent's.
    import h5py

    with h5py.File(extracted.cache_path, "r") as cache:
        features, paths = cache["features"][:], [p.decode() for p in cache["paths"][:]]
    from featurekit.data import load_image

    images = np.stack([load_image(finetuned_run["data"] / p, IMAGE_SIZE) for p in paths[:4]]).astype(np.float32)
    tuned = keras.saving.load_model(result.model_path, safe_mode=True)
    expected = np.asarray(tuned(images / 127.5 - 1.0)).mean(axis=(1, 2))
    np.testing.assert_allclose(features[:4], expected, rtol=1e-4, atol=1e-5)
    parent = np.asarray(finetuned_run["parent"](images / 127.5 - 1.0)).mean(axis=(1, 2))
    assert not np.allclose(features[:4], parent, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("changes, match", [
    (dict(unfreeze_from="conv_pw_99_relu"), r"cannot be cut at 'conv_pw_99_relu': no such layer.*conv_pw_11_relu"),
    (dict(top_layer="conv_pw_5_relu"), r"top layer must be a layer of 'mobilenet' above 'conv_pw_11_relu'"),
    (dict(unfreeze_from=None), r"belong to fine-tuning.*weights='x.keras'"),
    (dict(augment_copies=0), r"none was asked for"),
    (dict(head_pooling="max"), r"head_pooling must be one of: meanstd, avg"),
])
def test_unusable_finetuning_settings_are_refused_before_anything_is_written(tmp_path, changes, match):
    data = make_image_folder(tmp_path / "faces", per_class=16, size=IMAGE_SIZE)
    settings = {**SETTINGS, **changes}
    if changes.get("unfreeze_from", "") is None:
        settings = {**settings, "backbone": "inceptionv1", "weights": "x.keras", "augment_views": None,
                    "augment_copies": 0}
    with pytest.raises(FeaturekitError, match=match):
        train_backbone(data, out=tmp_path / "run", log=lambda _: None, **settings)
    assert not (tmp_path / "run").exists()


def test_a_layer_bypassed_by_a_residual_connection_is_no_cut_point():
    import keras

    from featurekit.training.layers_split import cut_points, split_backbone

    inputs = keras.Input((8, 8, 3), name="image")
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    branch = keras.layers.Conv2D(4, 3, padding="same", name="branch")(stem)
    joined = keras.layers.Add(name="join")([stem, branch])
    top = keras.layers.Conv2D(4, 3, padding="same", name="top")(joined)
    model = keras.Model(inputs, top)
    assert cut_points(model) == ["stem", "join"]
    with pytest.raises(FeaturekitError, match=r"cannot be cut at 'branch': other tensors bypass it.*stem, join"):
        split_backbone(model, "toy", "branch", None)


def test_meanstd_pooling_has_finite_gradients_on_a_constant_channel():
    import tensorflow as tf

    from featurekit.training.layers_split import MeanStdPooling

    maps = tf.Variable(np.concatenate([np.zeros((2, 3, 3, 1)), np.random.default_rng(0).random((2, 3, 3, 1))],
                                      axis=-1).astype(np.float32))
    with tf.GradientTape() as tape:
        pooled = MeanStdPooling()(maps)
        total = tf.reduce_sum(pooled)
    gradient = tape.gradient(total, maps).numpy()
    assert np.isfinite(gradient).all()  # sqrt(variance) without the epsilon: NaN where the variance is 0
    np.testing.assert_allclose(pooled.numpy()[:, 2], 0.0, atol=2e-3)  # [means, stds]: channel 0 is constant


def test_map_batches_draw_versions_per_epoch_and_validate_on_the_clean_maps():
    from featurekit.training.trunk_maps import MapBatches

    clean, augmented = np.zeros((10, 2, 2, 1), np.float16), np.ones((10, 2, 2, 1), np.float16)
    labels = np.arange(10) % 2
    train = MapBatches([clean, augmented], labels, batch_size=4, train=True, seed=3)
    first = [train[i] for i in range(len(train))]
    again = MapBatches([clean, augmented], labels, batch_size=4, train=True, seed=3)
    np.testing.assert_array_equal(first[1][0], again[1][0])  # a pure function of (seed, epoch, step)
    drawn = np.concatenate([maps[:, 0, 0, 0] for maps, _ in first])
    assert 0 < drawn.mean() < 1  # both versions appear within an epoch
    train.set_epoch(1)
    assert any(not np.array_equal(train[i][0], first[i][0]) for i in range(len(train)))
    valid = MapBatches([clean, augmented], labels, batch_size=4, train=False, seed=3)
    assert sum(len(valid[i][1]) for i in range(len(valid))) == 10
    assert all(not valid[i][0].any() for i in range(len(valid)))


def test_augmented_copies_are_seeded_and_copy_zero_is_the_clean_image(tmp_path: Path):
    from featurekit.data import load_image
    from featurekit.training.trunk_maps import AugmentedCopy

    data = make_image_folder(tmp_path / "faces", per_class=2, size=48)
    path = data / "real" / "img_00.png"
    clean = AugmentedCopy(str(data), 0, 0, ("jpeg:30-95",))(path, 32)
    np.testing.assert_array_equal(clean, load_image(path, 32))
    copy = AugmentedCopy(str(data), 1, 0, ("jpeg:30-95",))
    np.testing.assert_array_equal(copy(path, 32), copy(path, 32))
    assert not np.array_equal(copy(path, 32), clean)
    assert not np.array_equal(AugmentedCopy(str(data), 2, 0, ("jpeg:30-95",))(path, 32), copy(path, 32))


def test_an_augmented_copy_keeps_the_callers_pixel_limit(tmp_path: Path):
    from featurekit.data import ImageDecodeError
    from featurekit.training.trunk_maps import AugmentedCopy

    data = make_image_folder(tmp_path / "faces", per_class=1, size=48)
    enlarged = AugmentedCopy(str(data), 1, 0, ("resize:2",))  # 48x48 -> 96x96 = 9216 pixels
    assert enlarged(data / "real" / "img_00.png", 32, max_pixels=10_000).shape == (32, 32, 3)
    with pytest.raises(ImageDecodeError):
        enlarged(data / "real" / "img_00.png", 32, max_pixels=3_000)


def test_the_head_starts_as_the_logistic_regression_of_the_parents_features():
    import keras
    from sklearn.linear_model import LogisticRegression

    from featurekit.backbones import create_backbone
    from featurekit.training.layers_split import build_head, linear_probe_init, split_backbone

    _, top, _ = split_backbone(create_backbone("test_tiny", weights="none", image_size=16), "test_tiny", "pool1", None)
    classifier = build_head(top, "meanstd", seed=0)
    maps = np.random.default_rng(0).random((40, 8, 8, 8)).astype(np.float32)
    labels = (maps.mean(axis=(1, 2, 3)) > np.median(maps.mean(axis=(1, 2, 3)))).astype(int)
    linear_probe_init(classifier, maps, labels, batch_size=16)
    pooled = np.asarray(keras.Model(classifier.input, classifier.get_layer("head_pooling").output)(maps))
    scaled = (pooled - pooled.mean(axis=0)) / np.maximum(pooled.std(axis=0), 1e-7)
    expected = LogisticRegression(C=1.0, max_iter=2000).fit(scaled, labels).predict_proba(scaled)[:, 1]
    np.testing.assert_allclose(np.asarray(classifier(maps, training=False))[:, 0], expected, rtol=1e-3, atol=1e-4)
    # Dropout acts on standardised features: in training mode the probe stays a probe (no feature's mean is
    # dropped against a bias that cancels it), so the training loss stays near the probe's own.
    training_probabilities = np.asarray(classifier(maps, training=True))[:, 0]
    loss = -np.mean(labels * np.log(training_probabilities + 1e-7) + (1 - labels) * np.log(1 - training_probabilities
                                                                                             + 1e-7))
    assert loss < 1.0


def test_trunk_maps_are_never_written_through_a_symlinked_folder(tmp_path: Path):
    from featurekit.backbones import create_backbone
    from featurekit.training.layers_split import split_backbone
    from featurekit.training.trunk_maps import AugmentedCopy, trunk_maps

    data = make_image_folder(tmp_path / "faces", per_class=2, size=16)
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "run"
    elsewhere.mkdir()
    out.mkdir()
    (out / "trunk").symlink_to(elsewhere)
    trunk, _, _ = split_backbone(create_backbone("test_tiny", weights="none", image_size=16), "test_tiny", "pool1",
                                 None)
    with pytest.raises(FeaturekitError, match="symbolic link"):
        trunk_maps(trunk, "tf", out / "trunk", data, ["real/img_00.png", "fake/img_00.png"], "train-0",
                   AugmentedCopy(str(data), 0, 0), 16, 2, lambda _: None)
    assert not list(elsewhere.iterdir())
