"""Fusion: a probe on several caches of the same images, concatenated row by row.

A planted signal split across two caches (each alone at chance, together separable), alignment by path
and sha256 (other order, skipped files, refused mismatches), streaming under a zero memory budget,
`fit --fuse`, compare's fused rows (flag and config), and predict through every member's embedder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import QUIET, make_cache, make_image_folder
from featurekit.evaluation.compare import compare, compare_from_options
from featurekit.errors import FeaturekitError
from featurekit.evaluation.fitting import fit_probe, split_scores
from featurekit.cache.fusion import FusedCache, fused_fingerprint
from featurekit.metrics import roc_auc

N = 1000
# Little regularisation: the fused direction (B - A) is 1/40 of the nuisance's spread, and logistic
# regression's default C=1 would shrink it away on a few hundred rows.
SHARP = {"logreg": {"C": 1e4}}


def _splits(n: int) -> np.ndarray:
    """Pairs of rows (one real, one fake) share a split: 60/20/20, both classes everywhere."""
    return np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]


def split_signal(tmp_path: Path, n: int = N, seed: int = 0) -> tuple[Path, Path]:
    """Cache A holds a large nuisance Z; cache B holds Z plus a small class shift. Alone, each is near chance
    (B's shift is 1/40 of Z's spread); together, B - A gives the class almost exactly."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    nuisance = rng.normal(scale=20.0, size=n)
    a = np.column_stack([nuisance, rng.normal(size=n)]).astype(np.float32)
    b = np.column_stack([nuisance + (labels - 0.5) + rng.normal(scale=0.05, size=n), rng.normal(size=n)])
    splits = _splits(n)
    return (make_cache(tmp_path / "a.h5", a, labels, splits, layer="pool1"),
            make_cache(tmp_path / "b.h5", b.astype(np.float32), labels, splits, layer="pool2"))


def write_rows(path: Path, rows: list[tuple[str, int, str, str]], features: np.ndarray,
               skipped: list[tuple[str, int, str, str]] = (), **attrs) -> Path:
    """A finished cache with explicit (path, label, split, sha256) rows, and files listed as skipped."""
    from featurekit.cache import PartialCache, finalize_cache
    from featurekit.data import Sample

    samples = [Sample(*row) for row in [*rows, *skipped]]
    partial = PartialCache(path)
    partial.start({"n_batches": 1})
    partial.write_batch(0, np.arange(len(rows)), features, np.arange(len(rows), len(samples)),
                        ["not an image"] * len(skipped), "float32")
    base = dict(backbone="test_tiny", weights="none", weights_label="random-init (seed 0)", weights_sha256="",
                random_features=True, layer=path.stem, pooling="avg", image_size=32, preprocessing="tf",
                feature_dim=features.shape[1], dtype="float32", data_fingerprint=f"synthetic-{path.name}",
                class_names=["real", "fake"], versions={}, config={}, created_utc="2026-01-01T00:00:00+00:00")
    finalize_cache(partial, samples, {**base, **attrs})
    return path


def table(n: int = 40) -> list[tuple[str, int, str, str]]:
    splits = _splits(n)
    return [(f"{'fake' if i % 2 else 'real'}/{i:03d}.png", i % 2, str(splits[i]), f"{i:064x}") for i in range(n)]


def test_a_signal_split_across_two_caches_needs_both(tmp_path: Path):
    a, b = split_signal(tmp_path)
    rows = compare([a, b, [a, b]], ["logreg"], probe_params=SHARP, runs_dir=tmp_path / "runs", n_boot=0, **QUIET)
    auc = {row["cache"]: row["roc_auc"] for row in rows}
    assert abs(auc["a.h5"] - 0.5) < 0.1 and abs(auc["b.h5"] - 0.5) < 0.1, auc
    fused = next(row for row in rows if row["cache"].startswith("fuse("))
    assert fused["roc_auc"] > 0.97 and fused["feature_dim"] == 4
    assert fused["backbone"] == "fuse(test_tiny/pool1/avg+test_tiny/pool2/avg)" or \
        fused["backbone"] == "fuse(test_tiny/pool2/avg+test_tiny/pool1/avg)"
    assert Path(fused["model_dir"]).parent.name.startswith("fuse-")


