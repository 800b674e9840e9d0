"""Cache -> fitted probe on disk: train on `train`, early-stop and choose the threshold on `valid`.

A fitted probe lives in ``runs/<cache-name>/<probe>/``: the estimator (``model/``) and ``fitted.json``,
which records the cache fingerprint, the class names, the threshold chosen on valid, the parameters,
the fit time and library versions. A probe is reused only while its cache and parameters still match.
Features that fit the memory budget are loaded; larger ones are streamed from HDF5 in chunks.

A fusion of several caches (`featurekit.cache.fusion`, given as a list of cache paths) fits like one cache, in
``runs/fuse-<short hash>/<probe>/``; its fitted.json also lists the `members` (each member's path,
fingerprint and embedding record, in the order their columns are concatenated), so `predict` can
rebuild every member's embedder.
"""

from __future__ import annotations

import inspect
import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from featurekit.cache import SplitAccess, library_versions
from featurekit.cache.fusion import fusion_command_flags
from featurekit.errors import FeaturekitError
from featurekit.evaluation.train_views import open_training_source
from featurekit.parameters import MEMORY_BUDGET_GB, RUNS_DIR
from featurekit.fsutil import (
    atomic_write_json,
    discard_stale_temporaries,
    make_folder,
    refuse_unless_ours,
    replace_directory,
    storage_error,
    temporary_sibling,
)

FITTED_FILE = "fitted.json"
MODEL_DIR = "model"
THRESHOLD_MAX = float(np.nextafter(1.0, 2.0))  # `choose_threshold` may return just above the top score
STREAM_CHUNK_BYTES = 32 * 2**20  # per streamed chunk: small against any budget, large enough for fast BLAS
# Largest row norm accepted: its square stays far inside float32 (3.4e38), where probes compute. Real
# embeddings have norms below 1e6.
FEATURE_NORM_MAX = 1e18

# Keys without which a fitted.json cannot be used (the rest is provenance).
REQUIRED_META_KEYS = ("probe", "params", "cache_fingerprint", "class_names", "threshold", "embedding")
# Attributes of the cache copied into fitted.json, so `predict` can rebuild the same embedder.
EMBEDDING_KEYS = ("backbone", "weights", "weights_label", "weights_sha256", "random_features", "seed", "layer",
                  "pooling", "image_size", "preprocessing", "precision", "architecture_variant", "backend", "feature_dim", "dtype",
                  "data_fingerprint", "n_rows", "view", "subset")


@dataclass
class FittedProbe:
    """A fitted estimator with what it was fitted on."""

    estimator: Any
    meta: dict[str, Any]
    directory: Path

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])


def fit_estimator(probe: str, params: dict[str, Any], x_train: np.ndarray, y_train: np.ndarray,
                  x_valid: np.ndarray, y_valid: np.ndarray) -> Any:
    """A probe fitted on arrays in memory; probes that early-stop get the valid split as `X_val`/`y_val`."""
    from featurekit.probes import make_probe

    estimator = make_probe(probe, **params)
    valid = {"X_val": x_valid, "y_val": y_valid} if "X_val" in inspect.signature(estimator.fit).parameters else {}
    return estimator.fit(x_train, y_train, **valid)  # `fit` returns the estimator (scikit-learn's API)


def _check_finite(x: np.ndarray, cache: SplitAccess, split: str) -> np.ndarray:
    """Refuse features that are NaN or infinite, or so large that the probes' arithmetic overflows."""
    if not np.isfinite(x).all():
        raise FeaturekitError(
            f"Cache {cache.path.name} has {int((~np.isfinite(x)).sum())} NaN or infinite feature values in its {split!r} split.",
            received=str(cache.path),
            fix="Re-extract it with `overwrite` (float16 overflows on large activations: try `dtype` float32).")
    largest = largest_row_norm(x)
    if not largest <= FEATURE_NORM_MAX:
        raise FeaturekitError(
            f"Cache {cache.path.name} has feature rows of L2 norm up to {largest:.3g} in its {split!r} split: finite, "
            f"but beyond {FEATURE_NORM_MAX:.0e}, where the probes' statistics and float32 products (squared norms, "
            "a layer's sums) overflow to infinity and then NaN.",
            received=str(cache.path),
            fix="Re-extract it with `overwrite` from images and a backbone that give "
                "features of ordinary size (a damaged or hand-edited cache holds values such as 3e38).")
    return x


