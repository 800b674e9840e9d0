"""The backbone registry, weights loading and our InceptionV1 class.

Real networks are built only with random weights and at small input sizes (VGG16 at 32, InceptionV3 at 75):
their parameter shapes do not depend on the input size, so these tests exercise the same code paths as
full-size runs at a fraction of the CPU time.
"""

from __future__ import annotations

import json
import random
import urllib.error

import keras
import numpy as np
import pytest

from featurekit.backbones import (
    BackboneSpec,
    create_backbone,
    get_spec,
    list_backbones,
)
from featurekit.backbones.inception_v1 import INCEPTION_MODULES, InceptionV1
from featurekit.backbones.loading import weights_provenance
from featurekit.backbones.weights import display_path, keras_imagenet_record, keras_models_dir, record_path, records_for
from featurekit.errors import FeaturekitError, WeightsUnavailableError
from featurekit.hashing import file_sha256
from featurekit.parameters import PREPROCESSING_MODES

from conftest import REPO

# Documented in featurekit/backbones/inception_v1.py; a change of architecture must update both.
INCEPTIONV1_PARAMS = 5_995_392
INCEPTIONV1_TRAINABLE = 5_980_832
INCEPTIONV1_NO_BN_PARAMS = 5_973_552


def _pixels(size: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


# --- registry -------------------------------------------------------------------------------------------


def test_registry_lists_real_backbones_and_hides_test_ones():
    assert list_backbones() == ["efficientnet_lite0", "inceptionv1", "inceptionv3", "mobilenet", "spam", "spectrum",
                                "vgg16"]
    assert list_backbones(include_test=True) == ["efficientnet_lite0", "inceptionv1", "inceptionv3", "mobilenet",
                                                 "spam", "spectrum", "test_tiny", "vgg16"]
    assert get_spec("test_tiny").is_test


def test_unknown_backbone_names_the_valid_ones_but_not_the_test_ones():
    with pytest.raises(FeaturekitError) as info:
        get_spec("resnet50")
    message = str(info.value)
    assert "'resnet50'" in message and "Received: backbone='resnet50'." in message
    for name in ("vgg16", "inceptionv3", "inceptionv1", "mobilenet", "spam", "spectrum"):
        assert name in message
    assert "test_tiny" not in message


# --- what the registry declares, checked against the built networks ----------------------------------------


def _slow(name: str):
    return pytest.param(name, marks=pytest.mark.slow)


@pytest.mark.parametrize("name", ["test_tiny", "mobilenet", "efficientnet_lite0", _slow("vgg16"),
                                  _slow("inceptionv1"), _slow("inceptionv3")])
def test_declared_taps_shape_and_parameters_are_the_built_networks(name):
    spec = get_spec(name)
    model = create_backbone(name, weights="none")
    layer_names = {layer.name for layer in model.layers}
    assert set(spec.taps) <= layer_names
    assert model.layers[-1].name == spec.output_layer == spec.taps[-1]
    assert tuple(model.outputs[0].shape[1:]) == spec.output_shape
    assert model.count_params() == spec.params


def test_every_builder_and_variant_path_resolves():
    for name in list_backbones(include_test=True):
        spec = get_spec(name)
        if isinstance(spec, BackboneSpec):
            assert spec.taps and spec.preprocessing in PREPROCESSING_MODES  # the output layer is the last tap
            assert callable(spec.builder_for())
            for variant in spec.variants:
                assert callable(spec.builder_for(variant))


def test_a_keras_backbone_without_a_weights_record_registers_and_lists(monkeypatch):
    from featurekit.backbones import registry
    from featurekit.backbones.spec import NO_RECORD_LICENCE

    spec = BackboneSpec(name="no_record_net", builder="featurekit.backbones.tiny:build_test_tiny", input_size=32,
                        preprocessing="tf", taps=("pool2",), output_shape=(8, 8, 16), params=1_392,
                        pretrained=("imagenet",))
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    listings = {name: get_spec(name).listing() for name in list_backbones()}
    assert "no_record_net" in listings and "vgg16" in listings  # listing every entry raised nothing
    assert listings["no_record_net"]["weights_licence"] == NO_RECORD_LICENCE
    assert listings["no_record_net"]["feature_dim"] == {"flatten": 1024, "avg": 16, "max": 16, "meanstd": 32}


def test_listing_the_backbones_imports_no_backend():
    # `python cli.py backbones` is a static list: it must not pay for TensorFlow (13-16 s) or Keras.
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-X", "importtime", "cli.py", "backbones", "--format", "json"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "featurekit.backbones.catalog" in imported  # the registry itself was read
    assert not {module for module in imported if module.split(".")[0] in ("tensorflow", "keras", "jax", "torch")}
    listed = {row["name"] for row in json.loads(result.stdout)}
    assert listed == set(list_backbones())


@pytest.mark.parametrize(
    "name, size, mode, pretrained, minimum",
    [
        ("vgg16", 224, "caffe", ("imagenet",), 32),
        ("inceptionv3", 299, "tf", ("imagenet",), 75),
        ("mobilenet", 224, "tf", ("imagenet",), 32),
        ("inceptionv1", 224, "tf", (), 32),
        ("efficientnet_lite0", 224, "tf", (), 32),
        ("test_tiny", 32, "tf", (), 8),
    ],
)
def test_specs_carry_their_own_preprocessing_and_sizes(name, size, mode, pretrained, minimum):
    spec = get_spec(name)
    assert (spec.input_size, spec.preprocessing, spec.pretrained, spec.min_input_size) == (
        size, mode, pretrained, minimum
    )
    # The original study's x/255 must never be a backbone's own mode.
    assert spec.preprocessing != "rescale" and spec.preprocessing in PREPROCESSING_MODES
    if name != "mobilenet":  # mobilenet's default is its shipped file (tests/test_weights.py)
        assert spec.default_weights == (pretrained[0] if pretrained else "none")
    if pretrained:
        assert spec.weights_licence != "n/a"
    # Every record of the backbone's weights says the same preprocessing as the spec.
    assert {record.preprocessing for record in records_for(name)} <= {mode}


def test_pretrained_specs_name_their_licence_and_keras_file():
    assert "CC BY 4.0" in get_spec("vgg16").weights_licence
    assert "MIT" in get_spec("inceptionv3").weights_licence
    assert "Apache-2.0" in get_spec("mobilenet").weights_licence
    assert keras_imagenet_record("vgg16").file_name == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert keras_imagenet_record("mobilenet").file_name == "mobilenet_2_5_224_tf_no_top.h5"
    assert keras_imagenet_record("inceptionv1") is None


# --- building and random init ---------------------------------------------------------------------------


def test_create_backbone_is_frozen_at_native_and_requested_size():
    model = create_backbone("test_tiny", weights="none")
    assert model.trainable is False and model.trainable_weights == []
    assert tuple(model.outputs[0].shape) == (None, 8, 8, 16)
    bigger = create_backbone("test_tiny", weights="none", image_size=64)
    assert tuple(bigger.outputs[0].shape) == (None, 16, 16, 16)
    with pytest.raises(FeaturekitError, match=r"Received: image_size=0\b"):  # 0 is no size, not "native"
        create_backbone("test_tiny", weights="none", image_size=0)


def test_real_backbones_build_at_small_sizes_with_expected_outputs():
    vgg = create_backbone("vgg16", weights="none", image_size=32)
    assert tuple(vgg.outputs[0].shape) == (None, 1, 1, 512)
    assert vgg.count_params() == 14_714_688  # VGG16 without top, as in the Keras docs
    assert vgg.trainable is False


def test_image_size_below_the_minimum_is_refused():
    refused = r"from 75 to 2048.*at least 75x75.*Received: image_size=64\. Use `image_size` 299 \(native\)"
    with pytest.raises(FeaturekitError, match=refused):
        create_backbone("inceptionv3", weights="none", image_size=64)
    # The command line quotes its flags instead.
    with pytest.raises(FeaturekitError) as caught:
        create_backbone("inceptionv3", weights="none", image_size=64)
    from featurekit.flags import CommandSpelling

    assert "Received: --image-size 64. Use --image-size 299 (native)" in CommandSpelling(
        "extract", typed={"image_size": 64}).error(caught.value)


def test_random_init_is_reproducible_by_seed():
    first = create_backbone("test_tiny", weights="none", seed=7).get_weights()
    again = create_backbone("test_tiny", weights="none", seed=7).get_weights()
    other = create_backbone("test_tiny", weights="none", seed=8).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])


