"""The `audit` command and compare's leak warning: a planted cross-split duplicate must be listed (table,
json, md), exit codes (0, --strict 1, bad input 2), names shown as they are, and compare warns loudly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import invoke


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Long tmp paths must not wrap the lines the tests read."""
    from rich.console import Console

    monkeypatch.setattr("featurekit.cli.console", Console(width=400))
    monkeypatch.setattr("featurekit.cli.error_console", Console(width=400, stderr=True))


def cache_with_rows(path: Path, sha256: list[str], n: int = 60, name=lambda i: f"{'fake' if i % 2 else 'real'}/{i:03d}.png"
                    ) -> Path:
    """A finished cache of n rows (60/20/20 splits, both classes everywhere) with the given sha256 per row."""
    from featurekit.cache import PartialCache, finalize_cache
    from featurekit.data import Sample

    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]
    labels = np.arange(n) % 2
    rng = np.random.default_rng(0)
    features = (rng.normal(size=(n, 4)) + labels[:, None]).astype(np.float32)
    samples = [Sample(name(i), int(labels[i]), str(splits[i]), sha256[i]) for i in range(n)]
    partial = PartialCache(path)
    partial.start({"n_batches": 1})
    partial.write_batch(0, np.arange(n), features, np.array([], int), [], "float32")
    finalize_cache(partial, samples, dict(
        backbone="test_tiny", weights="none", weights_label="random-init (seed 0)", weights_sha256="",
        random_features=True, layer="pool2", pooling="avg", image_size=32, preprocessing="tf", feature_dim=4,
        dtype="float32", data_fingerprint=f"synthetic-{path.name}", class_names=["real", "fake"], versions={},
        config={}, created_utc="2026-01-01T00:00:00+00:00"))
    return path


@pytest.fixture
def leaky_cache(tmp_path: Path) -> Path:
    """Row 8 (test) is a byte-identical copy of row 0 (train)."""
    digests = [f"{i:064x}" for i in range(60)]
    digests[8] = digests[0]
    return cache_with_rows(tmp_path / "leaky.h5", digests)


@pytest.fixture
def clean_cache(tmp_path: Path) -> Path:
    return cache_with_rows(tmp_path / "clean.h5", [f"{i:064x}" for i in range(60)])


def test_audit_lists_a_planted_cross_split_duplicate_in_a_cache(leaky_cache: Path):
    result = invoke("audit", leaky_cache, "--no-shortcuts")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("WARNING: LEAK: 1 files have identical copies in other splits")
    assert "real/000.png" in result.output and "real/008.png" in result.output
    assert "exact duplicates across splits: 1 groups" in result.output
    assert "class balance per split" in result.output


