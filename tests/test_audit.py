"""The leak audit: planted duplicates across and within splits, near-duplicate embeddings, a planted
JPEG-quality shortcut, balanced data that must stay quiet, and the report as JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from featurekit.audit import (
    audit_cache,
    audit_data,
    estimate_jpeg_quality,
    find_near_duplicates,
    read_file_properties,
)
from featurekit.errors import FeaturekitError
from featurekit.hashing import file_sha256

SPLIT_SIZES = {"train": 24, "valid": 8, "test": 16}  # images per class and split


def face_like(seed: int, size: int = 32) -> np.ndarray:
    """Smooth random blobs: compressible like photos, so JPEG quality changes the file visibly."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, (4, 4, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
    return np.clip(image + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)


def make_split_folder(root: Path, quality: dict[str, int] | None = None, sizes=SPLIT_SIZES) -> Path:
    """DIR/{train,valid,test}/{real,fake}/*.jpg from one image process for both classes."""
    from PIL import Image

    quality = quality or {"real": 85, "fake": 85}
    seed = 0
    for split, count in sizes.items():
        for name in ("real", "fake"):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                seed += 1
                Image.fromarray(face_like(seed)).save(folder / f"{name}_{i:03d}.jpg", quality=quality[name])
    return root


def write_cache(path: Path, data_root: Path, rows: list[tuple[str, int, str]], features: np.ndarray,
                sha256: list[str] | None = None) -> Path:
    """A finished cache through the real writer, with the given (path, label, split) rows."""
    from featurekit.cache import PartialCache, finalize_cache
    from featurekit.data import Sample

    digests = sha256 or [file_sha256(data_root / p) for p, _, _ in rows]
    samples = [Sample(p, y, split, digest) for (p, y, split), digest in zip(rows, digests)]
    partial = PartialCache(path)
    partial.start({"n_batches": 1})
    partial.write_batch(0, np.arange(len(samples)), features, np.array([], int), [], "float32")
    attrs = dict(backbone="test_tiny", weights="none", weights_label="random-init (seed 0)", weights_sha256="",
                 random_features=True, layer="pool2", pooling="avg", image_size=32, preprocessing="tf",
                 feature_dim=features.shape[1], dtype="float32", data_fingerprint="synthetic",
                 class_names=["real", "fake"], versions={}, config={}, created_utc="2026-01-01T00:00:00+00:00",
                 data_root=str(data_root))
    finalize_cache(partial, samples, attrs)
    return path


def folder_rows(root: Path) -> list[tuple[str, int, str]]:
    from featurekit.data import scan_image_folder

    return [(s.path, s.label, s.split) for s in scan_image_folder(root).samples]


# ----------------------------------------------------------------------------------- exact duplicates