def test_random_init_leaves_the_global_random_state_alone():
    random.seed(1234)
    np.random.seed(1234)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    first = create_backbone("test_tiny", weights="none", seed=7).get_weights()
    assert random.getstate() == python_state
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    # The weights depend on the seed alone, not on what the caller's random state was.
    random.random(), np.random.random()
    again = create_backbone("test_tiny", weights="none", seed=7).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_random_init_gives_the_weights_of_keras_own_seeding():
    # Caches made before (seeded with keras.utils.set_random_seed) hold the features the same seed gives now.
    from featurekit.backbones.tiny import build_test_tiny

    keras.utils.set_random_seed(7)
    keras_seeded = build_test_tiny((32, 32, 3)).get_weights()
    ours = create_backbone("test_tiny", weights="none", seed=7).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(keras_seeded, ours))


def test_default_weights_of_a_backbone_without_pretrained_is_random_init():
    by_default = create_backbone("test_tiny", weights="default", seed=3).get_weights()
    explicit = create_backbone("test_tiny", weights="none", seed=3).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(by_default, explicit))


# --- weights files --------------------------------------------------------------------------------------


def test_weights_h5_round_trip(tmp_path):
    source = create_backbone("test_tiny", weights="none", seed=5)
    path = tmp_path / "tiny.weights.h5"
    source.save_weights(path)
    loaded = create_backbone("test_tiny", weights=str(path), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), loaded.get_weights()))
    assert loaded.trainable is False
    provenance = weights_provenance(get_spec("test_tiny"), str(path), seed=0)
    assert provenance == {
        "weights": str(path),
        "weights_label": "file tiny.weights.h5",
        "weights_sha256": file_sha256(path),
        "random_features": False,
        "architecture_variant": "standard",
    }


