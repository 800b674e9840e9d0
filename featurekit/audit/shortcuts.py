"""Shortcut probes: can trivial file properties tell real from fake without looking at the images?

Properties per file: size in bytes, JPEG quality estimate, width, height, colour mode, file format and
mean colour. Each is scored alone, and a logistic regression and a depth-3 tree are trained on all of
them together, on the train split, and scored on the test split. Any of them far from chance means the
classes differ in how their files were made, which a classifier can learn instead of the content.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from featurekit.audit.report import ShortcutReport
from featurekit.parameters import MAX_PIXELS, SHORTCUT_AUC, SHORTCUT_N_BOOT

PROPERTY_NAMES = ("file_size", "jpeg_quality", "width", "height", "mode", "format", "mean_red", "mean_green", "mean_blue")
CATEGORICAL_PROPERTIES = ("mode", "format")

# The IJG (libjpeg) luminance quantisation table at quality 50, from the JPEG standard's Annex K.
IJG_LUMINANCE_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])


def ijg_luminance_table(quality: int) -> np.ndarray:
    """The luminance table libjpeg (and Pillow) writes at this quality, baseline (values 1-255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((IJG_LUMINANCE_TABLE * scale + 50) // 100, 1, 255)


_IJG_TABLE_SUMS = np.array([ijg_luminance_table(q).sum() for q in range(1, 101)])


def estimate_jpeg_quality(quantization: dict[int, Sequence[int]] | None) -> int | None:
    """IJG quality (1-100) whose standard luminance table is closest to the file's, or None.

    Tables are compared by their sum, which ignores their order (zig-zag or natural, depending on the
    reader) and finds the exact setting of files written by libjpeg, Pillow or OpenCV. Encoders with
    their own tables (cameras, Photoshop) get the IJG quality of equal average coarseness, as in
    ImageMagick's estimate.
    """
    luminance = np.asarray((quantization or {}).get(0, ()), dtype=np.int64)
    if luminance.size != 64:
        return None
    return int(np.argmin(np.abs(_IJG_TABLE_SUMS - luminance.sum()))) + 1


class TooLargeImage(ValueError):
    """An image whose header declares more pixels than the audit may decode."""


def read_file_properties(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> dict[str, Any]:
    """Trivial properties of one image file, what a shortcut could exploit without seeing the content:
    {name: value} for each of PROPERTY_NAMES (file size, JPEG quality or None, width, height, mode, format and
    mean red, green and blue), decoding as little as possible.

    The header gives size, mode, format and the quantisation tables without decoding; a file declaring
    more than `max_pixels` (width x height) is refused before any decoding (`TooLargeImage`). The mean
    colour comes from a JPEG decoded at 1/8 scale (`draft`: only the DCT's low frequencies, whose mean
    is the full image's mean up to rounding) and from other formats decoded as they are stored (8 bits
    per channel), through Pillow's histogram: no float array of the image is ever made.
    """
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        width, height, mode, fmt = image.width, image.height, image.mode, image.format or "unknown"
        if max_pixels is not None and width * height > max_pixels:
            raise TooLargeImage(f"image too large to decode safely: {width * height:,} pixels, more than "
                                f"`max_pixels` {max_pixels:,} (raise it to read this file)")
        quality = estimate_jpeg_quality(getattr(image, "quantization", None)) if fmt == "JPEG" else None
        if fmt == "JPEG":
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        image.seek(0)
        mean = ImageStat.Stat(image.convert("RGB")).mean
    values = (os.stat(path).st_size, quality, width, height, mode, fmt, *(round(float(v), 3) for v in mean))
    return dict(zip(PROPERTY_NAMES, values))


def read_all_file_properties(paths: Sequence[Path | None], workers: int | None = None,
                             max_pixels: int | None = MAX_PIXELS
                             ) -> tuple[list[dict[str, Any] | None], list[tuple[str, str]]]:
    """Properties of many files in threads (Pillow decodes without the GIL); failures listed, not raised.

    Args:
        paths: Image files; None for a file known to be gone (its properties are None, it is not listed).
        workers: Threads (default: up to 8, one per CPU).
        max_pixels: Largest image (width x height) decoded; larger files are listed with the reason.
    """
    from PIL import Image

    def one(path: Path | None) -> dict[str, Any] | str | None:
        if path is None:
            return None
        try:
            return read_file_properties(path, max_pixels)
        except TooLargeImage as error:
            return str(error)
        # Pillow's signals for corrupt, truncated or absurdly large (decompression bomb) files.
        except (OSError, ValueError, SyntaxError, MemoryError, Image.DecompressionBombError) as error:
            return f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(one, paths, chunksize=64))
    unreadable = [(str(p), r) for p, r in zip(paths, results) if isinstance(r, str)]
    return [None if isinstance(r, str) else r for r in results], unreadable


def _property_columns(properties: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {name: np.array([str(p[name]) for p in properties]) if name in CATEGORICAL_PROPERTIES
            else np.array([-1.0 if p[name] is None else float(p[name]) for p in properties])  # no JPEG quality: -1
            for name in PROPERTY_NAMES}


def _single_property_scores(train: np.ndarray, y_train: np.ndarray, scored: np.ndarray, categorical: bool) -> np.ndarray:
    """Scores of one property for the scored rows, with everything learnt on the training rows only."""
    from featurekit.metrics import roc_auc

    if categorical:
        overall = (y_train.sum() + 1) / (len(y_train) + 2)
        rates = {value: (y_train[train == value].sum() + 1) / ((train == value).sum() + 2) for value in set(train.tolist())}
        return np.array([rates.get(value, overall) for value in scored.tolist()], dtype=np.float64)
    if np.unique(train).size < 2:
        return np.zeros(len(scored))  # constant on train: nothing to learn, every score ties
    direction = 1.0 if roc_auc(y_train, train) >= 0.5 else -1.0
    return direction * scored


def _probe_models(seed: int) -> dict[str, Any]:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    categorical = np.isin(PROPERTY_NAMES, CATEGORICAL_PROPERTIES)

    def encoder():
        one_hot = OneHotEncoder(handle_unknown="ignore")
        return make_column_transformer((StandardScaler(), ~categorical), (one_hot, categorical))

    return {
        "logistic_regression": make_pipeline(encoder(), LogisticRegression(max_iter=2000)),
        "decision_tree_depth3": make_pipeline(encoder(), DecisionTreeClassifier(max_depth=3, min_samples_leaf=5,
                                                                                random_state=seed)),
    }


def bootstrap_auc_interval(y: np.ndarray, score: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """Stratified percentile bootstrap 95 % interval of ROC AUC, many resamples per rank computation.

    The resampling of `featurekit.metrics.bootstrap_intervals` (each class drawn with replacement to its own
    size), drawn a block at a time (fakes, then reals) and scored by `metrics.resampled_roc_auc`: hundreds of
    times faster on small test splits, which matters because the audit bootstraps every suspicious property.
    """
    from featurekit.metrics import resampled_roc_auc

    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(y == 1), np.flatnonzero(y == 0)]
    per_round = max(1, 4_000_000 // len(y))  # resamples per rank computation: bounded memory
    values = []
    for start in range(0, n_boot, per_round):
        rounds = min(per_round, n_boot - start)
        drawn = np.concatenate([rows[rng.integers(0, len(rows), (rounds, len(rows)))] for rows in classes], axis=1)
        values.append(resampled_roc_auc(y, score, drawn))
    low, high = np.percentile(np.concatenate(values), [2.5, 97.5])
    return round(float(low), 4), round(float(high), 4)


def shortcut_probes(files: Sequence[Path | None], labels: np.ndarray, splits: np.ndarray,
                    threshold: float = SHORTCUT_AUC, n_boot: int = SHORTCUT_N_BOOT, seed: int = 0,
                    workers: int | None = None, max_pixels: int | None = MAX_PIXELS) -> ShortcutReport:
    """Train classifiers on trivial properties of the image `files`: do they beat chance on held-out images?

    Trained on the train split and scored on test (valid when test lacks a class). A property or probe
    is flagged when its ROC AUC is beyond `threshold` on either side of chance (above it, or below
    1 - threshold) and its 95 % bootstrap interval excludes 0.5 (`ShortcutReport.is_signal`), so a few
    lucky test images cannot raise the alarm on their own.

    The properties are read by `read_all_file_properties` (`workers`, `max_pixels`): a file that cannot be
    read is listed and left out, as is a None (a file known to be gone, not listed).
    """
    from scipy.stats import binomtest

    from featurekit.metrics import roc_auc

    properties, unreadable = read_all_file_properties(files, workers, max_pixels or None)
    readable = np.array([p is not None for p in properties], dtype=bool)
    kept = [p for p in properties if p is not None]
    labels, splits = np.asarray(labels)[readable], np.asarray(splits)[readable]
    train = splits == "train"
    evaluation = next((s for s in ("test", "valid") if np.unique(labels[splits == s]).size == 2), None)
    if not kept or np.unique(labels[train]).size < 2 or evaluation is None:
        return ShortcutReport(threshold, unreadable=list(unreadable), skipped="no image file could be read" if not kept
                              else "the train split and a test or valid split each need both classes")
    scored = splits == evaluation
    report = ShortcutReport(threshold, eval_split=evaluation, n_train=int(train.sum()), n_eval=int(scored.sum()),
                            unreadable=list(unreadable))
    y_train, y_eval = labels[train], labels[scored]
    columns = _property_columns(kept)

    def judged(name: str, score: np.ndarray) -> tuple[float, tuple[float, float]]:
        """(ROC AUC on the scored split, its bootstrap interval); flags the name when it is a signal."""
        auc = roc_auc(y_eval, score)
        interval = bootstrap_auc_interval(y_eval, np.asarray(score, dtype=np.float64), n_boot, seed)
        if report.is_signal(auc, interval):
            report.flagged.append(name)
        return round(auc, 4), interval

    for name in PROPERTY_NAMES:
        report.property_auc[name], report.property_auc_ci[name] = judged(name, _single_property_scores(
            columns[name][train], y_train, columns[name][scored], name in CATEGORICAL_PROPERTIES))
    table = np.column_stack([columns[name] for name in PROPERTY_NAMES]).astype(object)
    for name, model in _probe_models(seed).items():
        probability = model.fit(table[train], y_train).predict_proba(table[scored])[:, 1]
        auc, (low, high) = judged(name, probability)
        correct = int(((probability >= 0.5).astype(int) == y_eval).sum())
        accuracy_ci = binomtest(correct, len(y_eval)).proportion_ci(method="wilson")
        figures = {"roc_auc": auc, "roc_auc_ci_low": low, "roc_auc_ci_high": high, "accuracy": correct / len(y_eval),
                   "accuracy_ci_low": accuracy_ci.low, "accuracy_ci_high": accuracy_ci.high}
        report.probes[name] = {key: round(float(value), 4) for key, value in figures.items()}
    return report


def _direction(auc: float) -> str:
    return "" if auc >= 0.5 else (", far BELOW chance: what it learnt on train predicts the opposite class here, so "
                                  "the classes differ in it and the splits differ in how")


def shortcut_warnings(shortcuts: ShortcutReport) -> tuple[list[str], list[str]]:
    """(loud warnings for flagged items, notes: items far from chance whose interval includes it, probes that
    did not run, files that could not be read)."""
    where = f"on the {shortcuts.eval_split} split ({shortcuts.n_eval} images)"
    bound = f"beyond {shortcuts.threshold} (or {1 - shortcuts.threshold:.2f})"
    scored = shortcuts.scored()
    warnings = [f"SHORTCUT: real and fake files differ in {name}: that property alone reaches ROC AUC "
                f"{auc:.3f} [{low:.3f}, {high:.3f}] {where}, {bound}{_direction(auc)}. "
                "A classifier can score without looking at the images; save both classes the same way "
                "(format, size, JPEG quality) or report this baseline beside every result."
                for name, (auc, (low, high)) in scored.items() if name in shortcuts.flagged and name in PROPERTY_NAMES]
    probes = [name for name in shortcuts.flagged if name not in PROPERTY_NAMES]
    if probes and not warnings:
        best = max(probes, key=lambda name: abs(scored[name][0] - 0.5))
        auc, (low, high) = scored[best]
        warnings.append(
            f"SHORTCUT: a {best.replace('_', ' ')} on trivial file properties ({', '.join(PROPERTY_NAMES)}) "
            f"reaches ROC AUC {auc:.3f} [{low:.3f}, {high:.3f}] {where}, {bound}{_direction(auc)}, "
            "though no single property does: the classes differ in how their files were made.")
    notes = [f"{name} reaches ROC AUC {auc:.3f} {where}, {bound}, but its 95% interval [{low:.3f}, {high:.3f}] "
             "includes chance: check on more images." for name, (auc, (low, high)) in scored.items()
             if shortcuts.far_from_chance(auc) and name not in shortcuts.flagged]
    if shortcuts.skipped:
        notes.append(f"shortcut probes not run: {shortcuts.skipped}")
    if shortcuts.unreadable:
        notes.append(f"{len(shortcuts.unreadable)} image files could not be read for the shortcut probes")
    return warnings, notes
