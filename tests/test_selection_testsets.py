"""Other test sets: a folder of fakes only (another generator) paired with the REAL images of the test split;
compare scores every probe on it, sweep reports its choice on it after choosing on valid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import QUIET, make_image_folder, write_image
from featurekit.cache import open_cache
from featurekit.errors import FeaturekitError
from featurekit.evaluation.shifted_caches import parse_test_set


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Faces (real/fake class folders), a flat folder of 7 fakes of "another generator", and a tiny-backbone cache."""
    from featurekit.extraction.extract import extract_many

    root = tmp_path_factory.mktemp("world")
    faces = make_image_folder(root / "faces", per_class=30, size=32)
    other = root / "other_generator" / "fake"
    for i in range(7):
        write_image(other / f"gen_{i}.jpg", seed=500 + i, size=32)
    (other / "SOURCE.md").write_text("not an image")
    caches = [r.cache_path for r in extract_many(faces, "test_tiny", weights="none", poolings=["avg", "max"],
                                                 batch_size=16, cache_dir=root / "cache", progress=False, **QUIET)]
    return faces, other, caches


def test_specs_name_a_folder_or_one_class_paired_with_the_test_split():
    assert parse_test_set("some/dir").folder == Path("some/dir")
    fake_only = parse_test_set("fake=../other_generator/fake")
    assert fake_only.fake == Path("../other_generator/fake") and fake_only.real is None and fake_only.folder is None
    assert fake_only.label == "fake=../other_generator/fake + real of the test split"
    both = parse_test_set("real=a,fake=b")
    assert (both.real, both.fake) == (Path("a"), Path("b"))
    with pytest.raises(FeaturekitError, match="names the fake folder twice"):
        parse_test_set("fake=a,fake=b")


def test_compare_scores_fakes_of_another_generator_beside_the_real_test_images(world, tmp_path: Path):
    from featurekit.evaluation.compare import compare_from_options
    from featurekit.evaluation.fitting import load_fitted, split_scores

    _, other, caches = world
    spec = f"fake={other}"
    rows = compare_from_options({"cache": [caches[0]], "probe": ["logreg"], "boot": 0, "runs_dir": tmp_path / "runs",
                                 "test_data": [spec]}, **QUIET)
    own, shifted = rows
    assert shifted["test_set"] == f"fake={other} + real of the test split"
    with open_cache(caches[0]) as training:
        test = training.split_indices("test")
        real_test = [i for i in test if training.labels[i] == 0]
        fitted = load_fitted(own["model_dir"], training)
        own_scores, own_labels = split_scores(fitted, training, "test")
    assert shifted["n_test"] == 7 + len(real_test)  # the 7 fakes (not SOURCE.md) and the test split's reals
    assert int(shifted["_labels"].sum()) == 7
    # The real images are the test split's own: the same features, so the same scores, as in the own row.
    np.testing.assert_allclose(np.sort(shifted["_scores"][shifted["_labels"] == 0]),
                               np.sort(own_scores[own_labels == 0]), rtol=1e-5)
    assert shifted["threshold"] == own["threshold"]
    again = compare_from_options({"cache": [caches[0]], "probe": ["logreg"], "boot": 0, "runs_dir": tmp_path / "runs",
                                  "test_data": [spec]}, **QUIET)
    assert again[1]["scored_cache"] == shifted["scored_cache"] and again[1]["accuracy"] == shifted["accuracy"]
    assert len([p for p in caches[0].parent.glob("testset-*") if p.is_dir()]) == 1  # the paired folder, made once


def test_a_fused_configuration_is_scored_on_the_paired_test_set(world, tmp_path: Path):
    from featurekit.evaluation.fitting import fit_probe
    from featurekit.evaluation.shifted_scoring import score_on_test_sets

    _, other, caches = world
    fitted = fit_probe(caches, "logreg", runs_dir=tmp_path / "runs", **QUIET)
    [row] = score_on_test_sets(caches, fitted, [f"fake={other}"], n_boot=0, **QUIET)
    assert row["n_fake"] == 7 and row["n"] > 7 and row["threshold"] == fitted.threshold
    assert row["scored_cache"].count("-on-") == 2  # one test-set cache per member