def test_weights_file_of_another_backbone_is_refused(tmp_path):
    path = tmp_path / "tiny.weights.h5"
    create_backbone("test_tiny", weights="none").save_weights(path)
    with pytest.raises(FeaturekitError) as info:
        create_backbone("vgg16", weights=str(path), image_size=32)
    message = str(info.value)
    assert "'tiny.weights.h5'" in message and "'vgg16'" in message
    assert "4 weight arrays" in message and "26" in message


def test_weights_file_with_extra_layers_is_refused_not_half_loaded(tmp_path):
    # Keras would load the first two convs of this deeper network into test_tiny and ignore the third
    # without a warning; the loader must refuse the file instead.
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    path = tmp_path / "deeper.weights.h5"
    keras.Model(inputs, x).save_weights(path)
    expected = r"'deeper.weights.h5' does not fit backbone 'test_tiny'.*6 weight arrays"
    with pytest.raises(FeaturekitError, match=expected):
        create_backbone("test_tiny", weights=str(path))


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras' own note on the mismatched file
def test_weights_file_with_same_count_but_other_shapes_is_refused(tmp_path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    path = tmp_path / "narrow.weights.h5"
    keras.Model(inputs, x).save_weights(path)
    with pytest.raises(FeaturekitError, match=r"'narrow.weights.h5' does not fit backbone 'test_tiny'"):
        create_backbone("test_tiny", weights=str(path))


def test_a_load_error_without_a_message_is_still_a_clear_refusal(tmp_path, monkeypatch):
    path = tmp_path / "same.weights.h5"
    create_backbone("test_tiny", weights="none").save_weights(path)

    def load_weights_without_a_message(self, *args, **kwargs):
        raise ValueError("")

    monkeypatch.setattr(keras.Model, "load_weights", load_weights_without_a_message)
    with pytest.raises(FeaturekitError, match=r"'same.weights.h5' does not fit backbone 'test_tiny': ValueError"):
        create_backbone("test_tiny", weights=str(path))


def test_missing_weights_file_is_unavailable(tmp_path):
    path = tmp_path / "absent.weights.h5"
    with pytest.raises(WeightsUnavailableError, match=r"does not exist\. Received: weights='.*absent\.weights\.h5'"):
        create_backbone("test_tiny", weights=str(path))


@pytest.mark.parametrize("name", ["model.pt", "imagenett", "model.h5"])
def test_unknown_weights_suffix_or_name_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not weights")
    with pytest.raises(FeaturekitError) as info:
        create_backbone("test_tiny", weights=str(path))
    assert not isinstance(info.value, WeightsUnavailableError)
    message = str(info.value)
    assert "neither a known name nor a .weights.h5 / .keras file" in message
    assert '"none"' in message
    if name.endswith(".h5"):
        assert "save_weights" in message  # the legacy-format hint


def test_keras_file_at_another_size_loads_into_a_fresh_model(tmp_path):
    trained = create_backbone("test_tiny", weights="none", seed=11)
    path = tmp_path / "tiny.keras"
    trained.save(path)
    resized = create_backbone("test_tiny", weights=str(path), image_size=48)
    assert tuple(resized.outputs[0].shape) == (None, 12, 12, 16)
    assert all(np.array_equal(a, b) for a, b in zip(trained.get_weights(), resized.get_weights()))
    assert resized.trainable is False


def test_keras_file_of_a_classifier_gives_its_backbone_by_layer_order(tmp_path):
    # Other layer names than test_tiny's (as Keras' auto-names differ between sessions) and a head on top:
    # the backbone's weights are the first weighted layers, in order.
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="first")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", name="second")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    classifier = keras.Model(inputs, outputs)
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    backbone = create_backbone("test_tiny", weights=str(path))
    assert np.array_equal(backbone.get_layer("conv1").get_weights()[0], classifier.get_layer("first").get_weights()[0])
    assert np.array_equal(backbone.get_layer("conv2").get_weights()[1], classifier.get_layer("second").get_weights()[1])