def test_audit_json_and_markdown_carry_the_duplicate(leaky_cache: Path, tmp_path: Path):
    result = invoke("audit", leaky_cache, "--no-shortcuts", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["has_leaks"] is True
    [group] = report["exact_duplicates_across_splits"]
    assert [(m["path"], m["split"]) for m in group["members"]] == [("real/000.png", "train"), ("real/008.png", "test")]
    assert "LEAK" in result.stderr  # the warning goes to stderr, so the JSON on stdout stays clean
    out = tmp_path / "audit.md"
    written = invoke("audit", leaky_cache, "--no-shortcuts", "--no-near-duplicates", "--format", "md", "--out", out)
    assert written.exit_code == 0, written.output
    text = out.read_text()
    assert text.startswith("# audit of cache") and "**WARNING**: LEAK" in text and "| real/008.png | test |" in text


def test_strict_exits_1_on_a_leak_and_0_without(leaky_cache: Path, clean_cache: Path):
    assert invoke("audit", leaky_cache, "--no-shortcuts", "--strict").exit_code == 1
    clean = invoke("audit", clean_cache, "--no-shortcuts", "--strict")
    assert clean.exit_code == 0, clean.output
    assert "No leaks, shortcuts or imbalance found." in clean.output


def test_near_duplicates_are_found_in_a_cache(tmp_path: Path):
    path = cache_with_rows(tmp_path / "near.h5", [f"{i:064x}" for i in range(60)])
    import h5py

    with h5py.File(path, "r+") as f:  # row 9 (test) is row 1 (train) plus a whisper
        f["features"][9] = f["features"][1] * 1.0001
    result = invoke("audit", path, "--no-shortcuts", "--format", "json")
    report = json.loads(result.stdout)
    assert report["near_duplicates"]["count"] >= 1
    pair = report["near_duplicates"]["listed"][0]
    assert {pair["first"]["path"], pair["second"]["path"]} == {"fake/001.png", "fake/009.png"}


def test_audit_of_a_data_folder_lists_a_copied_file(tmp_path: Path):
    from conftest import write_image

    data = tmp_path / "split_faces"
    for split in ("train", "valid", "test"):
        for label, name in enumerate(("real", "fake")):
            for i in range(4):
                write_image(data / split / name / f"{split}_{i}.png", seed=hash((split, label, i)) % 10_000, size=16)
    shutil.copy(data / "train" / "fake" / "train_0.png", data / "test" / "fake" / "copy[red]x.png")
    result = invoke("audit", data, "--no-shortcuts")
    assert result.exit_code == 0, result.output
    assert "WARNING: LEAK" in result.output
    assert "test/fake/copy[red]x.png" in result.output  # shown as it is, never read as markup
    assert "train/fake/train_0.png" in result.output


def test_bad_targets_and_values_exit_2(tmp_path: Path, leaky_cache: Path):
    missing = invoke("audit", tmp_path / "nothing.h5")
    assert missing.exit_code == 2 and "Nothing to audit" in missing.output and "nothing.h5" in missing.output
    bad = invoke("audit", leaky_cache, "--near-duplicate-threshold", "1.5")
    assert bad.exit_code == 2 and "--near-duplicate-threshold" in bad.output
    csv = invoke("audit", leaky_cache, "--format", "csv")
    assert csv.exit_code == 2


def test_declared_audit_defaults_are_the_audit_library_defaults():
    import inspect

    from featurekit.audit import audit_cache, audit_data
    from featurekit.options import defaults

    declared = defaults("audit")
    for function in (audit_data, audit_cache):
        parameters = inspect.signature(function).parameters
        for name in set(parameters) & set(declared):
            if declared[name] is not None:
                assert parameters[name].default == declared[name], (function.__name__, name)
    assert declared["memory_budget_mb"] * 2**20 == inspect.signature(audit_cache).parameters["memory_budget_bytes"].default


def test_compare_warns_loudly_on_a_leaky_cache(leaky_cache: Path, clean_cache: Path, tmp_path: Path):
    from featurekit.evaluation.compare import compare

    messages: list[str] = []
    rows = compare([leaky_cache, clean_cache], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, log=messages.append)
    warnings = [m for m in messages if "WARNING" in m]
    assert len(warnings) == 1 and "leaky.h5 leaks across its splits" in warnings[0] and "real/008.png" in warnings[0]
    assert [r["leaks"] for r in rows] == [True, False]
    quiet: list[str] = []
    unaudited = compare([leaky_cache], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, log=quiet.append, audit=False)
    assert not [m for m in quiet if "WARNING" in m] and unaudited[0]["leaks"] is None
    result = invoke("compare", "--cache", leaky_cache, "--probe", "logreg", "--runs-dir", tmp_path / "runs", "--boot", "0",
                    "--format", "json")
    assert result.exit_code == 0, result.output
    assert "leaks across its splits" in result.stderr and json.loads(result.stdout)[0]["leaks"] is True
    table = invoke("compare", "--cache", leaky_cache, "--probe", "logreg", "--runs-dir", tmp_path / "runs", "--boot",
                   "0", "--wide")
    assert "LEAKS" in table.output
    digests = [f"{i:064x}" for i in range(60)]
    digests[8] = digests[0]
    other_view = cache_with_rows(tmp_path / "leaky_other_view.h5", digests)  # the same images, other features
    fused = compare([[leaky_cache, other_view]], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0,
                    log=lambda m: None)
    assert fused[0]["leaks"] is True  # a fusion leaks where any member does