def test_member_order_does_not_matter(tmp_path: Path):
    a, b = split_signal(tmp_path)
    with FusedCache([a, b]) as ab, FusedCache([b, a]) as ba:
        assert ab.fingerprint == ba.fingerprint == fused_fingerprint([ab.members[0].fingerprint,
                                                                        ab.members[1].fingerprint])
        np.testing.assert_array_equal(ab.load("train")[0], ba.load("train")[0])
        assert ab.feature_dim == 4 and ab.nbytes("train") == len(ab.split_indices("train")) * 4 * 4
    first = fit_probe([a, b], "logreg", runs_dir=tmp_path / "runs", **QUIET)
    second = fit_probe([b, a], "logreg", runs_dir=tmp_path / "runs", **QUIET)
    assert first.directory == second.directory
    members = json.loads((first.directory / "fitted.json").read_text())["members"]
    assert [m["path"] for m in members] == [str(m.path) for m in FusedCache([a, b]).members]
    assert all(m["embedding"]["backbone"] == "test_tiny" and m["fingerprint"] for m in members)


def test_rows_are_aligned_by_path_whatever_their_order(tmp_path: Path):
    rows = table()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(rows), 3)).astype(np.float32)
    a = write_rows(tmp_path / "a.h5", rows, features)
    order = rng.permutation(len(rows))
    b = write_rows(tmp_path / "b.h5", [rows[i] for i in order], 10 * features[order])
    with FusedCache([a, b]) as fused:
        x, y = fused.load()
        first_is_a = fused.members[0].path == a
        own, scaled = (x[:, :3], x[:, 3:]) if first_is_a else (x[:, 3:], x[:, :3])
        np.testing.assert_allclose(scaled, 10 * own, rtol=1e-6)
        # Fused rows follow the first member's order, and each keeps its own label and split.
        assert fused.paths == fused.members[0].paths
        by_path = {path: (label, split) for path, label, split, _ in rows}
        assert [by_path[p] for p in fused.paths] == list(zip(y.tolist(), fused.splits.tolist()))


@pytest.mark.parametrize("change, message", [
    ({"split": "test"}, r"row 4 of .* \(real/004.png\) has split 'train', but row 4 of .* has 'test'"),
    ({"sha256": "f" * 64}, r"row 4 of .* \(real/004.png\) has sha256"),
])
def test_rows_that_differ_are_refused_naming_the_row(tmp_path: Path, change, message):
    rows = table()
    features = np.ones((len(rows), 2), np.float32)
    a = write_rows(tmp_path / "a.h5", rows, features)
    changed = list(rows)
    path, label, split, sha = changed[4]
    changed[4] = (path, label, change.get("split", split), change.get("sha256", sha))
    b = write_rows(tmp_path / "b.h5", changed, 2 * features)
    with pytest.raises(FeaturekitError, match=message):
        FusedCache([a, b])


def test_a_row_missing_from_a_member_is_refused_unless_that_member_skipped_it(tmp_path: Path):
    rows = table()
    features = np.arange(len(rows) * 2, dtype=np.float32).reshape(-1, 2)
    a = write_rows(tmp_path / "a.h5", rows, features)
    lacking = write_rows(tmp_path / "lacking.h5", rows[:7] + rows[8:], np.delete(features, 7, axis=0) + 1)
    with pytest.raises(FeaturekitError, match=r"\(fake/007.png\) is not in .*nor among the files it skipped"):
        FusedCache([a, lacking])
    skipping = write_rows(tmp_path / "skipping.h5", rows[:7] + rows[8:], np.delete(features, 7, axis=0) + 1,
                          skipped=[rows[7]])
    messages: list[str] = []
    with FusedCache([a, skipping], log=messages.append) as fused:
        assert fused.n_rows == len(rows) - 1 and "fake/007.png" not in fused.paths
        assert "fake/007.png" in messages[0] and "1 images are left out" in messages[0]


def test_other_classes_and_the_same_cache_twice_are_refused(tmp_path: Path):
    a, b = split_signal(tmp_path)
    other = make_cache(tmp_path / "other.h5", np.ones((N, 2), np.float32), np.arange(N) % 2, _splits(N),
                       class_names=("cat", "dog"))
    with pytest.raises(FeaturekitError, match="same classes"):
        FusedCache([a, other])
    with pytest.raises(FeaturekitError, match="named twice"):
        FusedCache([a, tmp_path / "." / "a.h5"])
    with pytest.raises(FeaturekitError, match="at least two"):
        FusedCache([a])