def test_keras_file_that_does_not_fit_is_refused(tmp_path):
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Conv2D(8, 3, padding="same", name="only")(inputs)
    path = tmp_path / "small.keras"
    keras.Model(inputs, outputs).save(path)
    expected = r"'small.keras' does not fit backbone 'test_tiny': layers with weights: 1 in the file's model, 2 in"
    with pytest.raises(FeaturekitError, match=expected):
        create_backbone("test_tiny", weights=str(path))


def test_corrupt_keras_file_is_refused(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip")
    with pytest.raises(FeaturekitError, match=r"'broken.keras' could not be loaded as a Keras model"):
        create_backbone("test_tiny", weights=str(path))


# --- imagenet --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["inceptionv1", "test_tiny"])
def test_imagenet_for_a_backbone_without_it_is_refused(name):
    with pytest.raises(FeaturekitError) as info:
        create_backbone(name, weights="imagenet")
    message = str(info.value)
    assert f"Backbone {name!r} has no ImageNet weights." in message
    assert "inceptionv3, mobilenet, vgg16" in message and '"none"' in message


def _download_failure(*args, **kwargs):
    # The exact exception keras.utils.get_file raises offline.
    raise Exception(
        "URL fetch failure on https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5: None -- [Errno -2] Name or service not known"
    )


@pytest.mark.parametrize("name, builder", [("vgg16", "VGG16"), ("inceptionv3", "InceptionV3"),
                                           ("mobilenet", "MobileNet")])
def test_imagenet_offline_says_how_to_work_without_it(monkeypatch, name, builder):
    monkeypatch.setattr(keras.applications, builder, _download_failure)
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone(name, weights="imagenet", image_size=get_spec(name).min_input_size)
    message = str(info.value)
    assert f"ImageNet weights for backbone {name!r} could not be downloaded (URL fetch failure" in message
    assert f"Received: backbone={name!r}, weights='imagenet'." in message
    assert "Or pass `weights` with a local " in message
    assert "weights='none'" in message
    assert f"Keras looks for {keras_imagenet_record(name).file_name} in " in message
    assert ".keras/models first" in message
    # The offline files from the records: present ones by path (relative, as typed) with their label,
    # absent ones by name with where they belong. Never an absolute path.
    for record in records_for(name):
        if record.location == "keras":
            continue
        path = record_path(record)
        if path.is_file():
            assert f"{display_path(path)} ({record.label}" in message
            assert not display_path(path).startswith("/")
        else:
            assert record.file_name in message and "../shared/weights beside the checkout" in message
    assert isinstance(info.value.__cause__, Exception)


def test_imagenet_offline_message_names_the_shared_files_relative_to_the_checkout(monkeypatch, shared_weights):
    monkeypatch.setattr(keras.applications, "VGG16", _download_failure)
    monkeypatch.chdir(REPO)
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("vgg16", weights="imagenet", image_size=32)
    assert ("../shared/weights/vgg16_near_imagenet_notop.weights.h5 (near-ImageNet (VGG16, HED fine-tuned))"
            in str(info.value))


def test_mobilenet_offline_imagenet_names_the_shipped_default(monkeypatch):
    monkeypatch.setattr(keras.applications, "MobileNet", _download_failure)
    monkeypatch.chdir(REPO)
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("mobilenet", weights="imagenet", image_size=32)
    expected = ("featurekit/weights/mobilenet_v1_0.25_224_imagenet_notop.weights.h5 (ImageNet (MobileNet v1 0.25); "
                "shipped with featurekit, what 'default' uses)")
    assert expected in str(info.value)


def test_imagenet_default_weights_go_through_the_same_error(monkeypatch):
    monkeypatch.setattr(keras.applications, "VGG16", _download_failure)
    with pytest.raises(WeightsUnavailableError):
        create_backbone("vgg16", image_size=32)  # weights="default" means imagenet for vgg16


@pytest.fixture
def keras_home(monkeypatch, tmp_path):
    """An empty Keras home for get_file, so nothing is downloaded into (or found in) the user's ~/.keras."""
    from keras.src.backend import config

    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setattr(config, "keras_home", lambda: str(home))
    return home


def _cut_network(monkeypatch, error):
    from keras.src.utils import file_utils

    def urlretrieve(url, filename, *args, **kwargs):
        raise error

    monkeypatch.setattr(file_utils, "urlretrieve", urlretrieve)


def test_imagenet_download_through_keras_get_file_offline(monkeypatch, keras_home):
    # The real path, from keras.applications through keras.utils.get_file, with the network cut at urlretrieve.
    _cut_network(monkeypatch, urllib.error.URLError("[Errno -2] Name or service not known"))
    with pytest.raises(WeightsUnavailableError, match=r"could not be downloaded \(URL fetch failure on https://"):
        create_backbone("vgg16", weights="imagenet", image_size=32)
    assert keras_models_dir() == keras_home / "models"


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"), TimeoutError("timed out")])
def test_a_connection_lost_mid_download_is_a_download_failure(monkeypatch, keras_home, error):
    # urllib raises these while the bytes stream in; get_file does not wrap them.
    _cut_network(monkeypatch, error)
    with pytest.raises(WeightsUnavailableError, match="could not be downloaded"):
        create_backbone("vgg16", weights="imagenet", image_size=32)


def test_a_download_with_the_wrong_hash_is_a_download_failure(monkeypatch, keras_home):
    from keras.src.utils import file_utils

    def truncated_download(url, filename, *args, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")

    monkeypatch.setattr(file_utils, "urlretrieve", truncated_download)
    with pytest.raises(WeightsUnavailableError, match=r"could not be downloaded \(Incomplete or corrupted file"):
        create_backbone("vgg16", weights="imagenet", image_size=32)


def test_a_local_io_error_while_downloading_is_not_a_download_failure(monkeypatch, keras_home):
    # The disk is full (or the folder read-only) while Keras writes the download: a local fault that must
    # stop the job, not fall back to random features.
    import errno

    _cut_network(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(FeaturekitError) as info:
        create_backbone("vgg16", weights="imagenet", image_size=32)
    assert not isinstance(info.value, WeightsUnavailableError)
    message = str(info.value)
    assert "a local file error, not a failed download (OSError: [Errno 28] No space left on device)" in message
    assert str(keras_home / "models" / keras_imagenet_record("vgg16").file_name) in message


def test_an_unreadable_cached_imagenet_file_is_a_clear_error_not_random_features(monkeypatch, image_folder, tmp_path):
    # Keras finds its cached file but cannot read it (permission denied): before, any OSError counted as a
    # failed download, and a job with on_missing_weights="random" went on with random features.
    def permission_denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/root/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")

    monkeypatch.setattr(keras.applications, "VGG16", permission_denied)
    with pytest.raises(FeaturekitError) as info:
        create_backbone("vgg16", weights="imagenet", image_size=32)
    assert not isinstance(info.value, WeightsUnavailableError)
    assert "(PermissionError: [Errno 13] Permission denied" in str(info.value)

    from featurekit.extraction.extract import extract

    with pytest.raises(FeaturekitError, match="local file error"):
        extract(image_folder, backbone="vgg16", weights="imagenet", image_size=32, pooling="avg",
                cache=tmp_path / "vgg.h5", on_missing_weights="random", log=lambda message: None, progress=False)
    assert not (tmp_path / "vgg.h5").exists()


def test_errors_other_than_download_are_not_relabelled(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the builder")

    monkeypatch.setattr(keras.applications, "VGG16", broken)
    with pytest.raises(RuntimeError, match="a bug in the builder"):
        create_backbone("vgg16", weights="imagenet", image_size=32)


# --- InceptionV1 ------------------------------------------------------------------------------------------
# Each InceptionV1 build takes 1-2 s on a shared CPU, so the full-width model is built once per module.


@pytest.fixture(scope="module")
def inceptionv1_32() -> keras.Model:
    return create_backbone("inceptionv1", weights="none", image_size=32, seed=0)


def test_inceptionv1_parameter_count_is_googlenet_without_classifier(inceptionv1_32):
    # Documented in inception_v1.py: 5,995,392 = 5,980,832 trainable + 14,560 batch-norm moving statistics,
    # GoogLeNet's convolutional part; the count does not depend on the input size.
    model = inceptionv1_32
    assert model.count_params() == INCEPTIONV1_PARAMS
    assert 5_900_000 < model.count_params() < 6_100_000
    # The backbone is frozen, so count what training would update: everything but the moving statistics.
    trainable = sum(int(np.prod(w.shape)) for w in model.weights if "moving_" not in w.path)
    assert trainable == INCEPTIONV1_TRAINABLE
    assert InceptionV1(input_size=32, batch_norm=False).count_params() == INCEPTIONV1_NO_BN_PARAMS


def test_inceptionv1_layers_are_named_and_shapes_follow_googlenet(inceptionv1_32):
    full = inceptionv1_32
    assert tuple(full.outputs[0].shape) == (None, 1, 1, 1024)
    expected_channels = {"3a": 256, "3b": 480, "4a": 512, "4d": 528, "4e": 832, "5a": 832, "5b": 1024}
    for module, channels in expected_channels.items():
        layer = full.get_layer(f"inception_{module}")
        assert isinstance(layer, keras.layers.Concatenate) and layer.output.shape[-1] == channels
    assert set(INCEPTION_MODULES) == {"3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"}
    assert full.get_layer("stem_conv1").kernel_size == (7, 7) and full.get_layer("stem_conv1").strides == (2, 2)
    assert full.get_layer("inception_3a_5x5").kernel_size == (5, 5)
    assert isinstance(full.get_layer("inception_3a_5x5_bn"), keras.layers.BatchNormalization)
    assert not full.get_layer("stem_conv1").use_bias  # batch norm's beta replaces it
    # Spatial sizes at the native 224: 56 after the stem, 28 / 14 / 7 after each stride-2 stage.
    small = InceptionV1(input_size=224, width=0.25)
    assert tuple(small.get_layer("stem_pool2").output.shape) == (None, 28, 28, 48)
    assert tuple(small.get_layer("inception_4e").output.shape) == (None, 14, 14, 208)
    assert tuple(small.outputs[0].shape) == (None, 7, 7, 256)


def test_inceptionv1_without_batch_norm_and_config_round_trip():
    model = InceptionV1(input_size=48, batch_norm=False, width=0.5, name="v1_small")
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert model.get_layer("stem_conv1").use_bias
    config = model.get_config()
    assert config == {"input_size": 48, "batch_norm": False, "width": 0.5, "name": "v1_small", "trainable": True}
    clone = InceptionV1.from_config(config)
    assert clone.count_params() == model.count_params() and clone.name == "v1_small"


@pytest.mark.slow  # saves, reloads and rebuilds the 6M-parameter network: tens of seconds on 2 cores
def test_inceptionv1_keras_file_round_trips_and_extracts_at_another_size(tmp_path, inceptionv1_32):
    model = inceptionv1_32
    # Non-trivial moving statistics, so the check covers batch-norm state as well as kernels.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape).astype("float32"))
    path = tmp_path / "v1.keras"
    model.save(path)

    restored = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert isinstance(restored, InceptionV1)
    assert restored.get_config() == model.get_config()
    pixels = _pixels(32) / 127.5 - 1
    np.testing.assert_array_equal(model(pixels, training=False).numpy(), restored(pixels, training=False).numpy())

    # Trained at 32, extracted at 64: same weights in a model built for the new size.
    resized = create_backbone("inceptionv1", weights=str(path), image_size=64)
    assert tuple(resized.outputs[0].shape) == (None, 2, 2, 1024)
    assert resized.trainable is False
    for a, b in zip(model.get_weights(), resized.get_weights()):
        np.testing.assert_array_equal(a, b)
