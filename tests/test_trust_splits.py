"""Tests that tell the splits apart: early stopping watches valid, compare reports test, predict checks weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_cache, make_image_folder, quiet
from featurekit.cache import open_cache
from featurekit.errors import FeaturekitError
from featurekit.evaluation.fitting import fit_probe, split_scores
from featurekit.metrics import roc_auc

HEAD = dict(units=16, epochs=4, batch_size=32, learning_rate=1e-2)


def split_cache(path: Path, sizes: dict[str, int], shift: dict[str, float], invert: tuple[str, ...] = (),
                d: int = 8, seed: int = 0) -> Path:
    """Two Gaussian classes, each split its own size and class separation; labels of `invert` swapped."""
    rng = np.random.default_rng(seed)
    splits = np.concatenate([[split] * size for split, size in sizes.items()])
    labels = np.arange(len(splits)) % 2
    class_shift = np.array([shift[s] for s in splits]) * labels
    features = (rng.normal(size=(len(splits), d)) + class_shift[:, None]).astype(np.float32)
    stored = np.where(np.isin(splits, invert), 1 - labels, labels)
    return make_cache(path, features, stored, splits)


def test_early_stopping_scores_the_valid_split_not_train(tmp_path: Path):
    # Valid's labels are inverted relative to train: a probe learnt on train scores far below chance there,
    # and far above it on train, so val_auc tells which split it was computed on.
    cache = split_cache(tmp_path / "c.h5", {"train": 160, "valid": 60, "test": 40},
                        {"train": 2.0, "valid": 2.0, "test": 2.0}, invert=("valid",))
    fitted = fit_probe(cache, "head", HEAD, out=tmp_path / "head", log=quiet)
    history = fitted.estimator.history_
    assert len(history["val_auc"]) == len(history["loss"]) >= 1
    assert max(history["val_auc"]) < 0.2
    with open_cache(cache) as reader:
        scores, labels = split_scores(fitted, reader, "valid")
    assert history["val_auc"][fitted.estimator.best_epoch_] == pytest.approx(roc_auc(labels, scores), abs=1e-3)


def test_compare_scores_the_test_split_not_valid(tmp_path: Path):
    from featurekit.evaluation.compare import compare

    # Valid and test differ in size and in how well the classes separate: each figure says which split it is.
    cache = split_cache(tmp_path / "c.h5", {"train": 200, "valid": 80, "test": 50},
                        {"train": 2.0, "valid": 3.0, "test": 0.8})
    rows = compare([cache], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, log=quiet)
    fitted_dir = tmp_path / "runs" / "c" / "logreg"
    from featurekit.evaluation.fitting import load_fitted

    with open_cache(cache) as reader:
        fitted = load_fitted(fitted_dir, reader)
        test_scores, test_labels = split_scores(fitted, reader, "test")
        valid_scores, valid_labels = split_scores(fitted, reader, "valid")
    assert rows[0]["n_test"] == 50
    assert rows[0]["roc_auc"] == pytest.approx(roc_auc(test_labels, test_scores), abs=1e-4)
    assert abs(roc_auc(valid_labels, valid_scores) - rows[0]["roc_auc"]) > 0.05  # the two splits differ


def test_predict_refuses_a_weights_file_changed_under_a_fitted_model(tmp_path: Path):
    from featurekit.backbones import create_backbone
    from featurekit.extraction.extract import extract
    from featurekit.predict import predict

    data = make_image_folder(tmp_path / "faces", per_class=10)
    weights = tmp_path / "tiny.weights.h5"
    create_backbone("test_tiny", weights="none", seed=4).save_weights(weights)
    result = extract(data, "test_tiny", weights=str(weights), pooling="avg", cache=tmp_path / "c.h5", progress=False,
                     log=quiet)
    fitted = fit_probe(result.cache_path, "logreg", runs_dir=tmp_path / "runs", log=quiet)
    image = data / "real" / "img_00.png"
    assert predict(fitted.directory, [image])[0]["p_fake"] is not None
    weights.unlink()
    create_backbone("test_tiny", weights="none", seed=5).save_weights(weights)  # same name, other weights
    with pytest.raises(FeaturekitError, match="The weights file has changed since the model's cache was extracted"):
        predict(fitted.directory, [image])