def test_streamed_fusion_under_a_zero_budget_matches_the_loaded_features(tmp_path: Path, monkeypatch):
    import featurekit.cache.fusion

    a, b = split_signal(tmp_path)
    monkeypatch.setattr(featurekit.cache.fusion, "BLOCK_BYTES", 7 * 4 * 4)  # many small blocks and windows
    with FusedCache([a, b]) as fused:
        loaded, labels = fused.load("train")
        streamed = list(fused.iter_batches("train", 25))
        np.testing.assert_array_equal(np.concatenate([x for x, _ in streamed]), loaded)
        np.testing.assert_array_equal(np.concatenate([y for _, y in streamed]), labels)
        shuffled = np.concatenate([x for x, _ in fused.iter_batches("train", 25, shuffle=True, seed=3)])
        assert not np.array_equal(shuffled, loaded)
        np.testing.assert_array_equal(np.sort(shuffled, axis=0), np.sort(loaded, axis=0))
    fitted = fit_probe([a, b], "logreg", {"epochs": 20, "alpha": 1e-6}, runs_dir=tmp_path / "runs",
                       memory_budget_gb=0, **QUIET)
    assert fitted.meta["streamed"] is True
    with FusedCache([a, b]) as fused:
        scores, labels = split_scores(fitted, fused, "test")
        from featurekit.probes import fake_scores

        np.testing.assert_allclose(scores, fake_scores(fitted.estimator, fused.load("test")[0]), rtol=1e-6)
    assert roc_auc(labels, scores) > 0.95


