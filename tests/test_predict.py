from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder
from featurekit.cache import open_cache
from featurekit.errors import FeaturekitError
from featurekit.extraction.extract import extract
from featurekit.evaluation.fitting import fit_probe, split_scores
from featurekit.predict import predict


@pytest.fixture(scope="module")
def fitted_on_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = make_image_folder(root / "faces", per_class=40)
    result = extract(data, "test_tiny", pooling="meanstd", cache=root / "c.h5", progress=False, log=lambda m: None)
    fitted = fit_probe(result.cache_path, "logreg", runs_dir=root / "runs", log=lambda m: None)
    return data, result.cache_path, fitted


@pytest.mark.parametrize("probe", [pytest.param("logreg", marks=pytest.mark.backend), "head"])
def test_predict_agrees_with_the_scores_compare_uses(fitted_on_images, probe, tmp_path: Path):
    data, cache_path, fitted = fitted_on_images
    if probe != "logreg":
        fitted = fit_probe(cache_path, probe, {"epochs": 5}, runs_dir=tmp_path, log=lambda m: None)
    with open_cache(cache_path) as cache:
        scores, _ = split_scores(fitted, cache, "test")
        test_paths = [data / cache.paths[i] for i in cache.split_indices("test")]
    rows = predict(fitted.directory, test_paths)
    assert [Path(r["path"]) for r in rows] == test_paths
    np.testing.assert_allclose([r["p_fake"] for r in rows], scores, rtol=1e-5, atol=1e-6)
    expected = ["fake" if s >= fitted.threshold else "real" for s in scores]
    assert [r["label"] for r in rows] == expected


@pytest.mark.backend
def test_predict_on_a_folder_lists_undecodable_files(fitted_on_images, tmp_path: Path):
    _, _, fitted = fitted_on_images
    folder = make_image_folder(tmp_path / "new", per_class=2)
    (folder / "fake" / "broken.png").write_bytes(b"nope")
    rows = predict(fitted.directory, [folder])
    assert len(rows) == 5
    broken = next(r for r in rows if r["path"].endswith("broken.png"))
    assert broken["p_fake"] is None and "not an image" in broken["error"]


def test_predict_max_pixels_zero_means_no_limit_as_on_the_command_line(fitted_on_images, tmp_path: Path):
    data, _, fitted = fitted_on_images
    image = data / "real" / "img_00.png"
    unlimited, = predict(fitted.directory, [image], max_pixels=0)
    assert "error" not in unlimited and unlimited["p_fake"] == predict(fitted.directory, [image])[0]["p_fake"]
    too_small, = predict(fitted.directory, [image], max_pixels=16)
    assert too_small["p_fake"] is None and too_small["error"]


def test_predict_refuses_missing_inputs_and_non_model_folders(fitted_on_images, tmp_path: Path):
    _, _, fitted = fitted_on_images
    with pytest.raises(FeaturekitError, match="Input not found"):
        predict(fitted.directory, [tmp_path / "nothing.jpg"])
    with pytest.raises(FeaturekitError, match="fitted.json"):
        predict(tmp_path, [tmp_path])


