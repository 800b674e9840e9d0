from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_image_folder, write_image
from conftest import extract_tiny as _extract  # the tests' shorthand
from featurekit.cache import PartialCache, open_cache
from featurekit.data import load_image
from featurekit.errors import FeaturekitError, WeightsUnavailableError
from featurekit.extraction.extract import extract, extract_many


@pytest.mark.backend
def test_cache_rows_are_the_backbone_features_of_each_image(image_folder: Path, tmp_path: Path):
    from featurekit.backbones.embedder import build_embedder

    result = _extract(image_folder, tmp_path / "c.h5")
    assert result.status == "extracted" and result.n_images == 24 and result.n_skipped == 0
    embedder = build_embedder("test_tiny", weights="none", pooling="avg")
    with open_cache(result.cache_path) as cache:
        assert cache.attrs["backbone"] == "test_tiny" and cache.attrs["preprocessing"] == "tf"
        assert cache.attrs["random_features"] and cache.attrs["weights_label"].startswith("random-init")
        images = np.stack([load_image(image_folder / p, 32) for p in cache.paths])
        np.testing.assert_allclose(cache.load()[0], embedder(images), rtol=1e-5, atol=1e-6)
        assert cache.attrs["config"] == {}


@pytest.mark.backend
def test_rerun_is_up_to_date_and_recomputes_nothing(image_folder: Path, tmp_path: Path):
    _extract(image_folder, tmp_path / "c.h5")
    again = _extract(image_folder, tmp_path / "c.h5")
    assert again.status == "up-to-date" and again.n_computed == 0