def test_the_sweep_reports_its_choice_on_other_test_sets_without_choosing_on_them(world, tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    import featurekit.evaluation.fitting
    from featurekit.cli import app

    faces, other, _ = world
    config = tmp_path / "s.toml"
    config.write_text(f'data = "{faces}"\ncache_dir = "{tmp_path / "cache"}"\nruns_dir = "{tmp_path / "runs"}"\n'
                      f'[sweep]\nprobe = ["logreg"]\nboot = 0\nresults_dir = "{tmp_path / "results"}"\n'
                      f'test_data = ["fake={other}"]\n'
                      '[[sweep.backbone]]\nbackbone = "test_tiny"\npooling = ["avg", "max"]\n')
    splits_scored = []
    real = featurekit.evaluation.fitting.split_scores

    def counting(fitted, cache, split, *args, **kwargs):
        splits_scored.append((Path(getattr(cache, "path", "fusion")).name, split))
        return real(fitted, cache, split, *args, **kwargs)

    monkeypatch.setattr(featurekit.evaluation.fitting, "split_scores", counting)
    result = CliRunner().invoke(app, ["sweep", "--config", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "results" / "sweep-s.json").read_text())
    [shifted] = report["other_test_sets_of_chosen"]
    assert shifted["test_set"] == f"fake={other} + real of the test split" and shifted["n_fake"] == 7
    assert shifted["threshold"] == report["chosen"]["threshold"]
    # Every valid score was computed before the first score on another test set: nothing chose on it.
    other_scores = [i for i, (name, _) in enumerate(splits_scored) if "-on-" in name]
    valid_scores = [i for i, (_, split) in enumerate(splits_scored) if split == "valid"]
    assert other_scores and max(valid_scores) < min(other_scores)
    markdown = (tmp_path / "results" / "sweep-s.md").read_text()
    assert "the choice on views and other test sets (reported only, never used to choose)" in markdown
    assert "never used to choose" in result.output


def test_a_fused_configuration_on_views_at_a_threshold_chosen_on_valid_plus_views(world, tmp_path: Path):
    from featurekit.evaluation.fitting import fit_probe
    from featurekit.evaluation.shifted_scoring import score_on_test_sets, valid_and_views_threshold

    _, _, caches = world
    fitted = fit_probe(caches, "logreg", runs_dir=tmp_path / "runs", **QUIET)
    threshold = valid_and_views_threshold(caches, fitted, ["blur:2"], **QUIET)
    for cache in caches:  # each member's valid split under the view, extracted once
        assert cache.with_name(f"{cache.stem}-view-blur2-only-valid.h5").is_file()
    [row] = score_on_test_sets(caches, fitted, [], n_boot=0, views=["blur:2"], threshold=threshold, **QUIET)
    assert row["view"] == "blur:2" and row["threshold"] == threshold and row["scored_cache"].count("only-test") == 2
    with open_cache(caches[0]) as reader:
        assert row["n"] == len(reader.split_indices("test"))


def test_a_paired_test_set_of_an_empty_folder_is_refused_naming_it(world, tmp_path: Path):
    from featurekit.evaluation.shifted_scoring import score_on_test_sets
    from featurekit.evaluation.fitting import fit_probe

    _, _, caches = world
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    fitted = fit_probe(caches[0], "logreg", runs_dir=tmp_path / "runs", **QUIET)
    with pytest.raises(FeaturekitError, match=r"fake folder of a test set holds no images.*nothing_here"):
        score_on_test_sets(caches[0], fitted, [f"fake={empty}"], n_boot=0, **QUIET)


def test_rows_say_where_they_were_scored():
    from featurekit.report.results import scored_on

    label = parse_test_set("fake=../other_generator/fake").label
    assert scored_on({"test_set": label, "view": ""}) == "fake=../other_generator/fake + real of the test split"
    assert scored_on({"test_set": "data/other_faces", "view": ""}) == "other_faces (all images)"
    assert scored_on({"test_set": "test", "view": "jpeg:50"}) == "test split, jpeg:50"
