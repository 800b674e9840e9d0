from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder
from featurekit.cache import open_cache
from featurekit.errors import FeaturekitError
from featurekit.extract import extract
from featurekit.fitting import fit_probe, split_scores
from featurekit.predict import predict


@pytest.fixture(scope="module")
def fitted_on_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = make_image_folder(root / "faces", per_class=40)
    result = extract(data, "test_tiny", pooling="meanstd", cache=root / "c.h5", progress=False, log=lambda m: None)
    fitted = fit_probe(result.cache_path, "logreg", runs_dir=root / "runs", log=lambda m: None)
    return data, result.cache_path, fitted


@pytest.mark.parametrize("probe", ["logreg", "head"])
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


def test_predict_on_a_folder_lists_undecodable_files(fitted_on_images, tmp_path: Path):
    _, _, fitted = fitted_on_images
    folder = make_image_folder(tmp_path / "new", per_class=2)
    (folder / "fake" / "broken.png").write_bytes(b"nope")
    rows = predict(fitted.directory, [folder])
    assert len(rows) == 5
    broken = next(r for r in rows if r["path"].endswith("broken.png"))
    assert broken["p_fake"] is None and "not an image" in broken["error"]


def test_predict_refuses_missing_inputs_and_non_model_folders(fitted_on_images, tmp_path: Path):
    _, _, fitted = fitted_on_images
    with pytest.raises(FeaturekitError, match="Input not found"):
        predict(fitted.directory, [tmp_path / "nothing.jpg"])
    with pytest.raises(FeaturekitError, match="fitted.json"):
        predict(tmp_path, [tmp_path])


def test_predict_refuses_when_the_weights_are_gone(fitted_on_images, tmp_path: Path):
    import json
    import shutil

    _, _, fitted = fitted_on_images
    moved = tmp_path / "model"
    shutil.copytree(fitted.directory, moved)
    meta = json.loads((moved / "fitted.json").read_text())
    meta["embedding"]["weights"] = str(tmp_path / "gone.weights.h5")
    meta["embedding"]["weights_sha256"] = "0" * 64
    (moved / "fitted.json").write_text(json.dumps(meta))
    image = make_image_folder(tmp_path / "imgs", per_class=1) / "real" / "img_00.png"
    with pytest.raises(FeaturekitError, match="not available"):
        predict(moved, [image])
