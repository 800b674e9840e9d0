"""Hand-made features as backbones: registry, extract -> compare -> predict, identity, native size, no Keras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import QUIET, REPO
from featurekit.backbones import create_backbone, get_spec, list_backbones
from featurekit.cache import open_cache
from featurekit.data import decode_rgb
from featurekit.errors import FeaturekitError
from featurekit.extraction.extract import extract, extract_many
from featurekit.handmade import get_handmade


def texture(seed: int, size: int, smooth: bool) -> np.ndarray:
    """Real: noise smoothed by a 3x3 box (neighbouring pixels agree); fake: the same plus fine pixel noise."""
    rng = np.random.default_rng(seed)
    base = rng.normal(128, 40, (size + 2, size + 2, 3))
    box = sum(base[i:i + size, j:j + size] for i in range(3) for j in range(3)) / 9
    if not smooth:
        box = box + rng.normal(0, 6, box.shape)
    return np.clip(np.rint(box), 0, 255).astype(np.uint8)


def texture_folder(root: Path, size: int, counts=(("train", 10), ("valid", 5), ("test", 5))) -> Path:
    """DIR/{train,valid,test}/{real,fake}/NN.png with the two textures."""
    seed = 0
    for split, n in counts:
        for label, name in enumerate(("real", "fake")):
            for i in range(n):
                seed += 1
                path = root / split / name / f"{i:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(texture(seed, size, smooth=label == 0)).save(path)
    return root


@pytest.fixture(scope="module")
def textures(tmp_path_factory) -> Path:
    return texture_folder(tmp_path_factory.mktemp("handmade") / "textures", size=48)


# --- the registry --------------------------------------------------------------------------------------------


def test_spam_and_spectrum_are_registry_backbones():
    assert {"spam", "spectrum"} <= set(list_backbones())
    spec = get_spec("spam")
    assert spec is get_handmade("spam")  # the feature is its own registry entry: no BackboneSpec around it
    assert (spec.kind, spec.input_size, spec.preprocessing, spec.request_options) == (
        "hand-made feature", 256, "none", ("layer", "image_size"))
    with pytest.raises(FeaturekitError) as info:
        create_backbone("spam")
    assert "is a hand-made feature: it has no Keras model" in str(info.value)


def test_hand_made_entries_check_their_request_and_name_their_caches():
    spam = get_spec("spam")
    assert spam.check_request(None, ["flatten"], None, "auto", "default") == (("none",), "float32")
    with pytest.raises(FeaturekitError, match="pooling does not apply"):
        spam.check_request(None, ["avg"])
    with pytest.raises(FeaturekitError, match="has no weights"):
        spam.check_request(weights="imagenet")
    assert spam.cache_name_layer(None) is None and spam.cache_name_layer("threshold=3") is None
    assert spam.cache_name_layer("order=1+threshold=2") == "threshold=2+order=1"
    embedder = spam.build_embedder([("threshold=2", "none"), (None, "flatten")], image_size=24)
    assert [tap.layer for tap in embedder.embedders] == ["threshold=2+order=2+normalisation=joint",
                                                         "threshold=3+order=2+normalisation=joint"]
    rebuilt = spam.rebuild_embedder(embedder.embedders[0].describe())
    assert rebuilt.describe() == embedder.embedders[0].describe()


def test_keras_entries_check_their_request_before_building():
    tiny = get_spec("test_tiny")
    assert tiny.check_request(16, ["avg", "meanstd"], None, "float32") == (("avg", "meanstd"), "float32")
    for bad, match in (({"image_size": 4}, "from 8 to 2048"), ({"poolings": ["median"]}, "Unknown pooling"),
                       ({"preprocessing": "bgr"}, "Unknown preprocessing")):
        with pytest.raises(FeaturekitError, match=match):
            tiny.check_request(**bad)
    assert tiny.cache_name_layer("pool1") == "pool1" and tiny.cache_name_layer(None) is None


def test_backbones_listing_shows_hand_made_features():
    from featurekit.backbones import get_spec
    from featurekit.report import render_backbones

    summary = get_spec("spam").listing()
    assert summary["feature_dim"] == {"flatten": 3430} and summary["params"] == 0
    assert summary["output_layer"] == "threshold=3+order=2+normalisation=joint"
    text = render_backbones([summary, get_spec("spectrum").listing()], "md")
    assert "| spam | 256 | none | threshold=3+order=2+normalisation=joint | 3430 | 0 | no weights (hand-made) |" in text
    assert "| spectrum | 256 | none |" in text and "| 128 |" in text


def test_extracting_hand_made_features_imports_no_keras(tmp_path: Path):
    texture_folder(tmp_path / "t", size=24, counts=(("train", 1), ("valid", 1), ("test", 1)))
    code = ("import sys; from featurekit.extraction.extract import extract; "
            f"r = extract({str(tmp_path / 't')!r}, 'spam', image_size=24, cache={str(tmp_path / 'c.h5')!r}, "
            "progress=False, log=lambda m: None); assert r.n_images == 6; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


# --- extraction ----------------------------------------------------------------------------------------------


def test_spam_cache_equals_the_spec_on_the_stored_pixels_at_native_size(tmp_path: Path):
    data = texture_folder(tmp_path / "faces256", size=256, counts=(("train", 2), ("valid", 1), ("test", 1)))
    result = extract(data, "spam", cache_dir=tmp_path / "cache", **QUIET)
    assert result.cache_path.name == "faces256-spam-none-256.h5" and result.n_images == 8
    with open_cache(result.cache_path) as cache:
        attrs = cache.attrs
        assert (attrs["backbone"], attrs["layer"], attrs["pooling"], attrs["image_size"]) == (
            "spam", "threshold=3+order=2+normalisation=joint", "none", 256)
        assert attrs["weights_label"] == "hand-made (no weights)" and attrs["random_features"] is False
        assert (attrs["preprocessing"], attrs["precision"], attrs["architecture_variant"]) == (
            "none", "float32", "handmade-v1")
        assert attrs["resize"] == "none (images as stored)" and '"name": "spam"' in attrs["handmade"]
        stored = np.stack([np.asarray(decode_rgb(data / p)) for p in cache.paths])
        np.testing.assert_array_equal(cache.load()[0], get_handmade("spam").extract(stored).astype(np.float32))


def test_images_of_another_size_are_refused_without_an_explicit_size(textures: Path, tmp_path: Path):
    with pytest.raises(FeaturekitError) as info:
        extract(textures, "spam", cache=tmp_path / "c.h5", **QUIET)
    message = str(info.value)
    assert "without resampling" in message and "is 48x48" in message and "`image_size` 48" in message
    assert not (tmp_path / "c.h5").exists()
    assert extract(textures, "spam", image_size=48, cache=tmp_path / "c.h5", **QUIET).n_images == 40


def test_parameters_are_the_layer_and_part_of_the_identity(textures: Path, tmp_path: Path):
    results = extract_many(textures, "spam", image_size=48, layers=[None, "threshold=2", "order=1+threshold=2"],
                           cache_dir=tmp_path, **QUIET)
    names = [r.cache_path.name for r in results]
    assert names == ["textures-spam-none-48.h5", "textures-spam-threshold=2-none-48.h5",
                     "textures-spam-threshold=2+order=1-none-48.h5"]
    dims, fingerprints = [], set()
    for result in results:
        with open_cache(result.cache_path) as cache:
            dims.append(cache.feature_dim)
            layer = cache.attrs["layer"]
            fingerprints.add(cache.fingerprint)
    assert dims == [3430, 5 * 2 * 5 ** 3, 5 * 2 * 5 ** 2] and layer == "threshold=2+order=1+normalisation=joint"
    assert len(fingerprints) == 3  # each variant is its own cache identity
    # The defaults spelled out name the default cache, which is then up to date.
    again = extract(textures, "spam", image_size=48, layer="threshold=3", cache_dir=tmp_path, **QUIET)
    assert again.cache_path.name == names[0] and again.status == "up-to-date"
    # Another variant at an existing path is refused, naming the layer.
    with pytest.raises(FeaturekitError) as info:
        extract(textures, "spam", image_size=48, layer="threshold=4", cache=results[0].cache_path, **QUIET)
    assert "layer is 'threshold=3+order=2+normalisation=joint' in the cache but " \
           "'threshold=4+order=2+normalisation=joint' was asked for" in str(info.value)


@pytest.mark.parametrize("options, expected", [
    ({"pooling": "avg"}, "one vector per image already: pooling does not apply"),
    ({"preprocessing": "tf"}, "has no preprocessing to override"),
    ({"precision": "bfloat16"}, "has no bfloat16 mode"),
    ({"weights": "imagenet"}, "has no weights"),
    ({"image_size": 4}, "takes image sizes from 8 to 2048"),
    ({"layer": "threshold"}, "name=value pairs joined by '+'"),
    ({"layer": "window=3"}, "has no parameter 'window'"),
    ({"layer": "threshold=x"}, "'threshold' of spam takes an integer from 1 to 10. Received: threshold='x'"),
    ({"layer": "threshold=40"}, "'threshold' of spam takes an integer from 1 to 10. Received: threshold='40'"),
])
def test_options_that_mean_nothing_for_a_hand_made_feature_are_refused(textures: Path, tmp_path: Path, options,
                                                                        expected):
    options = {"image_size": 48, **options}
    with pytest.raises(FeaturekitError) as info:
        extract(textures, "spam", cache_dir=tmp_path, **QUIET, **options)
    assert expected.lower() in str(info.value).lower()
    assert not list(tmp_path.glob("*.h5*"))


def test_spectrum_is_a_backbone_too(textures: Path, tmp_path: Path):
    result = extract(textures, "spectrum", image_size=48, cache_dir=tmp_path, **QUIET)
    with open_cache(result.cache_path) as cache:
        assert cache.feature_dim == 24 and cache.attrs["layer"] == "normalisation=minmax+include_corners=false"
        stored = np.stack([np.asarray(decode_rgb(textures / p)) for p in cache.paths[:3]])
        np.testing.assert_allclose(cache.load()[0][:3], get_handmade("spectrum").extract(stored), rtol=1e-6)


# --- compare and predict -------------------------------------------------------------------------------------


def test_hand_made_caches_go_through_compare_and_predict(textures: Path, tmp_path: Path):
    from featurekit.evaluation.compare import compare_from_options
    from featurekit.predict import predict

    result = extract(textures, "spam", image_size=48, cache_dir=tmp_path / "cache", **QUIET)
    rows = compare_from_options({"cache": [result.cache_path], "probe": ["logreg", "linsvm"], "boot": 0,
                                 "runs_dir": tmp_path / "runs"}, log=lambda m: None)
    assert [row["probe"] for row in rows] == ["logreg", "linsvm"]
    for row in rows:
        assert row["backbone"] == "spam" and row["weights_label"] == "hand-made (no weights)"
        assert not row["random_features"] and row["feature_dim"] == 3430
        assert row["accuracy"] >= 0.9, row  # SPAM tells smooth from noisy textures
    with open_cache(result.cache_path) as cache:
        test_paths = [textures / cache.paths[i] for i in cache.split_indices("test")]
    predictions = predict(rows[0]["model_dir"], test_paths)
    np.testing.assert_allclose([p["p_fake"] for p in predictions], rows[0]["_scores"], rtol=1e-5, atol=1e-6)


def test_cli_extracts_spam_and_refuses_pooling(textures: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from featurekit.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["extract", "--backbone", "spam", "--data", str(textures), "--image-size", "48",
                             "--cache-dir", str(tmp_path), "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert "textures-spam-none-48.h5" in ok.output.replace("\n", "") and "hand-made (no weights)" in ok.output
    refused = runner.invoke(app, ["extract", "--backbone", "spam", "--data", str(textures), "--pooling", "meanstd",
                                  "--cache-dir", str(tmp_path), "--no-progress"])
    assert refused.exit_code == 2 and "Received: --pooling meanstd." in refused.output.replace("\n", " ")