def largest_row_norm(x: np.ndarray, block_rows: int = 4096) -> float:
    """The largest L2 norm of a row, summed in float64 block by block (no float64 copy of the whole array)."""
    blocks = (np.asarray(x[start:start + block_rows], dtype=np.float64) for start in range(0, len(x), block_rows))
    return max((float(np.sqrt(np.einsum("ij,ij->i", b, b).max(initial=0.0))) for b in blocks), default=0.0)


def _stream(cache: SplitAccess, split: str, shuffle: bool) -> Callable[[int], Any]:
    rows = max(1, STREAM_CHUNK_BYTES // (4 * cache.feature_dim))

    def batches(epoch: int = 0):
        for x, y in cache.iter_batches(split, rows, shuffle=shuffle, seed=epoch):
            yield _check_finite(x, cache, split), y
    return batches


def split_scores(fitted: FittedProbe, cache: SplitAccess, split: str) -> tuple[np.ndarray, np.ndarray]:
    """P(fake) and labels of one split, in row order (streamed from disk where the probe was fitted so)."""
    from featurekit.probes import fake_scores

    if fitted.meta.get("streamed") and hasattr(fitted.estimator, "predict_proba_stream"):
        scores = fitted.estimator.predict_proba_stream(_stream(cache, split, shuffle=False))[:, 1]
        return scores, cache.labels[cache.split_indices(split)]
    x, y = cache.load(split)
    return fake_scores(fitted.estimator, _check_finite(x, cache, split)), y


def fit_probe(cache_path: str | Path | Sequence[str | Path], probe: str, params: dict[str, Any] | None = None,
              out: str | Path | None = None, runs_dir: str | Path = RUNS_DIR,
              memory_budget_gb: float = MEMORY_BUDGET_GB, log: Callable[[str], None] = print,
              train_views: Sequence[str] | str | None = None) -> FittedProbe:
    """Fit one probe on a cache's train split and save it with its threshold and provenance.

    Args:
        cache_path: A finished cache, or a list of two or more caches of the same images to fit on
            their fused features (see `featurekit.cache.fusion`).
        probe: Probe name (see `featurekit.probes.list_probes`).
        params: Constructor parameters of the probe.
        out: Output folder; default ``runs/<cache-name>/<probe>``.
        runs_dir: Root of default output folders.
        memory_budget_gb: Train and valid features larger than this are streamed from disk in chunks.
        log: Where messages go.
        train_views: Views of the train split to fit on beside its clean rows (`featurekit.evaluation.train_views`).

    Returns:
        The fitted probe, already saved. Nothing is written unless fitting succeeded.
    """
    with open_training_source(cache_path, train_views, log=log) as cache:
        # The default folder: runs/<cache file stem>/<probe>, runs/fuse-<short hash>/<probe> for a fusion,
        # runs/<cache file stem>-tv-<short hash>/<probe> with training views (`featurekit.cache.augmented`).
        return fit_on(cache, probe, dict(params or {}), Path(out or Path(runs_dir) / cache.run_name / probe),
                      memory_budget_gb, log)


def fit_on(cache: SplitAccess, probe: str, params: dict[str, Any], directory: Path, memory_budget_gb: float,
           log: Callable[[str], None] = print) -> FittedProbe:
    """Fit one probe on an open source whose contents and splits were checked (`open_training_source`), and save it
    in `directory`."""
    from featurekit.metrics import choose_threshold
    from featurekit.probes import make_stream_probe, save_probe

    refuse_unless_ours(directory, is_fitted_folder, "The output folder")  # before any work
    streamed = cache.nbytes("train") + cache.nbytes("valid") > memory_budget_gb * 2**30
    started = time.perf_counter()
    if streamed:
        log(f"{probe}: streaming {cache.nbytes('train') / 2**30:.1f} GiB of train features from {cache.path.name} "
            f"(budget {memory_budget_gb} GiB).")
        estimator = make_stream_probe(probe, **params)
        estimator.fit_stream(_stream(cache, "train", shuffle=True), valid=_stream(cache, "valid", shuffle=False))
    else:
        (x_train, y_train), (x_valid, y_valid) = cache.load("train"), cache.load("valid")
        estimator = fit_estimator(probe, params, _check_finite(x_train, cache, "train"), y_train,
                                  _check_finite(x_valid, cache, "valid"), y_valid)
    meta = {
        "probe": probe, "params": params, **cache.clean.provenance(EMBEDDING_KEYS),
        "content_checksums": cache.content_checksums,
        "class_names": cache.class_names, "streamed": streamed, "fit_seconds": round(time.perf_counter() - started, 3),
        "train_views": list(cache.train_views), "train_view_caches": list(cache.train_view_caches),
        "n_train": int(len(cache.split_indices("train"))), "n_valid": int(len(cache.split_indices("valid"))),
        "data_root": cache.attrs.get("data_root", ""),
        "versions": library_versions(), "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    fitted = FittedProbe(estimator, meta, directory)
    valid_scores, valid_labels = split_scores(fitted, cache, "valid")
    meta["threshold"] = choose_threshold(valid_labels, valid_scores)
    _save_atomically(fitted, save_probe)
    return fitted


def is_fitted_folder(path: str | Path) -> bool:
    """featurekit's marker of a fitted-model folder: a real folder holding `fitted.json` and `model/`."""
    path = Path(path)
    return (path.is_dir() and not path.is_symlink() and (path / FITTED_FILE).is_file()
            and (path / MODEL_DIR).is_dir())


def _save_atomically(fitted: FittedProbe, save_probe: Callable) -> None:
    """Write into a fresh sibling folder, then swap it in with `replace_directory`.

    The old fit stays in place until the new folder is complete (a crash before the swap keeps it
    loadable), and two fits racing for one folder both succeed, leaving one whole fit. Only a folder
    featurekit fitted is replaced (`is_fitted_folder`); anything else at the path is refused before any
    writing. Temporaries of fits that were killed are removed first; a previous fit that a killed swap
    left aside (`.NAME.old-PID-*`) only once the new one is in place.
    """
    directory = fitted.directory
    refuse_unless_ours(directory, is_fitted_folder, "The output folder")
    make_folder(directory.parent, "create the folder of the fitted model")
    discard_stale_temporaries(directory)
    temporary = make_folder(temporary_sibling(directory, "tmp"), "save the fitted model", exist_ok=False)
    try:
        save_probe(fitted.estimator, temporary / MODEL_DIR)
        atomic_write_json(temporary / FITTED_FILE, fitted.meta)
        replace_directory(temporary, directory, ours=is_fitted_folder)
        discard_stale_temporaries(directory, ("old",))  # previous fits a killed swap left aside: now replaced
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        kept = "Nothing was replaced: the previous fit, if any, is unchanged."
        if isinstance(error, OSError):
            raise storage_error(error, "save the fitted model", directory, kept) from None
        if isinstance(error, FeaturekitError):
            raise FeaturekitError(error.problem, received=str(directory), fix=f"{error.fix} {kept}") from None
        raise


def read_fitted_meta(directory: str | Path) -> dict[str, Any]:
    """The `fitted.json` of a run folder; a clear error when it is missing, truncated or not ours."""
    file = Path(directory) / FITTED_FILE
    if not file.is_file():
        raise FeaturekitError("Not a fitted-model folder (no fitted.json).", received=str(directory),
                              fix="Pass a folder written by `fit`, `fit-head` or `compare`, e.g. runs/<cache>/head.")
    try:
        meta = json.loads(file.read_bytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FeaturekitError(f"The fitted-model folder's fitted.json is truncated or damaged ({error}).",
                              received=str(file), fix=refit_command({}, directory)) from None
    missing = [key for key in REQUIRED_META_KEYS if key not in meta]
    if missing:
        raise FeaturekitError(f"The fitted-model folder's fitted.json lacks {', '.join(missing)}.",
                              received=str(file), fix=refit_command(meta, directory))
    check_decision_fields(meta, file, directory)
    return meta


def check_decision_fields(meta: dict[str, Any], file: Path, directory: str | Path) -> None:
    """Refuse a `threshold` or `class_names` that would turn scores into wrong labels without an error.

    The threshold must be a finite number within the scores' range [0, 1] (a NaN or 5 calls every image
    real); the class names two distinct names in the label order featurekit gives them
    (`featurekit.data.order_class_names`: swapped names invert every label).
    """
    from featurekit.data import order_class_names

    threshold, names = meta["threshold"], meta["class_names"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= THRESHOLD_MAX:
        raise FeaturekitError("The fitted-model folder's fitted.json has a threshold outside the scores' range [0, 1] "
                              "(or not a number): every image would get the same label.",
                              received=f"{file} (threshold {threshold!r})", fix=refit_command(meta, directory))
    if not (isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) and n for n in names)
            and names[0] != names[1]):
        raise FeaturekitError("The fitted-model folder's fitted.json must name two distinct classes in class_names.",
                              received=f"{file} (class_names {names!r})", fix=refit_command(meta, directory))
    if tuple(names) != order_class_names(names):
        raise FeaturekitError(
            "The fitted-model folder's fitted.json lists class_names in an order featurekit never writes (label 0 "
            f"first, the positive class {order_class_names(names)[1]!r} second): every label would be inverted.",
            received=f"{file} (class_names {names!r})", fix=refit_command(meta, directory))


def load_fitted(directory: str | Path, cache: SplitAccess | None = None) -> FittedProbe:
    """Load a fitted probe; with `cache`, refuse one fitted on another cache or other classes.

    Raises:
        FeaturekitError: For a damaged fitted.json, a model in the old pickle format (never opened) or
            any model file that cannot be loaded safely; the fix names the command that refits it.
    """
    from featurekit.probes import UnloadableProbeError, load_probe

    meta = read_fitted_meta(directory)
    if cache is not None:
        check_matches(meta, cache, directory)
    try:
        estimator = load_probe(Path(directory) / MODEL_DIR)
    except UnloadableProbeError as error:
        raise FeaturekitError(error.problem, received=error.received, fix=refit_command(meta, directory)) from None
    return FittedProbe(estimator, meta, Path(directory))


def refit_command(meta: dict[str, Any], directory: str | Path) -> str:
    """The fix for a fitted folder that cannot be used: the command that replaces it."""
    members = meta.get("members")
    if isinstance(members, list) and members and all(isinstance(m, dict) for m in members):
        caches = fusion_command_flags([m.get("path", "CACHE") for m in members])
    else:
        caches = f"--cache {meta.get('cache') or 'CACHE'}"
    return (f"Refit it: `python cli.py fit {caches} --probe {meta.get('probe') or 'PROBE'} --out {directory}` "
            "(`python cli.py compare --refit` refits every probe it compares).")


def check_matches(meta: dict[str, Any], cache: SplitAccess, directory: str | Path) -> None:
    """Refuse a model fitted on another cache (fingerprint), on other contents or on other class names."""
    caches = fusion_command_flags(cache.clean.member_paths)
    for wrong, problem in (
            (meta.get("class_names") != cache.class_names,
             f"was fitted on classes {meta.get('class_names')}, but cache {cache.path.name} has {cache.class_names}"),
            (meta.get("cache_fingerprint") != cache.fingerprint,
             f"was fitted on another cache (fingerprint {meta.get('cache_fingerprint')}, "
             f"this cache is {cache.fingerprint})"),
            ("content_checksums" in meta and meta["content_checksums"] != cache.content_checksums,
             f"was fitted on other contents of cache {cache.path.name} (its content checksums differ)")):
        if wrong:
            raise FeaturekitError(f"Model {directory} {problem}.", received=f"--model {directory} {caches}",
                                  fix=f"Refit it: `python cli.py fit {caches} --probe {meta.get('probe', 'head')}`.")