def test_predict_refuses_when_the_weights_are_gone(tmp_path: Path):
    from featurekit.backbones import create_backbone

    data = make_image_folder(tmp_path / "faces", per_class=10)
    weights = tmp_path / "tiny.weights.h5"
    create_backbone("test_tiny", weights="none", seed=4).save_weights(weights)
    result = extract(data, "test_tiny", weights=str(weights), pooling="avg", cache=tmp_path / "c.h5", progress=False,
                     log=lambda m: None)
    fitted = fit_probe(result.cache_path, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    weights.unlink()
    with pytest.raises(FeaturekitError, match="not available"):
        predict(fitted.directory, [data / "real" / "img_00.png"])


def _edited_copy(fitted, tmp_path: Path, **changes) -> Path:
    """A copy of the fitted-model folder whose fitted.json has `changes` in its embedding record."""
    import json
    import shutil

    moved = tmp_path / "model"
    shutil.copytree(fitted.directory, moved)
    meta = json.loads((moved / "fitted.json").read_text())
    meta["embedding"].update(changes)
    (moved / "fitted.json").write_text(json.dumps(meta))
    return moved


@pytest.mark.backend
@pytest.mark.parametrize("field, value", [("pooling", "avg"), ("precision", "float16"), ("layer", "pool1"),
                                          ("image_size", 48)])
def test_an_edited_fitted_json_is_refused_naming_the_field(fitted_on_images, tmp_path: Path, field, value):
    data, _, fitted = fitted_on_images
    edited = _edited_copy(fitted, tmp_path, **{field: value})
    with pytest.raises(FeaturekitError, match=rf"fitted.json says {field} is {value!r}, but its cache"):
        predict(edited, [data / "real" / "img_00.png"])


def test_an_edited_fitted_json_is_refused_by_the_cli_with_exit_code_2(fitted_on_images, tmp_path: Path):
    from typer.testing import CliRunner

    from featurekit.cli import app

    data, _, fitted = fitted_on_images
    edited = _edited_copy(fitted, tmp_path, pooling="max")
    result = CliRunner().invoke(app, ["predict", "--model", str(edited), str(data / "real" / "img_00.png")])
    assert result.exit_code == 2 and "pooling" in result.output


def test_without_its_cache_an_edited_record_is_refused_by_the_fingerprint(fitted_on_images, tmp_path: Path):
    import json

    data, cache_path, fitted = fitted_on_images
    image = data / "real" / "img_00.png"
    elsewhere = tmp_path / "gone.h5"
    untouched = _edited_copy(fitted, tmp_path)
    meta = json.loads((untouched / "fitted.json").read_text())
    meta["cache"] = str(elsewhere)  # the cache is not here
    (untouched / "fitted.json").write_text(json.dumps(meta))
    assert predict(untouched, [image])[0]["p_fake"] == pytest.approx(predict(fitted.directory, [image])[0]["p_fake"])
    meta["embedding"]["pooling"] = "avg"
    (untouched / "fitted.json").write_text(json.dumps(meta))
    with pytest.raises(FeaturekitError, match="changed after fitting.*pooling"):
        predict(untouched, [image])


def test_a_record_that_disagrees_with_its_model_is_refused(fitted_on_images, tmp_path: Path):
    import json

    data, _, fitted = fitted_on_images
    edited = _edited_copy(fitted, tmp_path, feature_dim=16)
    meta = json.loads((edited / "fitted.json").read_text())
    meta["cache"] = str(tmp_path / "gone.h5")
    (edited / "fitted.json").write_text(json.dumps(meta))
    with pytest.raises(FeaturekitError, match=r"feature_dim is 16, but the fitted estimator \(n_features_in_\) says 32"):
        predict(edited, [data / "real" / "img_00.png"])


@pytest.mark.slow  # MobileNet extraction, a fit and two predictions
def test_a_known_weights_file_that_moved_is_found_again_by_its_content(tmp_path: Path):
    """A cache names its weights file by absolute path; when that copy is gone, a file featurekit knows by
    sha256 (here the shipped MobileNet weights) is used instead, and predict still gives the same scores."""
    import shutil

    from featurekit.backbones.weights import SHIPPED_WEIGHTS_DIR

    data = make_image_folder(tmp_path / "faces", per_class=10, size=40)
    copy = tmp_path / "elsewhere" / "mobilenet_v1_0.25_224_imagenet_notop.weights.h5"
    copy.parent.mkdir()
    shutil.copy(SHIPPED_WEIGHTS_DIR / copy.name, copy)
    result = extract(data, "mobilenet", weights=str(copy), image_size=32, pooling="avg", cache=tmp_path / "c.h5",
                     progress=False, log=lambda m: None)
    fitted = fit_probe(result.cache_path, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    image = data / "fake" / "img_00.png"
    before = predict(fitted.directory, [image])[0]["p_fake"]
    copy.unlink()
    assert predict(fitted.directory, [image])[0]["p_fake"] == pytest.approx(before, abs=1e-6)
