"""Embedder: preprocessing per backbone, poolings, layer taps, what describe() records, backbone listings."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from featurekit.backbones import create_backbone
from featurekit.parameters import POOLINGS
from featurekit.hashing import file_sha256
from featurekit.backbones.embedder import Embedder, build_embedder, pooled_dim, preprocess
from featurekit.errors import FeaturekitError

# One known pixel, RGB = (255, 128, 0), and what each mode must turn it into.
PIXEL = (255.0, 128.0, 0.0)
EXPECTED = {
    # BGR order, minus the ImageNet channel means (B 103.939, G 116.779, R 123.68).
    "caffe": (0.0 - 103.939, 128.0 - 116.779, 255.0 - 123.68),
    "tf": (1.0, 128.0 / 127.5 - 1.0, -1.0),
    "torch": ((1.0 - 0.485) / 0.229, (128.0 / 255.0 - 0.456) / 0.224, (0.0 - 0.406) / 0.225),
    "rescale": (1.0, 128.0 / 255.0, 0.0),
}
DESCRIBE_KEYS = {
    "backbone", "weights", "weights_label", "weights_sha256", "random_features", "layer", "pooling",
    "image_size", "preprocessing", "precision", "backend", "feature_dim", "backbone_params", "architecture_variant",
}


def _pixel_image(size: int) -> np.ndarray:
    return np.broadcast_to(np.array(PIXEL, np.float32), (1, size, size, 3)).copy()


def _images(size: int, batch: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def _shared_weights_dir() -> Path | None:
    beside_repo = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
    for candidate in (beside_repo,):
        if (candidate / "vgg16_near_imagenet_notop.weights.h5").is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def tiny_flatten() -> Embedder:
    return build_embedder("test_tiny", weights="none", seed=0)


# --- preprocessing ----------------------------------------------------------------------------------------


@pytest.mark.backend
@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_preprocessing_of_a_known_pixel(mode):
    image = _pixel_image(2)
    before = image.copy()
    out = np.asarray(preprocess(image, mode))
    np.testing.assert_allclose(out[0, 0, 0], EXPECTED[mode], rtol=1e-5, atol=1e-5)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(image, before)  # Keras edits NumPy inputs in place; we must not


@pytest.mark.parametrize("backbone, size, mode", [("vgg16", 32, "caffe"), ("inceptionv3", 75, "tf")])
def test_pretrained_backbones_get_their_own_preprocessing_not_rescale(backbone, size, mode):
    embedder = build_embedder(backbone, weights="none", image_size=size, pooling="avg")
    fed = embedder.preprocess(_pixel_image(size))
    np.testing.assert_allclose(fed[0, 5, 7], EXPECTED[mode], rtol=1e-5, atol=1e-5)
    assert not np.allclose(fed[0, 5, 7], EXPECTED["rescale"])
    assert embedder.describe()["preprocessing"] == mode


def test_rescale_only_as_an_explicit_override_and_recorded(tiny_flatten):
    rescaled = build_embedder("test_tiny", weights="none", preprocessing="rescale", seed=0)
    np.testing.assert_allclose(rescaled.preprocess(_pixel_image(32))[0, 0, 0], EXPECTED["rescale"], rtol=1e-6)
    assert rescaled.describe()["preprocessing"] == "rescale"
    assert tiny_flatten.describe()["preprocessing"] == "tf"
    # Same weights, different inputs to the network: different features.
    images = _images(32)
    assert not np.allclose(rescaled(images), tiny_flatten(images))


def test_unknown_preprocessing_is_refused():
    with pytest.raises(FeaturekitError, match=r"Unknown preprocessing 'bgr'.*caffe, tf, torch, rescale"):
        build_embedder("test_tiny", weights="none", preprocessing="bgr")


# --- pooling ----------------------------------------------------------------------------------------------


@pytest.mark.backend
@pytest.mark.parametrize("pooling, dim", [("flatten", 8 * 8 * 16), ("avg", 16), ("max", 16), ("meanstd", 32)])
def test_every_pooling_has_its_shape_and_dtype(pooling, dim):
    embedder = build_embedder("test_tiny", weights="none", pooling=pooling)
    features = embedder(_images(32, batch=3))
    assert features.shape == (3, dim) and features.dtype == np.float32
    assert embedder.feature_dim == dim == embedder.describe()["feature_dim"]


@pytest.mark.backend
def test_poolings_compute_what_they_say(tiny_flatten):
    images = _images(32, batch=2)
    feature_map = tiny_flatten(images).reshape(2, 8, 8, 16)  # flatten is row-major (H, W, C)
    expected = {
        "avg": feature_map.mean(axis=(1, 2)),
        "max": feature_map.max(axis=(1, 2)),
        "meanstd": np.concatenate([feature_map.mean(axis=(1, 2)), feature_map.std(axis=(1, 2))], axis=1),
    }
    for pooling, values in expected.items():
        pooled = build_embedder("test_tiny", weights="none", pooling=pooling, seed=0)(images)
        np.testing.assert_allclose(pooled, values, rtol=1e-5, atol=1e-5, err_msg=pooling)


@pytest.mark.backend
def test_flatten_equals_the_backbone_run_by_hand(tiny_flatten):
    images = _images(32, batch=2)
    model = create_backbone("test_tiny", weights="none", seed=0)
    by_hand = keras.ops.convert_to_numpy(model(preprocess(images, "tf"), training=False))
    np.testing.assert_allclose(tiny_flatten(images), by_hand.reshape(2, -1), rtol=1e-5, atol=1e-6)


def test_unknown_pooling_is_refused():
    with pytest.raises(FeaturekitError, match=r"Unknown pooling 'gem'.*flatten, avg, max, meanstd"):
        build_embedder("test_tiny", weights="none", pooling="gem")


def test_pooled_dim_for_every_pooling():
    assert {p: pooled_dim((7, 7, 512), p) for p in POOLINGS} == {
        "flatten": 25088, "avg": 512, "max": 512, "meanstd": 1024,
    }
    assert pooled_dim((300,), "flatten") == 300 and pooled_dim((4, 5), "flatten") == 20
    for shape in ((300,), (4, 5)):
        with pytest.raises(FeaturekitError, match="needs a spatial feature map"):
            pooled_dim(shape, "avg")


def test_a_multi_tap_request_is_checked_before_anything_is_built(monkeypatch):
    import featurekit.backbones.embedder as embedder_module

    monkeypatch.setattr(embedder_module, "build_with_weights", lambda *a, **k: pytest.fail("built a bad request"))
    with pytest.raises(FeaturekitError, match="Unknown pooling 'median'"):
        embedder_module.build_multi_embedder("test_tiny", [("pool1", "avg"), (None, "median")])
    with pytest.raises(FeaturekitError, match="has no weights"):
        embedder_module.build_multi_embedder("spam", [(None, "none")], weights="imagenet")


# --- inputs -----------------------------------------------------------------------------------------------


@pytest.mark.backend
def test_uint8_and_float_inputs_agree_and_batches_are_independent(tiny_flatten):
    images = _images(32, batch=4)
    as_uint8 = tiny_flatten(images)
    np.testing.assert_array_equal(as_uint8, tiny_flatten(images.astype(np.float32)))
    # Inference mode: one image's features do not depend on the rest of the batch.
    np.testing.assert_allclose(tiny_flatten(images[2:3]), as_uint8[2:3], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(32, 32, 3), (2, 64, 64, 3), (2, 32, 32, 1)])
def test_wrong_image_shape_is_refused(tiny_flatten, shape):
    with pytest.raises(FeaturekitError, match=r"takes image batches of shape \[B, 32, 32, 3\]"):
        tiny_flatten(np.zeros(shape, np.uint8))


def test_other_image_size_changes_the_flatten_size():
    embedder = build_embedder("test_tiny", weights="none", image_size=48)
    assert embedder(_images(48, batch=1)).shape == (1, 12 * 12 * 16)
    assert embedder.describe()["image_size"] == 48


# --- layer taps -------------------------------------------------------------------------------------------


def test_layer_none_taps_the_last_block(tiny_flatten):
    assert tiny_flatten.layer == "pool2" and tiny_flatten.describe()["layer"] == "pool2"


@pytest.mark.backend
@pytest.mark.parametrize(
    "layer, pooling, dim", [("conv1", "flatten", 32 * 32 * 8), ("pool1", "avg", 8), ("conv2", "meanstd", 32)]
)
def test_intermediate_layer_taps(layer, pooling, dim):
    embedder = build_embedder("test_tiny", weights="none", layer=layer, pooling=pooling)
    assert embedder(_images(32, batch=2)).shape == (2, dim)
    assert embedder.describe()["layer"] == layer


@pytest.mark.backend
def test_a_tap_gives_that_layers_activations():
    images = _images(32, batch=2)
    tapped = build_embedder("test_tiny", weights="none", layer="pool1", seed=4)
    model = create_backbone("test_tiny", weights="none", seed=4)
    sub = keras.Model(model.input, model.get_layer("pool1").output)
    expected = keras.ops.convert_to_numpy(sub(preprocess(images, "tf"), training=False))
    np.testing.assert_allclose(tapped(images), expected.reshape(2, -1), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # builds the 6M-parameter InceptionV1
def test_inceptionv1_block_tap():
    embedder = build_embedder("inceptionv1", image_size=64, layer="inception_4e", pooling="avg")
    assert embedder.feature_dim == 832
    assert embedder(_images(64, batch=1)).shape == (1, 832)
    assert embedder.describe()["weights_label"] == "random-init (seed 0)"  # inceptionv1's default


def test_unknown_layer_lists_valid_ones():
    with pytest.raises(FeaturekitError) as info:
        build_embedder("test_tiny", weights="none", layer="block5_pool")
    message = str(info.value)
    assert "Backbone 'test_tiny' has no layer 'block5_pool'. Received: layer='block5_pool'." in message
    assert "Use one of its taps: conv1, pool1, conv2, pool2 (any of its 5 layer names works too)" in message


def test_unknown_mobilenet_layer_lists_the_pointwise_taps():
    # The README recommends conv_pw_11_relu; the error used to offer only `conv1`.
    with pytest.raises(FeaturekitError) as info:
        build_embedder("mobilenet", weights="none", image_size=32, layer="conv_pw_14_relu")
    message = str(info.value)
    taps = ", ".join(["conv1_relu", *(f"conv_pw_{index}_relu" for index in range(1, 14))])
    assert f"Use one of its taps: {taps} (any of its" in message
    assert "to tap the last block (conv_pw_13_relu)" in message


def test_unknown_backbone_is_refused():
    with pytest.raises(FeaturekitError, match="Unknown backbone 'vgg19'"):
        build_embedder("vgg19")


# --- describe and weights ---------------------------------------------------------------------------------


@pytest.mark.backend
def test_describe_is_json_and_complete(tiny_flatten):
    description = tiny_flatten.describe()
    assert set(description) == DESCRIBE_KEYS
    assert json.loads(json.dumps(description)) == description
    assert description == {
        "backbone": "test_tiny",
        "weights": "none",
        "weights_label": "random-init (seed 0)",
        "weights_sha256": "",
        "random_features": True,
        "architecture_variant": "standard",
        "layer": "pool2",
        "pooling": "flatten",
        "image_size": 32,
        "preprocessing": "tf",
        "precision": "float32",
        "backend": keras.backend.backend(),
        "feature_dim": 1024,
        "backbone_params": 1392,
    }


def test_random_features_are_reproducible_by_seed(tiny_flatten):
    images = _images(32)
    again = build_embedder("test_tiny", weights="none", seed=0)
    other = build_embedder("test_tiny", weights="none", seed=3)
    np.testing.assert_array_equal(tiny_flatten(images), again(images))
    assert not np.allclose(tiny_flatten(images), other(images))
    assert other.describe()["weights_label"] == "random-init (seed 3)"


@pytest.mark.backend
def test_weights_file_is_described_by_name_and_hash(tmp_path):
    path = tmp_path / "mine.weights.h5"
    create_backbone("test_tiny", weights="none", seed=9).save_weights(path)
    from_file = build_embedder("test_tiny", weights=str(path), pooling="avg")
    same_seed = build_embedder("test_tiny", weights="none", seed=9, pooling="avg")
    images = _images(32)
    np.testing.assert_array_equal(from_file(images), same_seed(images))
    description = from_file.describe()
    assert description["weights"] == str(path)
    assert description["weights_label"] == "file mine.weights.h5"
    assert description["weights_sha256"] == file_sha256(path)
    assert description["random_features"] is False


def test_near_imagenet_vgg16_file_loads_and_is_labelled():
    shared = _shared_weights_dir()
    if shared is None:
        pytest.skip("near-ImageNet weights not found in ../shared/weights beside the repo")
    path = shared / "vgg16_near_imagenet_notop.weights.h5"
    embedder = build_embedder("vgg16", weights=str(path), image_size=32, pooling="avg")
    description = embedder.describe()
    assert description["weights_label"].startswith("near-ImageNet (VGG16")
    assert description["weights_sha256"] == "908444b3183c77689cb00dfb30b203cb6738ea3b5f3542cc50f7826091c162dc"
    assert description["random_features"] is False and description["preprocessing"] == "caffe"
    # The README's statistic of the trained first layer (std 0.2033), far from a random init's.
    kernel = embedder.backbone.get_layer("block1_conv1").get_weights()[0]
    assert abs(float(kernel.std()) - 0.2033) < 0.002
    features = embedder(_images(32, batch=2))
    assert features.shape == (2, 512) and np.isfinite(features).all()


# --- listings (declared, nothing built) ----------------------------------------------------------------


def test_listing_of_the_test_backbone():
    from featurekit.backbones import get_spec

    listing = get_spec("test_tiny").listing()
    assert listing["feature_dim"] == {"flatten": 1024, "avg": 16, "max": 16, "meanstd": 32}
    assert listing["params"] == 1392 and listing["output_layer"] == "pool2" and listing["output_shape"] == [8, 8, 16]
    assert listing["preprocessing"] == "tf" and listing["input_size"] == 32
    assert listing["weights_options"] == ["none", "PATH.weights.h5", "PATH.keras"]
    assert listing["taps"] == ["conv1", "pool1", "conv2", "pool2"]
    assert json.loads(json.dumps(listing)) == listing


def test_listing_of_vgg16_at_native_size():
    from featurekit.backbones import get_spec

    listing = get_spec("vgg16").listing()
    assert listing["output_shape"] == [7, 7, 512]
    assert listing["feature_dim"] == {"flatten": 25088, "avg": 512, "max": 512, "meanstd": 1024}
    assert listing["params"] == 14_714_688
    assert listing["preprocessing"] == "caffe" and listing["default_weights"] == "imagenet"
    assert listing["weights_options"][0] == "imagenet" and "CC BY 4.0" in listing["weights_licence"]


# --- keras.ops preprocessing, padding, bounds, precision ---------------------------------------------------


def _assert_same_numbers(actual: np.ndarray, desired: np.ndarray) -> None:
    """Bit for bit on TensorFlow and PyTorch. XLA on a CPU (the JAX backend) divides by multiplying with the
    reciprocal, which can round the last bits differently: there the tolerance is a few float32 ulp (torch
    mode divides twice)."""
    if keras.backend.backend() == "jax":
        np.testing.assert_allclose(actual, desired, rtol=4e-7, atol=2.4e-7)
    else:
        np.testing.assert_array_equal(actual, desired)


@pytest.mark.backend
@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_keras_ops_preprocessing_equals_imagenet_utils(mode):
    from keras.applications import imagenet_utils

    from featurekit.backbones.embedder import Preprocessing

    images = _images(8, batch=3, seed=1)
    keras_own = imagenet_utils.preprocess_input(images.astype(np.float32), data_format="channels_last", mode=mode)
    _assert_same_numbers(preprocess(images, mode), keras_own)
    # The layer inside the embedding model computes the same numbers.
    layer_output = keras.ops.convert_to_numpy(Preprocessing(mode)(keras.ops.convert_to_tensor(images)))
    _assert_same_numbers(layer_output, keras_own)


@pytest.mark.backend
def test_rescale_is_x_over_255():
    images = _images(8, batch=2, seed=2)
    _assert_same_numbers(preprocess(images, "rescale"), images.astype(np.float32) / np.float32(255.0))


@pytest.mark.backend
def test_a_padded_last_batch_gives_the_rows_of_an_unpadded_run():
    images = _images(32, batch=8, seed=5)
    embedder = build_embedder("test_tiny", weights="none", pooling="meanstd", seed=0, batch_size=8)
    full = embedder(images)  # one whole batch, no padding
    np.testing.assert_array_equal(embedder(images[:5]), full[:5])  # 5 rows + 3 padding rows, padding dropped
    np.testing.assert_array_equal(embedder(np.concatenate([images, images[:3]]))[8:], full[:3])  # 8 + (3 + 5 padding)
    assert embedder(images[:0]).shape == (0, 32)
    unpadded = build_embedder("test_tiny", weights="none", pooling="meanstd", seed=0, batch_size=5)
    np.testing.assert_allclose(unpadded(images[:5]), full[:5], rtol=1e-5, atol=1e-6)


@pytest.mark.backend
def test_the_embedder_is_a_keras_model_with_keras_ops_layers(tiny_flatten):
    from featurekit.backbones.embedder import Pooling, Preprocessing

    model = tiny_flatten.model
    assert isinstance(model, keras.Model)
    assert {type(layer) for layer in model.layers} >= {Preprocessing, Pooling}
    assert model.outputs[0].shape == (None, 1024)


@pytest.mark.parametrize("size", [0, -1, 7, 2049, 100_000, 32.0, True, "32"])
def test_image_sizes_outside_the_sane_range_are_refused_before_building(size, monkeypatch):
    import featurekit.backbones.embedder as embedder_module

    monkeypatch.setattr(embedder_module, "build_with_weights", lambda *a, **k: pytest.fail("built despite the bad size"))
    with pytest.raises(FeaturekitError, match=r"image_size="):
        build_embedder("test_tiny", weights="none", image_size=size)


def test_image_size_none_is_native_and_the_bounds_are_inclusive():
    assert build_embedder("test_tiny", weights="none").image_size == 32
    assert build_embedder("test_tiny", weights="none", image_size=8, pooling="avg").image_size == 8
    with pytest.raises(FeaturekitError, match="from 75 to 2048 pixels"):
        build_embedder("inceptionv3", weights="none", image_size=74)


@pytest.mark.backend
def test_bfloat16_precision_is_recorded_and_close_to_float32():
    images = _images(32, batch=4, seed=3)
    full = build_embedder("test_tiny", weights="none", pooling="avg", seed=0)
    half = build_embedder("test_tiny", weights="none", pooling="avg", seed=0, precision="bfloat16")
    assert half.describe()["precision"] == "bfloat16" and full.describe()["precision"] == "float32"
    assert half.backbone.get_layer("conv1").compute_dtype == "bfloat16"
    assert half.backbone.get_layer("conv1").variable_dtype == "float32"  # weights stay float32
    features, reference = half(images), full(images)
    assert features.dtype == np.float32  # pooling and outputs in float32
    assert not np.array_equal(features, reference)  # it did compute in bfloat16
    np.testing.assert_allclose(features, reference, rtol=0.05, atol=0.05)  # bfloat16 has 8 bits of mantissa
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_auto_precision_resolves_and_unknown_precision_is_refused(monkeypatch):
    import featurekit.backend as backend

    monkeypatch.setattr(backend, "cpu_info", lambda: {"model": "test", "flags": frozenset({"avx2"})})
    monkeypatch.setattr(backend, "has_accelerator", lambda: False)
    assert backend.resolve_precision("auto") == "float32"
    monkeypatch.setattr(backend, "cpu_info", lambda: {"model": "test", "flags": frozenset({"amx_bf16"})})
    assert backend.resolve_precision("auto") == "bfloat16"
    with pytest.raises(FeaturekitError, match="Unknown precision 'half'"):
        build_embedder("test_tiny", weights="none", precision="half")


def test_seeding_keras_leaves_python_and_numpy_global_states_as_they_were():
    import random

    from featurekit.backbones.tiny import build_test_tiny
    from featurekit.backend import seeded

    random.seed(3)
    np.random.seed(3)
    expected = (random.random(), float(np.random.random()))
    random.seed(3)
    np.random.seed(3)
    with seeded(5):
        first = build_test_tiny((32, 32, 3)).get_weights()
    assert (random.random(), float(np.random.random())) == expected  # the caller's draws go on as before
    with seeded(5):
        again = build_test_tiny((32, 32, 3)).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # and the block is reproducible