def test_planted_duplicate_across_splits_is_listed_and_one_within_a_split_is_not(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces")
    shutil.copy(root / "train/fake/fake_003.jpg", root / "test/fake/copy_of_train.jpg")  # a leak
    shutil.copy(root / "valid/real/real_001.jpg", root / "valid/real/again.jpg")  # not a leak
    report = audit_data(root, shortcuts=False)

    assert report.has_leaks
    assert len(report.exact_cross_split) == 1
    group = report.exact_cross_split[0]
    assert {(m.path, m.split) for m in group.members} == {("train/fake/fake_003.jpg", "train"),
                                                          ("test/fake/copy_of_train.jpg", "test")}
    assert group.splits == ["train", "test"] and not group.label_conflict
    assert [[m.path for m in g.members] for g in report.exact_within_split] == [
        ["valid/real/again.jpg", "valid/real/real_001.jpg"]]
    leaks = [w for w in report.warnings if w.startswith("LEAK")]
    assert len(leaks) == 1 and "copy_of_train.jpg" in leaks[0] and "again.jpg" not in leaks[0]


def test_duplicate_with_both_labels_is_called_a_label_conflict(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces")
    shutil.copy(root / "train/real/real_000.jpg", root / "test/fake/mislabelled.jpg")
    report = audit_data(root, shortcuts=False)
    assert report.exact_cross_split[0].label_conflict
    assert "CONFLICTING labels" in report.warnings[0]


def test_clean_folder_has_no_leaks(tmp_path: Path):
    report = audit_data(make_split_folder(tmp_path / "faces"), shortcuts=False)
    assert not report.has_leaks and report.exact_cross_split == [] and report.exact_within_split == []
    assert report.warnings == []


# ------------------------------------------------------------------------------------ near duplicates


def test_near_duplicate_embeddings_across_splits_are_listed_not_within_a_split(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces")
    rows = folder_rows(root)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(rows), 16)).astype(np.float32)
    index = {path: i for i, (path, _, _) in enumerate(rows)}
    train_row, test_row = index["train/real/real_005.jpg"], index["test/fake/fake_002.jpg"]
    features[test_row] = 3.0 * features[train_row] + 0.01 * rng.normal(size=16)  # same direction: cosine ~ 1
    same_split = index["train/fake/fake_007.jpg"]
    features[same_split] = features[index["train/real/real_009.jpg"]]  # identical, but both in train
    cache = write_cache(tmp_path / "c.h5", root, rows, features)

    report = audit_cache(cache, shortcuts=False)
    assert report.near_duplicates.count == 1 and report.has_leaks
    pair = report.near_duplicates.listed[0]
    assert pair.similarity > 0.99
    assert (pair.first.path, pair.first.split) == ("train/real/real_005.jpg", "train")
    assert (pair.second.path, pair.second.split) == ("test/fake/fake_002.jpg", "test")
    assert any(w.startswith("LEAK") and "near-duplicates" in w for w in report.warnings)

    strict = audit_cache(cache, shortcuts=False, near_duplicate_threshold=0.99999999)
    assert strict.near_duplicates.count == 0 and not strict.has_leaks


def test_exact_duplicates_are_not_listed_again_as_near_duplicates(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces")
    shutil.copy(root / "train/real/real_000.jpg", root / "valid/real/copy.jpg")
    rows = folder_rows(root)
    features = np.random.default_rng(1).normal(size=(len(rows), 8)).astype(np.float32)
    index = {path: i for i, (path, _, _) in enumerate(rows)}
    features[index["valid/real/copy.jpg"]] = features[index["train/real/real_000.jpg"]]
    report = audit_cache(write_cache(tmp_path / "c.h5", root, rows, features), shortcuts=False)
    assert len(report.exact_cross_split) == 1 and report.near_duplicates.count == 0


def test_near_duplicate_search_streams_in_blocks_with_the_same_result(tmp_path: Path):
    import h5py

    rng = np.random.default_rng(2)
    n = 700
    features = rng.normal(size=(n, 32)).astype(np.float32)
    splits = rng.choice(np.array(["train", "valid", "test"]), size=n, p=[0.7, 0.15, 0.15])
    train, later = np.flatnonzero(splits == "train"), np.flatnonzero(splits != "train")
    planted = {(int(train[k]), int(later[k])) for k in range(0, 60, 6)}
    for a, b in planted:
        features[b] = features[a] * 0.5 + 1e-3 * rng.normal(size=32)
    in_memory, count = find_near_duplicates(features, splits, threshold=0.99)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("features", data=features, chunks=(50, 32))
        # A budget this small forces 64-row blocks re-read from the file for every block pair.
        streamed, streamed_count = find_near_duplicates(f["features"], splits, threshold=0.99, memory_budget_bytes=1)
    assert count == streamed_count == len(planted)
    assert {tuple(sorted((i, j))) for _, i, j in in_memory} == {tuple(sorted(p)) for p in planted}
    assert [(i, j) for _, i, j in in_memory] == [(i, j) for _, i, j in streamed]
    listed, total = find_near_duplicates(features, splits, threshold=0.99, max_listed=3)
    assert total == len(planted) and len(listed) == 3
    assert [s for s, _, _ in listed] == sorted((s for s, _, _ in in_memory), reverse=True)[:3]


def test_near_duplicates_are_centred_so_non_negative_features_do_not_all_match():
    rng = np.random.default_rng(4)
    features = np.abs(rng.normal(size=(200, 64))).astype(np.float32) + 10.0  # positive, like pooled ReLU features
    splits = np.array(["train", "test"] * 100)
    features[101] = features[0]  # one real copy, train vs test
    raw_pairs, raw_count = find_near_duplicates(features, splits, threshold=0.99, center=False)
    pairs, count = find_near_duplicates(features, splits, threshold=0.99)
    assert raw_count > 1000  # every pair of unrelated rows looks alike uncentred
    assert count == 1 and (pairs[0][1], pairs[0][2]) == (0, 101) and pairs[0][0] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------- balance


def test_class_balance_per_split_and_an_imbalanced_split_is_warned(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces")
    for path in sorted((root / "test/real").iterdir())[:12]:  # test keeps 4 real, 16 fake
        path.unlink()
    report = audit_data(root, shortcuts=False)
    assert report.balance["test"]["counts"] == {"real": 4, "fake": 16}
    assert report.balance["test"]["fractions"]["fake"] == pytest.approx(0.8)
    assert report.balance["train"]["fractions"] == {"real": 0.5, "fake": 0.5}
    imbalance = [w for w in report.warnings if w.startswith("IMBALANCE")]
    assert len(imbalance) == 1 and "test split" in imbalance[0]


# ------------------------------------------------------------------------------------------ shortcuts


@pytest.mark.parametrize("quality", [10, 50, 75, 90, 95, 100])
def test_jpeg_quality_estimate_recovers_the_encoder_setting(tmp_path: Path, quality: int):
    from PIL import Image

    path = tmp_path / "q.jpg"
    Image.fromarray(face_like(0, 64)).save(path, quality=quality)
    properties = read_file_properties(path)
    assert properties["jpeg_quality"] == quality
    assert [properties[name] for name in ("width", "height", "mode", "format")] == [64, 64, "RGB", "JPEG"]


def test_non_jpeg_has_no_quality_and_mean_colour_is_measured(tmp_path: Path):
    from PIL import Image

    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 2] = 200, 50
    Image.fromarray(pixels).save(tmp_path / "p.png")
    properties = read_file_properties(tmp_path / "p.png")
    assert properties["jpeg_quality"] is None and properties["format"] == "PNG"
    assert [properties[name] for name in ("mean_red", "mean_green", "mean_blue")] == [200.0, 0.0, 50.0]
    assert estimate_jpeg_quality(None) is None


def test_planted_jpeg_quality_shortcut_is_warned_loudly(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces", quality={"real": 70, "fake": 95})
    report = audit_data(root, n_boot=200)
    shortcuts = report.shortcuts
    assert shortcuts.verdict == "SHORTCUT"
    assert shortcuts.property_auc["jpeg_quality"] == 1.0 and "jpeg_quality" in shortcuts.flagged
    assert shortcuts.probes["logistic_regression"]["roc_auc"] > 0.9
    loud = [w for w in report.warnings if w.startswith("SHORTCUT")]
    assert any("jpeg_quality" in w for w in loud)
    assert not report.has_leaks and report.has_shortcuts


def test_balanced_synthetic_data_gives_no_shortcut_warning(tmp_path: Path):
    # A test split of 2 x 64 images: with 2 x 16, chance alone sends one of the eleven AUCs to 0.31 [0.15, 0.48]
    # (mean_blue), far below chance with an interval that excludes it: a signal by the audit's rule.
    report = audit_data(make_split_folder(tmp_path / "faces", sizes={**SPLIT_SIZES, "test": 64}), n_boot=200)
    shortcuts = report.shortcuts
    assert shortcuts.verdict == "near chance" and shortcuts.flagged == []
    assert shortcuts.property_auc["jpeg_quality"] == 0.5 and shortcuts.property_auc["format"] == 0.5
    assert (shortcuts.n_train, shortcuts.n_eval, shortcuts.eval_split) == (48, 128, "test")
    assert report.warnings == []


def test_unreadable_file_is_noted_not_raised(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces")
    (root / "train/real/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    report = audit_data(root, n_boot=50)
    assert [Path(p).name for p, _ in report.shortcuts.unreadable] == ["broken.jpg"]
    assert any("could not be read" in note for note in report.notes)
    assert report.shortcuts.n_train == 48  # the broken file is left out


def test_cache_audit_probes_the_recorded_data_folder(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces", quality={"real": 70, "fake": 95})
    rows = folder_rows(root)
    cache = write_cache(tmp_path / "c.h5", root, rows, np.random.default_rng(3).normal(size=(len(rows), 8)).astype(np.float32))
    report = audit_cache(cache, n_boot=100)
    assert "jpeg_quality" in report.shortcuts.flagged

    (root / "train/real/real_000.jpg").write_bytes((root / "train/real/real_001.jpg").read_bytes())
    changed = audit_cache(cache, n_boot=100)
    assert changed.shortcuts.n_train == 47 and any("changed since extraction" in n for n in changed.notes)

    moved = tmp_path / "moved"
    root.rename(moved)
    lost = audit_cache(cache, n_boot=100)
    assert lost.shortcuts.verdict == "not run" and "data_root" in lost.shortcuts.skipped
    assert audit_cache(cache, data_root=moved, n_boot=100).shortcuts.verdict == "SHORTCUT"


# -------------------------------------------------------------------------------------- report, input


def test_report_is_plain_json_with_the_flags_compare_needs(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces", quality={"real": 70, "fake": 95})
    shutil.copy(root / "train/fake/fake_000.jpg", root / "valid/fake/leak.jpg")
    report = audit_data(root, n_boot=50)
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["has_leaks"] is True and payload["has_shortcuts"] is True
    assert payload["exact_duplicates_across_splits"][0]["splits"] == ["train", "valid"]
    assert payload["shortcuts"]["verdict"] == "SHORTCUT"
    assert payload["near_duplicates"] is None  # a data folder has no embeddings
    assert payload["warnings"] == report.warnings and payload["warnings"][0].startswith("LEAK")


@pytest.mark.parametrize("kwargs,named", [
    ({"shortcut_auc": 0.4}, "shortcut_auc=0.4"),
    ({"balance_tolerance": 0}, "balance_tolerance=0"),
    ({"n_boot": 0}, "n_boot=0"),
    ({"workers": 0}, "workers=0"),  # the declared bounds of the `audit` options hold for library calls too
    ({"shortcuts": "no"}, "shortcuts='no'"),
])
def test_bad_parameters_are_refused_naming_the_parameter(tmp_path: Path, kwargs, named):
    with pytest.raises(FeaturekitError, match=named):
        audit_data(tmp_path, **kwargs)


def test_bad_near_duplicate_threshold_is_refused(tmp_path: Path):
    with pytest.raises(FeaturekitError, match="near_duplicate_threshold=1.5"):
        audit_cache(tmp_path / "none.h5", near_duplicate_threshold=1.5)
