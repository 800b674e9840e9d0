"""A cache's contents are verified, not only its attributes (issue 16 item 4).

Features zeroed or shuffled, labels flipped, splits or paths changed, `pooling` or the fingerprint edited, a
`positive_class` that contradicts `class_names`: each is refused naming what changed, before a probe is fitted
or reused; a probe fitted on other contents of a cache is refitted, not reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import QUIET, separable_cache
from featurekit.cache import open_cache
from featurekit.evaluation.compare import compare
from featurekit.errors import FeaturekitError
from featurekit.evaluation.fitting import fit_probe, load_fitted


def _edit(path: Path, change) -> None:
    with h5py.File(path, "r+") as f:
        change(f)


def _zero_features(f):
    f["features"][...] = 0


def _shuffle_features(f):
    f["features"][...] = f["features"][()][np.random.default_rng(0).permutation(f["features"].shape[0])]


def _flip_labels(f):
    f["labels"][...] = 1 - f["labels"][()]


def _move_a_test_row_to_train(f):
    splits = f["splits"][()]
    splits[np.flatnonzero(splits == b"test")[0]] = b"train"
    f["splits"][...] = splits


def _rename_a_path(f):
    f["paths"][0] = "real/renamed.png"


@pytest.fixture
def fitted(tmp_path: Path) -> tuple[Path, Path]:
    cache = separable_cache(tmp_path / "sep.h5")
    rows = compare([cache], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, **QUIET)
    assert not rows[0]["reused"] and rows[0]["accuracy"] > 0.8
    return cache, tmp_path / "runs"


@pytest.mark.parametrize("change, what", [
    (_zero_features, "features"), (_shuffle_features, "features"), (_flip_labels, "labels"),
    (_move_a_test_row_to_train, "splits"), (_rename_a_path, "paths"),
])
def test_changed_contents_are_refused_before_a_probe_is_reused_or_fitted(fitted, change, what):
    cache, runs = fitted
    _edit(cache, change)
    with pytest.raises(FeaturekitError, match=rf"changed after it was made: its {what} differ"):
        compare([cache], ["logreg"], runs_dir=runs, n_boot=0, **QUIET)
    with pytest.raises(FeaturekitError, match=rf"its {what} differ"):
        fit_probe(cache, "logreg", runs_dir=runs, **QUIET)


@pytest.mark.parametrize("attribute, value, message", [
    ("pooling", "max", r"changed after it was made: pooling is 'max' but the cache was made with 'avg'"),
    ("view", "jpeg:50", r"changed after it was made: view is 'jpeg:50' but the cache was made with ''"),
    ("fingerprint", "0123456789abcdef", r"changed after it was made: its fingerprint '0123456789abcdef' is not"),
    ("positive_class", "real", r"positive_class 'real' contradicts class_names \['real', 'fake'\] \(label 1 is 'fake'\)"),
])
def test_edited_attributes_are_refused_on_open(fitted, attribute, value, message):
    cache, runs = fitted
    _edit(cache, lambda f: f.attrs.__setitem__(attribute, value))
    with pytest.raises(FeaturekitError, match=message):
        open_cache(cache)
    with pytest.raises(FeaturekitError, match=message):
        compare([cache], ["logreg"], runs_dir=runs, n_boot=0, **QUIET)


def test_a_probe_fitted_on_other_contents_is_refitted_not_reused(tmp_path: Path):
    """Re-extracted contents keep the fingerprint (identity and shape): only the checksums tell them apart."""
    cache = separable_cache(tmp_path / "sep.h5", seed=0)
    runs = tmp_path / "runs"
    first = compare([cache], ["logreg"], runs_dir=runs, n_boot=0, **QUIET)[0]
    recorded = json.loads((Path(first["model_dir"]) / "fitted.json").read_text())["content_checksums"]
    with open_cache(cache) as reader:
        fingerprint = reader.fingerprint
        assert recorded == reader.content_checksums and set(recorded) >= {"features", "labels", "paths", "splits"}
    cache.unlink()
    separable_cache(cache, seed=1)
    with open_cache(cache) as reader:
        assert reader.fingerprint == fingerprint and reader.content_checksums != recorded
        with pytest.raises(FeaturekitError, match="fitted on other contents"):
            load_fitted(first["model_dir"], reader)
    again = compare([cache], ["logreg"], runs_dir=runs, n_boot=0, **QUIET)[0]
    assert not again["reused"]
    assert compare([cache], ["logreg"], runs_dir=runs, n_boot=0, **QUIET)[0]["reused"]


def test_a_cache_made_before_checksums_still_reads_with_a_note(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    _edit(cache, lambda f: f.attrs.__delitem__("content_checksums"))
    messages: list[str] = []
    with open_cache(cache) as reader:
        assert reader.content_checksums is None
        assert "cannot be verified" in reader.verify_contents()[0]
    rows = compare([cache], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, log=messages.append)
    assert rows[0]["accuracy"] > 0.8 and any("made before featurekit recorded content checksums" in m for m in messages)


def test_verification_is_computed_once_per_file_identity(tmp_path: Path, monkeypatch):
    import featurekit.cache.checksums as checksums

    cache = separable_cache(tmp_path / "sep.h5")
    computed = []
    real = checksums.content_checksums_of
    monkeypatch.setattr(checksums, "content_checksums_of", lambda f: computed.append(1) or real(f))
    for _ in range(3):
        with open_cache(cache) as reader:
            assert reader.verify_contents() == []
    assert len(computed) == 1
    _edit(cache, _flip_labels)
    with open_cache(cache) as reader, pytest.raises(FeaturekitError, match="its labels differ"):
        reader.verify_contents()
    assert len(computed) == 2