def test_fit_with_fuse_on_the_command_line(tmp_path: Path):
    from featurekit.cli import app

    a, b = split_signal(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["fit", "--cache", str(a), "--cache", str(b), "--fuse", "--probe", "logreg",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    saved = list((tmp_path / "runs").glob("fuse-*/logreg/fitted.json"))
    assert len(saved) == 1 and len(json.loads(saved[0].read_text())["members"]) == 2
    refused = runner.invoke(app, ["fit", "--cache", str(a), "--cache", str(b), "--probe", "logreg"])
    assert refused.exit_code == 2 and "--fuse" in refused.output
    alone = runner.invoke(app, ["fit", "--cache", str(a), "--fuse", "--probe", "logreg"])
    assert alone.exit_code == 2 and "two or more caches" in alone.output


def test_compare_fuse_flag_and_config_tables_add_fused_rows(tmp_path: Path):
    from featurekit.config import load_config_file, resolve_config

    a, b = split_signal(tmp_path)
    common = {"probe": ["logreg"], "runs_dir": str(tmp_path / "runs"), "boot": 0}
    rows = compare_from_options({**common, "cache": [str(a), str(b)], "fuse": True}, **QUIET)
    assert [r["cache"] for r in rows] == ["a.h5", "b.h5", rows[2]["cache"]] and rows[2]["cache"].startswith("fuse(")
    config = tmp_path / "job.toml"
    config.write_text(f'[compare]\nprobe = ["logreg"]\nboot = 0\n[[compare.fuse]]\ncaches = ["{a}", "{b}"]\n')
    options = resolve_config("compare", load_config_file(config), {"cache": [str(a)], "runs_dir": str(tmp_path / "runs")})
    from_config = compare_from_options(options, **QUIET)
    assert [r["cache"] for r in from_config] == ["a.h5", "b.h5", rows[2]["cache"]]
    assert all(r["reused"] for r in from_config)  # the same fits as with the flag
    assert from_config[2]["roc_auc"] == pytest.approx(rows[2]["roc_auc"])
    config.write_text('[[compare.fuse]]\ncaches = ["only-one.h5"]\n')
    with pytest.raises(FeaturekitError, match=r"`fuse` in .* must be true or false, or \[\[compare.fuse\]\] tables"):
        load_config_file(config)


@pytest.fixture(scope="module")
def fused_on_images(tmp_path_factory):
    from featurekit.extraction.extract import extract_many

    root = tmp_path_factory.mktemp("fused")
    data = make_image_folder(root / "faces", per_class=30)
    results = extract_many(data, "test_tiny", layers=[None], poolings=["avg", "meanstd"], cache_dir=root / "cache",
                           progress=False, log=lambda m: None)
    caches = [r.cache_path for r in results]
    fitted = fit_probe(caches, "logreg", runs_dir=root / "runs", **QUIET)
    return data, caches, fitted


def test_fused_predict_equals_fused_compare_scores(fused_on_images):
    from featurekit.predict import predict

    data, caches, fitted = fused_on_images
    rows = compare([caches], ["logreg"], runs_dir=fitted.directory.parents[1], n_boot=0, **QUIET)
    assert rows[0]["reused"]
    with FusedCache(caches) as fused:
        test_paths = [data / fused.paths[i] for i in fused.split_indices("test")]
    predicted = predict(fitted.directory, test_paths)
    np.testing.assert_allclose([r["p_fake"] for r in predicted], rows[0]["_scores"], rtol=1e-5, atol=1e-6)


def test_fused_predict_refuses_an_edited_member_record(fused_on_images, tmp_path: Path):
    import shutil

    from featurekit.predict import predict

    data, _, fitted = fused_on_images
    edited = tmp_path / "model"
    shutil.copytree(fitted.directory, edited)
    meta = json.loads((edited / "fitted.json").read_text())
    meta["members"][1]["embedding"]["pooling"] = "max"
    (edited / "fitted.json").write_text(json.dumps(meta))
    with pytest.raises(FeaturekitError, match="fitted.json says pooling is 'max'"):
        predict(edited, [data / "real" / "img_00.png"])
    meta["members"] = meta["members"][:1] * 2
    (edited / "fitted.json").write_text(json.dumps(meta))
    with pytest.raises(FeaturekitError, match="cache_fingerprint"):
        predict(edited, [data / "real" / "img_00.png"])


def test_fused_predict_decodes_once_per_member_size(fused_on_images, tmp_path: Path):
    from featurekit.extraction.extract import extract
    from featurekit.predict import predict

    data, caches, _ = fused_on_images
    larger = extract(data, "test_tiny", image_size=48, pooling="avg", cache=tmp_path / "c48.h5", progress=False,
                     log=lambda m: None).cache_path
    members = [caches[0], larger]
    fitted = fit_probe(members, "logreg", runs_dir=tmp_path / "runs", **QUIET)
    with FusedCache(members) as fused:
        assert fused.attrs["image_size"] in ("32+48", "48+32")
        scores, _ = split_scores(fitted, fused, "test")
        test_paths = [data / fused.paths[i] for i in fused.split_indices("test")]
    (tmp_path / "broken.png").write_bytes(b"nope")
    predicted = predict(fitted.directory, [*test_paths, tmp_path / "broken.png"], batch_size=7)
    np.testing.assert_allclose([r["p_fake"] for r in predicted[:-1]], scores, rtol=1e-5, atol=1e-6)
    assert predicted[-1]["p_fake"] is None and predicted[-1]["error"]


def test_caches_and_fusions_answer_the_same_interface(tmp_path: Path):
    """Names, run folders, member paths and command flags without asking which kind of source it is."""
    from featurekit.cache import open_cache
    from featurekit.cache.fusion import fusion_command_flags

    a, b = split_signal(tmp_path, n=40)
    with open_cache(a) as single, FusedCache([a, b]) as fused:
        assert (single.name, single.run_name, single.member_paths) == ("a.h5", "a", [a])
        assert fused.name.startswith("fuse(") and fused.run_name.startswith("fuse-")
        assert sorted(fused.member_paths) == [a, b]
        assert fusion_command_flags(single.member_paths) == f"--cache {a}"
        assert fusion_command_flags(fused.member_paths).endswith(" --fuse")
        assert single.verify_contents() == [] and fused.verify_contents() == []
        assert len(fused.content_checksums) == 2 and fused.content_checksums[0]["features"]


def test_substitute_members_keep_the_column_order_the_fused_probe_was_fitted_on(tmp_path: Path):
    """A fused probe scored on its members' caches of another test set or view: those caches have other
    fingerprints, so the canonical order (by fingerprint) may swap them; the columns must not move."""
    from conftest import make_cache
    from featurekit.cache.fusion import FusedCache
    from featurekit.evaluation.shifted_scoring import _members

    rng = np.random.default_rng(0)
    labels, splits = np.arange(40) % 2, np.array(["train", "valid", "test", "train"] * 10)
    narrow, wide = rng.normal(size=(40, 3)).astype(np.float32), rng.normal(size=(40, 5)).astype(np.float32)
    for attempt in range(50):  # substitutes whose canonical order is the other way round
        a = make_cache(tmp_path / f"a{attempt}.h5", narrow, labels, splits, layer="pool1")
        b = make_cache(tmp_path / f"b{attempt}.h5", wide, labels, splits, layer="pool2")
        a2 = make_cache(tmp_path / f"a{attempt}-other.h5", narrow, labels, splits, layer="pool1")
        b2 = make_cache(tmp_path / f"b{attempt}-other.h5", wide, labels, splits, layer="pool2")
        with FusedCache([a, b]) as fused, FusedCache([a2, b2]) as canonical:
            if [p.name for p in fused.member_paths][0].startswith("a") != \
                    [p.name for p in canonical.member_paths][0].startswith("a"):
                break
    order = _members([a, b])
    substitutes = [{a: a2, b: b2}[p] for p in order]
    with FusedCache([a, b]) as fused, FusedCache(substitutes, keep_order=True) as kept, \
            FusedCache(substitutes) as resorted:
        np.testing.assert_array_equal(kept.load("test")[0], fused.load("test")[0])
        assert not np.array_equal(resorted.load("test")[0], fused.load("test")[0])  # what went wrong before