@pytest.mark.backend
def test_bad_files_are_skipped_and_listed(image_folder: Path, tmp_path: Path):
    (image_folder / "real" / "empty.jpg").write_bytes(b"")
    (image_folder / "fake" / "text.png").write_bytes(b"hello, not a png")
    good = write_image(tmp_path / "good.jpg", seed=5, size=64, fmt="JPEG")
    (image_folder / "fake" / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    (image_folder / "real" / "readme.txt").write_text("x")
    result = _extract(image_folder, tmp_path / "c.h5")
    assert result.n_images == 24
    assert sorted(p for p, _ in result.skipped) == ["fake/text.png", "fake/truncated.jpg", "real/empty.jpg"]
    assert result.unsupported == [("real/readme.txt", "unsupported file type .txt")]
    with open_cache(result.cache_path) as cache:
        assert len(cache.skipped) == 3 and not set(p for p, _ in cache.skipped) & set(cache.paths)


def test_a_cache_that_differs_is_refused_until_overwrite(image_folder: Path, tmp_path: Path):
    cache = tmp_path / "c.h5"
    _extract(image_folder, cache)
    with pytest.raises(FeaturekitError, match="pooling is 'avg' in the cache but 'max'.*Pass `overwrite`"):
        _extract(image_folder, cache, pooling="max")
    write_image(image_folder / "fake" / "new.png", seed=99)
    with pytest.raises(FeaturekitError, match="images differ"):
        _extract(image_folder, cache)
    rebuilt = _extract(image_folder, cache, pooling="max", overwrite=True)
    assert rebuilt.status == "extracted" and rebuilt.n_images == 25


def test_float16_halves_the_features(image_folder: Path, tmp_path: Path):
    result = _extract(image_folder, tmp_path / "c.h5", dtype="float16", pooling="flatten")
    with open_cache(result.cache_path) as cache:
        assert cache.features.dtype == np.float16 and cache.load()[0].dtype == np.float32


def test_missing_imagenet_weights_can_fall_back_to_labelled_random(image_folder: Path, tmp_path: Path, monkeypatch):
    import featurekit.backbones.embedder as embedder_module

    real_build = embedder_module.multi_embedder_for_spec

    def offline_build(spec, taps, weights="default", **kwargs):
        if weights != "none":
            raise WeightsUnavailableError("ImageNet weights could not be downloaded.")
        return real_build(spec, taps, weights=weights, **kwargs)

    monkeypatch.setattr(embedder_module, "multi_embedder_for_spec", offline_build)
    messages: list[str] = []
    with pytest.raises(WeightsUnavailableError):
        _extract(image_folder, tmp_path / "a.h5", weights="imagenet")
    result = _extract(image_folder, tmp_path / "b.h5", weights="imagenet", on_missing_weights="random",
                      log=messages.append)
    assert "RANDOM-FEATURES" in messages[0]
    with open_cache(result.cache_path) as cache:
        assert cache.attrs["random_features"] and cache.attrs["weights"] == "none"


@pytest.mark.slow  # a whole `python cli.py extract` process, killed, then two extractions of 300 images
def test_resume_after_sigkill_gives_the_same_cache_row_for_row(tmp_path: Path):
    data = make_image_folder(tmp_path / "faces", per_class=150, size=64)
    interrupted, uninterrupted = tmp_path / "killed.h5", tmp_path / "whole.h5"
    command = [sys.executable, str(REPO / "cli.py"), "extract", "--backbone", "test_tiny", "--data", str(data),
               "--pooling", "flatten", "--image-size", "64", "--batch-size", "2", "--precision", "float32",
               "--cache", str(interrupted), "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = PartialCache(interrupted)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if partial.directory.exists() and len(partial.done_batches()) >= 10:
            break
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(partial.done_batches())
    assert not interrupted.exists(), "the run finished before it could be killed; the test proves nothing"
    assert 10 <= done_before < 150
    # The command line comes from the CLI, for the resume hint.
    assert partial.read_request()["command"].startswith("python cli.py extract --backbone test_tiny --data ")

    resumed = _extract(data, interrupted, pooling="flatten", image_size=64, batch_size=2)
    assert resumed.status == "resumed" and resumed.n_computed == 300 - 2 * done_before
    whole = _extract(data, uninterrupted, pooling="flatten", image_size=64, batch_size=2)
    with open_cache(interrupted) as a, open_cache(whole.cache_path) as b:
        assert a.paths == b.paths
        np.testing.assert_array_equal(a.load()[0], b.load()[0])
        assert a.fingerprint == b.fingerprint


@pytest.mark.backend
def test_resume_keeps_the_interrupted_batch_size(image_folder: Path, tmp_path: Path, monkeypatch):
    cache = tmp_path / "c.h5"
    partial = PartialCache(cache)
    # Pretend a run with batch size 4 finished its first batch, then died.
    _extract(image_folder, tmp_path / "full.h5")
    with open_cache(tmp_path / "full.h5") as full:
        first_rows = full.load()[0][:4]
    from featurekit.data import scan_image_folder
    folder = scan_image_folder(image_folder)
    partial.start({"backbone": "test_tiny", "weights_label": "random-init (seed 0)", "weights_sha256": "",
                   "layer": "pool2", "pooling": "avg", "image_size": 32, "preprocessing": "tf", "dtype": "float32",
                   "data_fingerprint": folder.fingerprint(), "batch_size": 4, "n_batches": 6, "n_samples": 24})
    partial.write_batch(0, np.arange(4), first_rows, np.array([], int), [], "float32")
    (partial.directory / "batch-0000001.tmp").write_bytes(b"half-written")  # killed mid-write
    messages: list[str] = []
    jobs = []
    from featurekit.engines.local import LocalEngine

    real_run = LocalEngine.run
    monkeypatch.setattr(LocalEngine, "run", lambda self, job, *a: jobs.append(job) or real_run(self, job, *a))
    result = _extract(image_folder, cache, batch_size=8, log=messages.append)
    assert result.status == "resumed" and result.n_computed == 20
    assert any("batch size 4" in m for m in messages)
    # Every engine gets the agreed batch size, the request that rebuilds the embedder elsewhere (Ray) included.
    assert [(job.batch_size, job.embedder_request.batch_size) for job in jobs] == [(4, 4)]


def test_weights_candidates_are_tried_in_order(image_folder: Path, tmp_path: Path):
    messages: list[str] = []
    result = _extract(image_folder, tmp_path / "c.h5", weights=[str(tmp_path / "absent.weights.h5"), "none"],
                      log=messages.append)
    assert result.weights_label.startswith("random-init")
    assert "absent.weights.h5" in messages[0] and "does not exist" in messages[0]
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        _extract(image_folder, tmp_path / "d.h5", weights=[str(tmp_path / "absent.weights.h5")])


def test_shared_faces_with_near_imagenet_vgg16_are_labelled_so(shared_faces: Path, shared_weights: Path, tmp_path: Path):
    import shutil

    data = tmp_path / "faces"
    for label in ("real", "fake"):
        (data / label).mkdir(parents=True)
        for path in sorted((shared_faces / label).glob("*.jpg"))[:3]:
            shutil.copy2(path, data / label / path.name)
    result = _extract(data, tmp_path / "c.h5", backbone="vgg16", layer="block1_pool", pooling="meanstd",
                      weights=str(shared_weights / "vgg16_near_imagenet_notop.weights.h5"), image_size=64)
    with open_cache(result.cache_path) as cache:
        assert cache.attrs["weights_label"].startswith("near-ImageNet (VGG16") and not cache.attrs["random_features"]
        assert cache.attrs["preprocessing"] == "caffe" and cache.feature_dim == 128
        assert len(cache.attrs["weights_sha256"]) == 64


@pytest.mark.backend
def test_several_taps_from_one_pass_equal_separate_extractions(image_folder: Path, tmp_path: Path):
    results = extract_many(image_folder, "test_tiny", layers=["pool1", "pool2"], poolings=["avg", "meanstd"],
                           cache_dir=tmp_path / "multi", batch_size=4, precision="float32", log=lambda m: None)
    assert [r.cache_path.name for r in results] == [
        "faces-test_tiny-pool1-avg-32-random.h5", "faces-test_tiny-pool1-meanstd-32-random.h5",
        "faces-test_tiny-pool2-avg-32-random.h5", "faces-test_tiny-pool2-meanstd-32-random.h5"]
    assert len({r.n_computed for r in results}) == 1 and results[0].n_computed == 24  # one pass, not four
    single = _extract(image_folder, tmp_path / "single.h5", layer="pool1", pooling="meanstd")
    with open_cache(results[1].cache_path) as multi, open_cache(single.cache_path) as alone:
        np.testing.assert_array_equal(multi.load()[0], alone.load()[0])
        assert multi.attrs["layer"] == "pool1" and multi.attrs["pooling"] == "meanstd"
    again = extract_many(image_folder, "test_tiny", layers=["pool1", "pool2", "conv1"], poolings=["avg"],
                         cache_dir=tmp_path / "multi", batch_size=4, precision="float32", log=lambda m: None)
    assert [r.status for r in again] == ["up-to-date", "up-to-date", "extracted"]
    with pytest.raises(FeaturekitError, match="`cache` names one file"):
        extract_many(image_folder, "test_tiny", layers=["pool1", "pool2"], cache=tmp_path / "x.h5",
                     log=lambda m: None)


@pytest.mark.backend
def test_precision_and_backend_are_recorded_and_precision_is_identity(image_folder: Path, tmp_path: Path):
    import keras

    cache = tmp_path / "c.h5"
    result = _extract(image_folder, cache)
    with open_cache(result.cache_path) as made:
        assert made.attrs["precision"] == "float32" and made.attrs["backend"] == keras.backend.backend()
        assert made.attrs["versions"]["keras_backend"] == keras.backend.backend()
        float32_rows, fingerprint = made.load()[0], made.fingerprint
    with pytest.raises(FeaturekitError, match="precision is 'float32' in the cache but 'bfloat16' was asked"):
        _extract(image_folder, cache, precision="bfloat16")
    with open_cache(cache) as untouched:  # refused without overwrite: the float32 cache is still there
        assert untouched.attrs["precision"] == "float32" and untouched.fingerprint == fingerprint
    rebuilt = _extract(image_folder, cache, precision="bfloat16", overwrite=True)
    with open_cache(rebuilt.cache_path) as half:
        assert half.attrs["precision"] == "bfloat16" and half.fingerprint != fingerprint
        np.testing.assert_allclose(half.load()[0], float32_rows, rtol=0.05, atol=0.05)
    # Default names keep the two apart, so a study can compare float32 and bfloat16 side by side.
    named = extract_many_default_names(image_folder, tmp_path / "caches")
    assert [p.name for p in named] == ["faces-test_tiny-avg-32-random.h5", "faces-test_tiny-avg-32-bfloat16-random.h5"]


def extract_many_default_names(data: Path, cache_dir: Path) -> list[Path]:
    return [extract(data, "test_tiny", pooling="avg", cache_dir=cache_dir, precision=precision,
                    log=lambda m: None).cache_path for precision in ("float32", "bfloat16")]


def test_a_cache_from_before_precision_was_recorded_counts_as_float32(image_folder: Path, tmp_path: Path):
    import h5py

    cache = tmp_path / "c.h5"
    _extract(image_folder, cache)
    with h5py.File(cache, "a") as f:
        del f.attrs["precision"]
    assert _extract(image_folder, cache).status == "up-to-date"
    with pytest.raises(FeaturekitError, match="precision is 'float32' in the cache but 'bfloat16'"):
        _extract(image_folder, cache, precision="bfloat16")


@pytest.mark.parametrize("size", [0, 100_000, 4])
def test_image_sizes_outside_the_sane_range_are_refused_before_any_work(image_folder: Path, tmp_path: Path,
                                                                        size, monkeypatch):
    import featurekit.extraction.plan as plan_module

    monkeypatch.setattr(plan_module, "scan_image_folder", lambda *a, **k: pytest.fail("read the images"))
    with pytest.raises(FeaturekitError, match=rf"from 8 to 2048 pixels.*image_size={size}"):
        extract(image_folder, "test_tiny", image_size=size, cache_dir=tmp_path / "caches", log=lambda m: None)
    assert not (tmp_path / "caches").exists()


def _trained_weights(tmp_path: Path, trained_on: list[str], backbone: str = "test_tiny") -> Path:
    """A .keras file with a train-backbone style training.json beside it, saying it trained on `trained_on`."""
    import json

    from featurekit.backbones import create_backbone
    from featurekit.hashing import file_sha256

    run = tmp_path / "run"
    run.mkdir()
    path = run / "tiny.keras"
    create_backbone(backbone, weights="none", seed=1).save(path)
    record = {"finished": True, "model_path": path.name, "model_sha256": file_sha256(path), "best_epoch": 3,
              "config": {"backbone": backbone},
              "data": {"name": "faces", "train_images": len(trained_on), "train_sha256": sorted(trained_on)}}
    (run / "training.json").write_text(json.dumps(record))
    return path


@pytest.mark.backend
def test_weights_trained_on_the_valid_or_test_images_are_refused_unless_allowed(image_folder: Path, tmp_path: Path):
    from featurekit.data import scan_image_folder

    samples = scan_image_folder(image_folder).samples
    expected = {split: sum(s.split == split for s in samples) for split in ("valid", "test")}
    assert expected["valid"] and expected["test"]
    weights = _trained_weights(tmp_path, [s.sha256 for s in samples])  # trained on every image
    cache = tmp_path / "c.h5"
    with pytest.raises(FeaturekitError) as refused:
        _extract(image_folder, cache, weights=str(weights))
    message = str(refused.value)
    assert (f"trained on {expected['valid'] + expected['test']} images" in message
            and f"{expected['valid']} in valid and {expected['test']} in test" in message)
    assert "allow_train_overlap" in message and not cache.exists()
    messages: list[str] = []
    result = _extract(image_folder, cache, weights=str(weights), allow_train_overlap=True, log=messages.append)
    assert any("WARNING" in m and "optimistic" in m for m in messages)
    with open_cache(result.cache_path) as made:
        assert made.attrs["train_overlap_valid"] == expected["valid"]
        assert made.attrs["train_overlap_test"] == expected["test"]
        assert made.attrs["weights_label"] == "test_tiny trained on faces (train split, 24 images, epoch 3)"
    from featurekit.evaluation.compare import compare
    from featurekit.report import render_rows

    rows = compare([result.cache_path], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, log=lambda m: None)
    assert rows[0]["train_overlap"] == expected["valid"] + expected["test"]
    assert "TRAIN OVERLAP" in render_rows(rows, "md")  # every output flags the optimistic scores


def test_weights_trained_on_the_train_split_only_extract_and_are_labelled(image_folder: Path, tmp_path: Path):
    from featurekit.data import scan_image_folder

    train = [s.sha256 for s in scan_image_folder(image_folder).samples if s.split == "train"]
    weights = _trained_weights(tmp_path, train)
    result = _extract(image_folder, tmp_path / "c.h5", weights=str(weights))
    assert result.weights_label == f"test_tiny trained on faces (train split, {len(train)} images, epoch 3)"
    with open_cache(result.cache_path) as made:
        assert made.attrs["train_overlap_valid"] == 0 and made.attrs["train_overlap_test"] == 0


def test_a_training_record_of_another_file_is_ignored(image_folder: Path, tmp_path: Path):
    weights = _trained_weights(tmp_path, [])
    weights.write_bytes(weights.read_bytes())  # same bytes: still its record
    other = weights.with_name("other.keras")
    from featurekit.backbones import create_backbone

    create_backbone("test_tiny", weights="none", seed=2).save(other)  # beside the record, but not the file it names
    result = _extract(image_folder, tmp_path / "c.h5", weights=str(other))
    assert result.weights_label == "file other.keras"


@pytest.mark.slow  # a whole benchmark process; the flag report is checked in this process below
def test_the_precision_benchmark_runs_through_extract(tmp_path: Path):
    import json

    out = tmp_path / "precision.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_precision.py"), "--images", "4", "--backbones", "test_tiny",
         "--precisions", "float32,bfloat16", "--batch-size", "2", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    # What the benchmark says of the CPU is what /proc/cpuinfo says (read here, independently of featurekit).
    flags = set()
    if Path("/proc/cpuinfo").is_file():
        flags = set(next((line.partition(":")[2].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                          if line.startswith("flags")), []))
    shown = report["machine"]["low_precision_flags"]
    assert shown and shown == {flag: flag in flags for flag in shown}
    for flag, present in shown.items():
        assert f"{flag} {'yes' if present else 'no'}" in completed.stdout
    assert "  bfloat16 vs float32: " in completed.stdout
    float32, bfloat16 = report["rows"]
    assert (float32["precision"], bfloat16["precision"]) == ("float32", "bfloat16")
    assert float32["images"] == bfloat16["images"] == 4 and bfloat16["speedup_vs_float32"] > 0
    assert 0 < bfloat16["max_abs_diff"] < 0.1 and bfloat16["min_cosine_similarity"] > 0.99



def test_the_precision_benchmark_reports_each_flag_the_cpu_has(monkeypatch):
    """On any machine: a CPU with AVX512-BF16 and AMX tiles, but no float16 units, is reported as such."""
    import importlib.util

    import featurekit.backend as backend

    spec = importlib.util.spec_from_file_location("bench_precision", REPO / "benchmarks" / "bench_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(backend, "cpu_info", lambda: {"model": "x", "flags": frozenset({"avx512_bf16", "amx_tile"})})
    assert bench.machine()["low_precision_flags"] == {
        "avx512_bf16": True, "amx_bf16": False, "amx_tile": True, "avx512_fp16": False, "amx_fp16": False}


# ---- request -> plan -> run: progress and the command come from the caller


def _interrupt_after(n_images: int):
    """A progress factory that stops the run (as Ctrl-C would) once `n_images` images are computed."""
    from contextlib import contextmanager

    @contextmanager
    def progress(total: int, label: str):
        seen = [0]

        def advance(n: int) -> None:
            seen[0] += n
            if seen[0] >= n_images:
                raise KeyboardInterrupt

        yield advance

    return progress


def test_progress_is_the_callers_callback_and_python_records_no_command(image_folder: Path, tmp_path: Path):
    cache = tmp_path / "c.h5"
    with pytest.raises(KeyboardInterrupt):
        _extract(image_folder, cache, progress=_interrupt_after(8))
    partial = PartialCache(cache)
    assert 2 <= len(partial.done_batches()) < 6 and not cache.exists()
    assert "command" not in partial.read_request()  # no sys.argv of whatever program called the library
    with pytest.raises(FeaturekitError, match=r"stopped after \d of 6 batches.*python cli.py extract \.\.\."):
        open_cache(cache)
    calls = []

    def counting(total: int, label: str):
        calls.append((total, label))
        return _interrupt_after(10**9)(total, label)

    resumed = _extract(image_folder, cache, progress=counting)
    assert resumed.status == "resumed" and calls == [(resumed.n_computed, "test_tiny features")]


# ---- a resume never merges batches of other settings (issue 16, item 18)


@pytest.mark.parametrize("first, second, named", [
    ({"pooling": "max"}, {"pooling": "avg"}, "pooling is 'max' in the cache but 'avg'"),
    ({"max_pixels": 10**6}, {"max_pixels": 1600}, "max_pixels is 1000000 in the cache but 1600"),
])
def test_an_interrupted_run_with_other_settings_is_refused_not_merged(image_folder: Path, tmp_path: Path, first,
                                                                      second, named):
    cache = tmp_path / "c.h5"
    with pytest.raises(KeyboardInterrupt):
        _extract(image_folder, cache, progress=_interrupt_after(4), **first)
    done = PartialCache(cache).done_batches()
    assert done
    with pytest.raises(FeaturekitError, match=rf"interrupted extraction.*other settings: {named}.*overwrite"):
        _extract(image_folder, cache, **second)
    assert not cache.exists() and PartialCache(cache).done_batches() == done  # nothing merged, nothing lost
    assert _extract(image_folder, cache, **second, overwrite=True).status == "extracted"


# ---- batch size and memory (issue 16, item 7)


def test_a_batch_larger_than_the_folder_is_never_padded_beyond_its_images(image_folder: Path, tmp_path: Path):
    started = time.perf_counter()
    result = _extract(image_folder, tmp_path / "c.h5", batch_size=100_000_000)  # padded: 1.2 TB of pixels
    assert result.status == "extracted" and result.n_images == 24 and time.perf_counter() - started < 120
    with open_cache(result.cache_path) as cache:
        assert cache.attrs["batch_size"] == 24


def test_a_batch_that_does_not_fit_in_memory_is_refused_before_anything_runs(image_folder: Path, tmp_path: Path,
                                                                            monkeypatch):
    import featurekit.extraction.memory as memory
    from featurekit.backbones.embedder import build_multi_embedder

    one_image = build_multi_embedder("test_tiny", [(None, "avg")], weights="none", image_size=256).bytes_per_image()
    monkeypatch.setattr(memory, "available_memory", lambda: int(2.5 * one_image))  # room for two images
    cache = tmp_path / "c.h5"
    with pytest.raises(FeaturekitError, match=r"batch of 4 images of 256x256 pixels needs about \d+ MiB.*"
                                              r"Use `batch_size` 1 or less.*nothing was computed"):
        _extract(image_folder, cache, image_size=256)
    assert not cache.exists() and not PartialCache(cache).directory.exists()
    assert _extract(image_folder, cache, image_size=256, batch_size=1).status == "extracted"  # one image fits
    with pytest.raises(FeaturekitError, match="needs about"):  # a refused overwrite keeps the cache it would replace
        _extract(image_folder, cache, image_size=256, batch_size=4, dtype="float16", overwrite=True)
    with open_cache(cache) as kept:
        assert kept.attrs["dtype"] == "float32" and kept.attrs["batch_size"] == 1


def test_the_memory_estimate_scales_with_batch_and_names_a_batch_that_fits():
    from featurekit.extraction.memory import GIB, check_batch_memory

    check_batch_memory(32, 10**8, 2, 224, 4 * GIB)  # 3.2 GB of 4 GiB: fits
    with pytest.raises(FeaturekitError, match=r"needs about 3.0 GiB.*only 2.0 GiB.*Use `batch_size` 17 or less"):
        check_batch_memory(32, 10**8, 2, 224, 2 * GIB)
    with pytest.raises(FeaturekitError, match=r"Use a smaller `image_size`"):
        check_batch_memory(1, 10**10, 2, 2048, 2 * GIB)
    check_batch_memory(10**6, 10**10, 2, 2048, None)  # memory unknown: nothing to check


def test_a_keras_backbone_estimate_counts_its_largest_feature_map():
    from featurekit.backbones.embedder import build_multi_embedder

    small = build_multi_embedder("vgg16", taps=[("block1_pool", "avg")], weights="none", image_size=32)
    large = build_multi_embedder("vgg16", taps=[("block1_pool", "avg")], weights="none", image_size=64)
    # block1_conv1: 64 channels at full size, the largest map; three alive, four bytes each, plus the input.
    assert small.bytes_per_image() == 32 * 32 * 3 * 9 + 3 * 4 * 32 * 32 * 64
    assert large.bytes_per_image() == 4 * small.bytes_per_image()


# ---- precision: auto by default, resolved once, the dtype policy untouched (issue 13, item 10)


def test_precision_defaults_to_auto_and_the_cache_records_what_ran(image_folder: Path, tmp_path: Path, monkeypatch):
    import featurekit.backend as backend
    from featurekit.options import defaults

    assert defaults("extract")["precision"] == "auto"
    plain = extract(image_folder, "test_tiny", pooling="avg", cache_dir=tmp_path / "a", log=lambda m: None)
    expected = "bfloat16" if backend.cpu_has_native_bf16() or backend.has_accelerator() else "float32"
    with open_cache(plain.cache_path) as made:
        assert made.attrs["precision"] == expected  # on this machine
    monkeypatch.setattr(backend, "cpu_info", lambda: {"model": "a CPU with AVX512-BF16", "flags": frozenset(
        {"avx512f", "avx512_bf16"})})
    monkeypatch.setattr(backend, "has_accelerator", lambda: False)
    bf16 = extract(image_folder, "test_tiny", pooling="avg", cache_dir=tmp_path / "b", log=lambda m: None)
    with open_cache(bf16.cache_path) as made:
        assert made.attrs["precision"] == "bfloat16" and bf16.cache_path.name.endswith("-bfloat16-random.h5")
    float32 = extract(image_folder, "test_tiny", pooling="avg", cache_dir=tmp_path / "b", precision="float32",
                      log=lambda m: None)
    with open_cache(float32.cache_path) as made:
        assert made.attrs["precision"] == "float32"


def test_a_bfloat16_extraction_leaves_the_keras_dtype_policy_as_it_was(image_folder: Path, tmp_path: Path):
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float16")  # a caller's own policy, which extraction must neither use nor change
    try:
        result = _extract(image_folder, tmp_path / "c.h5", precision="bfloat16")
        assert keras.config.dtype_policy().name == "float16"
    finally:
        keras.config.set_dtype_policy(before)
    with open_cache(result.cache_path) as made:
        assert made.attrs["precision"] == "bfloat16" and made.load()[0].dtype == np.float32


@pytest.mark.parametrize("setting, value", [("seed", -1), ("batch_size", 0), ("dtype", "int8"), ("poolings", ["gem"]),
                                            ("workers", 0), ("precision", "half")])
def test_python_settings_are_checked_against_their_declarations_before_anything_is_read(tmp_path: Path, setting,
                                                                                         value):
    missing = tmp_path / "nowhere"  # never scanned: the setting is refused first
    with pytest.raises(FeaturekitError, match=rf"^{setting} must be .*Received: {setting}={re.escape(repr(value))}"):
        extract_many(missing, "test_tiny", **{setting: value}, log=lambda m: None)
    with pytest.raises(FeaturekitError, match=r"^cpus_per_worker must be a number .*> 0"):  # an engine option too
        extract_many(missing, "test_tiny", engine="ray", engine_options={"cpus_per_worker": 0}, log=lambda m: None)


def test_a_hand_made_feature_takes_back_the_preprocessing_its_cache_records(image_folder: Path, tmp_path: Path):
    """Shifted scoring (`compare --view`) rebuilds a cache's request from its attributes: a hand-made feature records
    preprocessing "none", which no Keras backbone takes; its own entry accepts it."""
    made = extract(image_folder, "spam", image_size=32, cache=tmp_path / "spam.h5", log=lambda m: None)
    with open_cache(made.cache_path) as cache:
        recorded = cache.attrs["preprocessing"]
    again = extract(image_folder, "spam", image_size=32, preprocessing=recorded, cache=made.cache_path,
                    log=lambda m: None)
    assert recorded == "none" and again.status == "up-to-date"


def test_features_that_differ_from_the_training_cache_name_each_difference():
    from featurekit.extraction.plan import check_expected_identity

    identity = {"backbone": "test_tiny", "weights": "none", "precision": "float32", "data_fingerprint": "b",
                "view": "jpeg:50", "subset": "test"}
    check_expected_identity(identity, {"backbone": "test_tiny", "view": "", "subset": ""})  # view, subset aside
    with pytest.raises(FeaturekitError, match=r"fitted on: precision is 'bfloat16' in the training cache but "
                                              r"'float32' here; the images \(or their split\) differ"):
        check_expected_identity(identity, {"precision": "bfloat16", "data_fingerprint": "a"})
