"""Selection without peeking: a grid of backbones x layers x poolings x probes, chosen on valid, tested once.

    python cli.py sweep --config configs/sweep.toml [--learning-curve]

Each `[[sweep.backbone]]` entry of the config is one extraction (the keys of `extract`; several layers
and poolings come from ONE forward pass), every probe is fitted on every cache (or reused, as `compare`
does), and every row is scored on the VALID split only. The best row by valid ROC AUC (ties: fewer
features, then name) is one candidate; the caches of the top-k rows fused (`featurekit.fusion`) are
another, fitted with every probe of the grid like any other cache; the best of all by valid ROC AUC is the
choice. Only then is
the TEST split touched, once, for the chosen configuration: a table that ranked rows on test would
report the maximum of many noisy test scores, which is optimistic by construction.

With `learning_curve`, the chosen configuration is refitted on 1/8, 1/4, 1/2 and all of the training
split (stratified subsamples, seeded, repeated) and scored on test, which tells whether more data or
better features would pay.
"""

from __future__ import annotations

import inspect
import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rich.markup import escape

from featurekit.errors import FeaturekitError, given
from featurekit.options import default as declared

LEARNING_CURVE_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)
SELECTION_RULE = ("chosen on valid ROC AUC (ties: fewer features, then name); the fused caches of the top-k rows, "
                  "under every probe, are more candidates; test reported once, for the chosen configuration only")
# Columns of a sweep row: valid figures only. No test column may ever be added here.
VALID_ROW_KEYS = (
    "rank", "cache", "backbone", "weights_label", "random_features", "layer", "pooling", "image_size",
    "preprocessing", "feature_dim", "probe", "n_valid", "valid_roc_auc", "valid_roc_auc_ci_low",
    "valid_roc_auc_ci_high", "valid_average_precision", "valid_accuracy", "valid_balanced_accuracy", "threshold",
    "fit_seconds", "reused", "streamed", "leaks", "model_dir",
)
TEST_KEYS = ("n", "n_fake", "threshold", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "roc_auc",
             "roc_auc_ci_low", "roc_auc_ci_high", "average_precision", "accuracy_real", "accuracy_fake",
             "balanced_accuracy", "eer", "tpr_at_1pct_fpr", "f1", "collapsed",
             # Reported beside the figures at the valid threshold, never used to choose (`compare.shift_figures`):
             "oracle_accuracy", "mean_p_fake_real", "mean_p_fake_fake")


_WHERE_KEYS = ("test_set", "view", "scored_cache")  # where a row of the choice elsewhere was scored


@dataclass
class SweepResult:
    """What a sweep found.

    Attributes:
        name: The sweep's name (results file names).
        rows: One row per cache x probe with VALID metrics only, best first (`rank` 1).
        fusion: The best of the top-k fusion's rows (valid metrics), or None when there was none.
        chosen: The chosen row (one of `rows`, or `fusion`).
        test: Test metrics of the chosen configuration: computed once, after the choice.
        learning_curve: Points of the learning curve (test figures by training size), or None.
        notes: What the reader should know (leaks, a fusion that left rows out ...).
        written: Files written.
    """

    name: str
    rows: list[dict[str, Any]]
    fusion: dict[str, Any] | None
    chosen: dict[str, Any]
    test: dict[str, Any]
    learning_curve: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    fusion_rows: list[dict[str, Any]] = field(default_factory=list)  # the fusion under every probe, best first
    test_sets: list[dict[str, Any]] = field(default_factory=list)  # the choice on views and other test sets
    threshold_on: str = "valid"  # or "valid+views": where the threshold of the test figures was chosen
    written: list[Path] = field(default_factory=list)

    @property
    def model_dir(self) -> str:
        """The chosen fitted probe's folder: what `predict` takes."""
        return str(self.chosen["model_dir"])

    @property
    def predict_command(self) -> str:
        """The exact command that scores new images with the chosen configuration."""
        return f"python cli.py predict IMAGES_OR_FOLDER --model {shlex.quote(self.model_dir)}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the valid table, the fusion candidate, the choice, and the test figures apart."""
        return {
            "name": self.name, "selection": SELECTION_RULE,
            "rows": [public(row) for row in self.rows],
            "fusion_candidate": public(self.fusion) if self.fusion else None,
            "fusion_rows": [public(row) for row in self.fusion_rows],
            "chosen": public(self.chosen), "model_dir": self.model_dir, "predict_command": self.predict_command,
            "test_of_chosen": {key: self.test.get(key) for key in TEST_KEYS},
            "threshold_on": self.threshold_on,
            "other_test_sets_of_chosen": [{key: row.get(key) for key in (*_WHERE_KEYS, *TEST_KEYS)}
                                          for row in self.test_sets],
            "learning_curve": self.learning_curve, "notes": self.notes,
        }


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A row's VALID_ROW_KEYS, as plain values (no private fitted models or scores)."""
    return {key: (row[key].item() if isinstance(row.get(key), np.generic) else row.get(key)) for key in VALID_ROW_KEYS}


# --------------------------------------------------------------------------------------------------
# Scoring on valid, choosing, testing once


def _valid_row(fit: Any, leaks: bool | None, n_boot: int) -> dict[str, Any]:
    """One row of valid figures: the fitted probe's own valid scores, at the threshold chosen on valid."""
    from featurekit.compare import row_description, scored

    metrics = scored(fit.fitted, fit.cache, "valid", n_boot)
    description = row_description(fit.source, fit.cache)
    return {
        **description, "probe": fit.probe, "n_valid": metrics["n"], "valid_roc_auc": metrics["roc_auc"],
        "valid_roc_auc_ci_low": metrics["roc_auc_ci_low"], "valid_roc_auc_ci_high": metrics["roc_auc_ci_high"],
        "valid_average_precision": metrics["average_precision"], "valid_accuracy": metrics["accuracy"],
        "valid_balanced_accuracy": metrics["balanced_accuracy"], "threshold": fit.fitted.threshold,
        "fit_seconds": fit.fitted.meta["fit_seconds"], "reused": fit.reused,
        "streamed": bool(fit.fitted.meta.get("streamed")), "leaks": leaks, "model_dir": str(fit.fitted.directory),
        "name": f"{description['cache']} {fit.probe}", "_source": fit.source, "_fitted": fit.fitted,
    }


def _rank_key(row: dict[str, Any]) -> tuple:
    auc = row["valid_roc_auc"]
    return (-(auc if np.isfinite(auc) else -np.inf), int(row["feature_dim"]), str(row["name"]))


def top_k_caches(rows: Sequence[dict[str, Any]], k: int) -> list[Any]:
    """The caches of the best rows, best first, each once, until k distinct caches (plain caches only)."""
    chosen: list[Any] = []
    for row in sorted(rows, key=_rank_key):
        source = row["_source"]
        if isinstance(source, (list, tuple)) or source in chosen:
            continue
        chosen.append(source)
        if len(chosen) == k:
            break
    return chosen


def select_on_valid(
    caches: Sequence[str | Path],
    probes: Sequence[str],
    probe_params: dict[str, dict[str, Any]] | None = None,
    top_k: int = declared("sweep", "top_k"),
    runs_dir: str | Path = declared("sweep", "runs_dir"),
    refit: bool = declared("sweep", "refit"),
    n_boot: int = declared("sweep", "boot"),
    memory_budget_gb: float = declared("sweep", "memory_budget_gb"),
    audit: bool = declared("sweep", "audit"),
    name: str = "sweep",
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Fit (or reuse) every probe on every cache, rank on valid, add the top-k fusion, choose, test once.

    Args:
        caches: Caches of the same images (the sweep's extractions).
        probes: Probe names.
        probe_params: Constructor parameters per probe name.
        top_k: The caches of the best k rows are fused as one more candidate (0 or 1: none).
        runs_dir: Where fitted probes live; fits are shared with `compare` and reused.
        refit: Refit even where a matching fitted probe exists.
        n_boot: Bootstrap resamples for the intervals (valid AUC of every row; test of the choice).
        memory_budget_gb: Larger features are streamed from disk.
        audit: Audit each cache for leaks first (exact duplicates across splits) and warn loudly.
        name: The sweep's name.
        log: Where progress messages go.

    Returns:
        The SweepResult (nothing written; `sweep` writes the files).
    """
    from featurekit.compare import leaking_caches

    _check_grid(caches, probes)
    leaky = leaking_caches(list(caches), log) if audit else {}
    notes = _leak_notes(leaky)
    grid = _GridOnValid(probes, probe_params or {}, runs_dir, refit, memory_budget_gb, n_boot, leaky if audit else None,
                        log)
    rows = sorted(grid.rows(list(caches)), key=_rank_key)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    group = top_k_caches(rows, top_k) if top_k >= 2 else []
    fusion_rows: list[dict[str, Any]] = []
    if len(group) >= 2:
        # The fusion is one more cache: every probe of the grid is fitted on it, as on the others.
        log(f"fusing the caches of the top {len(group)} rows: {escape(', '.join(Path(p).name for p in group))}")
        fusion_rows = sorted(grid.rows([group]), key=_rank_key)
        for row in fusion_rows:
            row["rank"] = None
    elif top_k >= 2:
        notes.append("no fusion candidate: the top rows all come from one cache")
    fusion = fusion_rows[0] if fusion_rows else None
    chosen = min([rows[0]] + ([fusion] if fusion else []), key=_rank_key)
    log(f"chosen on valid: {escape(chosen['name'])} (valid ROC AUC {chosen['valid_roc_auc']:.3f}); "
        "scoring it on test once.")
    return SweepResult(name, rows, fusion, chosen, chosen_on_test(chosen, n_boot, log), notes=notes,
                       fusion_rows=fusion_rows)


def _check_grid(caches: Sequence[Any], probes: Sequence[str]) -> None:
    if not caches:
        raise FeaturekitError("The sweep has no caches to choose from.", received="no cache",
                              fix="List at least one extraction under [[sweep.backbone]].")
    _check_probes(probes)


def _check_probes(probes: Sequence[str]) -> None:
    from featurekit.probes import get_probe_spec

    if not probes:
        raise FeaturekitError("The sweep has no probes.", received=given("probe", list(probes)),
                              fix="List probes, e.g. probe = [\"logreg\", \"linsvm\", \"head\"].")
    for probe in probes:
        get_probe_spec(probe)  # unknown names fail before any work


def _leak_notes(leaky: dict[Path, bool]) -> list[str]:
    if not any(leaky.values()):
        return []
    return ["LEAK: " + ", ".join(Path(p).name for p, leaks in leaky.items() if leaks) +
            " hold identical images in several splits; valid and test figures there are optimistic."]


@dataclass
class _GridOnValid:
    """The probes of a sweep, fitted on caches through `featurekit.compare.fitted_grid`, as rows of valid figures."""

    probes: Sequence[str]
    probe_params: dict[str, dict[str, Any]]
    runs_dir: str | Path
    refit: bool
    memory_budget_gb: float
    n_boot: int
    leaky: dict[Path, bool] | None  # None: not audited
    log: Callable[[str], None]

    def rows(self, sources: list[Any]) -> list[dict[str, Any]]:
        from featurekit.compare import fitted_grid, source_leaks

        return [_valid_row(fit, source_leaks(fit.source, self.leaky) if self.leaky is not None else None, self.n_boot)
                for fit in fitted_grid(sources, self.probes, self.probe_params, self.runs_dir, self.refit,
                                       self.memory_budget_gb, self.log)]


def chosen_on_test(chosen: dict[str, Any], n_boot: int, log: Callable[[str], None] = print,
                   threshold: float | None = None) -> dict[str, Any]:
    """The chosen row's figures on the test split, at its threshold chosen on valid unless another is given (one
    chosen on valid plus its views): test is read for the chosen configuration only, after the choice."""
    from featurekit.compare import scored
    from featurekit.fusion import open_source

    with open_source(chosen["_source"], log) as cache:
        test = scored(chosen["_fitted"], cache, "test", n_boot, threshold)
    return {k: test[k] for k in TEST_KEYS}


# --------------------------------------------------------------------------------------------------
# Learning curve


def _seeded_params(probe: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """The probe's parameters with its own seed set, where it has one (the head, the linear SVM)."""
    from featurekit.probes import get_probe_spec

    accepted = inspect.signature(get_probe_spec(probe).factory).parameters
    return {**params, "random_state": seed} if "random_state" in accepted else dict(params)


def learning_curve(
    source: str | Path | Sequence[str | Path],
    probe: str,
    params: dict[str, Any] | None = None,
    fractions: Sequence[float] = LEARNING_CURVE_FRACTIONS,
    repeats: int = declared("sweep", "repeats"),
    seed: int = declared("sweep", "seed"),
    memory_budget_gb: float = declared("sweep", "memory_budget_gb"),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Refit one configuration on growing stratified subsamples of train; score each on test.

    Each refit chooses its threshold on the full valid split (and early-stops there, for the head), as
    every fit does. Repeats draw other subsamples (seed + repeat) and reseed probes that have a seed; at
    the full split only the probe's own seed varies, so a deterministic probe gives one value.

    Args:
        source: The chosen cache, or a fusion (a list of caches).
        probe: Probe name.
        params: Its constructor parameters.
        fractions: Fractions of the train split.
        repeats: Fits per fraction.
        seed: Seed of the first repeat's subsample.
        memory_budget_gb: The three splits must fit in this; larger features are refused here.
        log: Where progress messages go.

    Returns:
        One dict per fraction: fraction, n_train, repeats, test ROC AUC and accuracy (mean, sd, each value);
        a size the probe cannot be fitted on (kNN with fewer rows than neighbours) has `error` instead.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise FeaturekitError("The learning curve needs at least one repeat.", received=given("repeats", repeats),
                              fix=f"Use e.g. {given('repeats', 3)}.")
    splits = _three_splits(source, memory_budget_gb, log)
    params = dict(params or {})
    points = []
    for fraction in fractions:
        size = int(round(fraction * len(splits["train"][1])))
        try:
            point = _curve_point(splits, probe, params, size, repeats, seed)
        except ValueError as error:  # too few rows for this probe (kNN's neighbours, a class-stratified split)
            log(f"learning curve: {probe} cannot be fitted on {size} training images ({escape(str(error))}); skipped.")
            points.append({"fraction": float(fraction), "n_train": size, "repeats": 0, "error": str(error)})
            continue
        log(f"learning curve: {point['n_train']} training images, test ROC AUC {point['test_roc_auc_mean']:.3f} +- "
            f"{np.std(point['test_roc_auc']):.3f}")
        points.append({"fraction": float(fraction), **point})
    return points


def _three_splits(source: Any, memory_budget_gb: float, log: Callable[[str], None]
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Features and labels of train, valid and test in memory; refused beyond the memory budget."""
    from featurekit.fusion import open_source

    with open_source(source, log) as cache:
        needed = sum(cache.nbytes(split) for split in ("train", "valid", "test"))
        if needed > memory_budget_gb * 2**30:
            raise FeaturekitError(
                f"The learning curve holds the features of all three splits in memory ({needed / 2**30:.1f} GiB), "
                f"more than the memory budget.", received=given("memory_budget_gb", memory_budget_gb),
                fix="Raise the memory budget, or run the learning curve on a smaller tap or pooling.")
        return {split: cache.load(split) for split in ("train", "valid", "test")}


def _curve_point(splits: dict[str, tuple[np.ndarray, np.ndarray]], probe: str, params: dict[str, Any], size: int,
                 repeats: int, seed: int) -> dict[str, Any]:
    """Test figures of `repeats` fits on stratified subsamples of `size` training rows (seed + repeat)."""
    from sklearn.model_selection import train_test_split

    from featurekit.fitting import fit_estimator
    from featurekit.metrics import accuracy, choose_threshold, roc_auc
    from featurekit.probes import fake_scores

    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits["train"], splits["valid"], splits["test"]
    all_rows = np.arange(len(y_train))
    aucs, accuracies, sizes = [], [], []
    for repeat in range(repeats):
        rows = all_rows
        if size < len(y_train):
            rows = np.sort(train_test_split(all_rows, train_size=size, stratify=y_train, random_state=seed + repeat)[0])
        estimator = fit_estimator(probe, _seeded_params(probe, params, seed + repeat), x_train[rows], y_train[rows],
                                  x_valid, y_valid)
        threshold = choose_threshold(y_valid, fake_scores(estimator, x_valid))
        scores = fake_scores(estimator, x_test)
        aucs.append(roc_auc(y_test, scores))
        accuracies.append(accuracy(y_test, scores, threshold))
        sizes.append(len(rows))

    def sd(values: list[float]) -> float:
        return float(np.std(values, ddof=1) if repeats > 1 else 0.0)

    return {"n_train": int(sizes[0]), "repeats": repeats, "test_roc_auc_mean": float(np.mean(aucs)),
            "test_roc_auc_sd": sd(aucs), "test_accuracy_mean": float(np.mean(accuracies)),
            "test_accuracy_sd": sd(accuracies), "test_roc_auc": [float(a) for a in aucs],
            "test_accuracy": [float(a) for a in accuracies]}


def gain_per_doubling(points: Sequence[dict[str, Any]]) -> float | None:
    """Least-squares slope of mean test ROC AUC against log2(training images): the gain per doubling."""
    points = [p for p in points if "error" not in p]
    if len(points) < 2:
        return None
    x = np.log2([p["n_train"] for p in points])
    y = np.array([p["test_roc_auc_mean"] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def plot_learning_curve(points: Sequence[dict[str, Any]], out: str | Path, title: str) -> Path:
    """Test ROC AUC (mean +- sd over repeats) against training images, log2 x axis, as a PNG."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from featurekit.fsutil import atomic_write_bytes

    slope = gain_per_doubling(points)
    points = [p for p in points if "error" not in p]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    sizes = [p["n_train"] for p in points]
    axes.errorbar(sizes, [p["test_roc_auc_mean"] for p in points], yerr=[p["test_roc_auc_sd"] for p in points],
                  marker="o", capsize=4, label="test ROC AUC (mean +- sd over repeats)"
                  + (f"; {slope:+.3f} per doubling" if slope is not None else ""))
    axes.set_xscale("log", base=2)
    axes.set_xticks(sizes, [str(s) for s in sizes])
    axes.set_xlabel("training images (log2 scale)")
    axes.set_ylabel("test ROC AUC")
    axes.set_title(textwrap.fill(title, 100), fontsize=8)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(out, buffer.getvalue())


# --------------------------------------------------------------------------------------------------
# The whole sweep from a config


def _extract_grid(config: dict[str, Any], resolved: dict[str, Any], source: str, log: Callable[[str], None]
                  ) -> tuple[list[Path], list[str]]:
    """One `extract` per `[[sweep.backbone]]` entry (all its layers and poolings in one pass).

    Every entry is checked before the first is extracted. An entry whose weights cannot be had is skipped with a
    warning (the grid runs with the rest) unless `on_missing_weights` is "error"; any other error names the
    config file and the entry.

    Returns:
        The caches, and a note per skipped entry.
    """
    from featurekit.errors import WeightsUnavailableError
    from featurekit.workflow import checked_extractions, entry_error, entry_place, extract_step

    entries = (config.get("sweep") or {}).get("backbone") or []
    if not entries:
        raise FeaturekitError(f"The sweep's config {source} lists no [[sweep.backbone]] entry.", received="no entry",
                              fix="Add [[sweep.backbone]] tables with backbone, weights, layer, pooling and "
                                  "image_size: see configs/sweep.toml.")
    steps = checked_extractions(entries, config, resolved["data"], "sweep.backbone", source)
    caches: list[Path] = []
    skipped: list[str] = []
    for number, (entry, options) in enumerate(zip(entries, steps), start=1):
        place = entry_place("sweep.backbone", number, entry, source)
        try:
            caches += extract_step(options, f"sweep extract {number}/{len(entries)}", log, resolved["progress"])
        except WeightsUnavailableError as error:
            if resolved["on_missing_weights"] == "error":
                error.fix = _weights_fix(entry)
                raise entry_error(error, place, entry) from None
            skipped.append(f"skipped {place}: {error.problem} {_weights_fix(entry)} To stop instead of skipping, "
                           "set on_missing_weights = \"error\" in [sweep].")
            log(f"[bold yellow]WARNING[/]: {escape(skipped[-1])}")
        except FeaturekitError as error:
            raise entry_error(error, place, entry) from None
    if not caches:
        raise FeaturekitError(f"No entry of the sweep {source} could be extracted.", received="; ".join(skipped),
                              fix="Supply the weights files the entries name (see the warnings above).")
    return list(dict.fromkeys(caches)), skipped


def _weights_fix(entry: dict[str, Any]) -> str:
    """How to supply an entry's weights, in the config's own terms (the sweep has no weights flag)."""
    return ("To include it, name a weights file you have in that entry's `weights` list (e.g. weights = "
            "[\"imagenet\", \"path/to/file.weights.h5\"]; `python cli.py backbones --files` lists the files featurekit "
            "knows, with their sha256 and licence), or, on a machine that is online, let Keras download the "
            "ImageNet file into its cache (~/.keras/models). The entry has weights = "
            f"{entry.get('weights', 'default')!r}.")


def _report_elsewhere(result: SweepResult, resolved: dict[str, Any], log: Callable[[str], None]) -> None:
    """After the choice: with `threshold_on` "valid+views", the choice's threshold chosen again on valid plus its
    views (and its test figures at it); then the choice on each view of the test split and each other test set."""
    from featurekit.shifted_scoring import score_on_test_sets, valid_and_views_threshold

    chosen, threshold = result.chosen, None
    if resolved["threshold_on"] == "valid+views":
        threshold = valid_and_views_threshold(chosen["_source"], chosen["_fitted"], resolved["view"] or [], log=log)
        result.test = chosen_on_test(chosen, resolved["boot"], log, threshold)
        result.threshold_on = "valid+views"
    if resolved["view"] or resolved["test_data"]:
        log("scoring the choice on views and other test sets (reported only: the choice was made on valid)")
        result.test_sets = score_on_test_sets(chosen["_source"], chosen["_fitted"], resolved["test_data"] or [],
                                              resolved["boot"], log, views=resolved["view"] or [], threshold=threshold)


def check_name(name: str) -> str:
    """A sweep's name is a name, not a path: it becomes results-dir/sweep-NAME.md, nothing else.

    Raises:
        FeaturekitError: a path separator, "..", a leading dot, or other than letters, digits, spaces, ._-.
    """
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_. -]*", name) or ".." in name:
        raise FeaturekitError(
            "A sweep's name must be a plain name (letters, digits, spaces, '.', '_' and '-'; no path separator, no "
            "'..', no leading dot): it names the results files inside the results folder.",
            received=given("name", name), fix="Use e.g. faces_grid, and choose the folder with results_dir.")
    return name


def sweep(config: dict[str, Any], options: dict[str, Any] | None = None, log: Callable[[str], None] = print
          ) -> SweepResult:
    """Run a sweep config: extract the grid, fit every probe, choose on valid, test once, write the results.

    Args:
        config: The parsed config file (checked again here, so a dict from Python is held to the same rules).
        options: Options of the `sweep` command (data, learning_curve, top_k ...) overriding the file's.
        log: Where messages go.

    Returns:
        The SweepResult, with `written` listing results-dir/sweep-NAME.md, .json (and the learning-curve PNG).
    """
    from featurekit.config import check_config, resolve_config
    from featurekit.options import head_params, require
    from featurekit.probes import list_probes

    options = dict(options or {})
    source = str(options.get("config") or "the config")
    check_config(config, source)
    resolved = resolve_config("sweep", config, options)
    require("sweep", resolved)
    name = check_name(resolved["name"] or (Path(resolved["config"]).stem if resolved.get("config") else "sweep"))
    probes = list(resolved["probe"] or list_probes())
    _check_probes(probes)  # probe names too are checked before anything is extracted
    caches, skipped = _extract_grid(config, resolved, source, log)
    params = {"head": head_params(epochs=resolved["head_epochs"])}
    result = select_on_valid(caches, probes, params, top_k=resolved["top_k"], runs_dir=resolved["runs_dir"],
                             refit=resolved["refit"], n_boot=resolved["boot"],
                             memory_budget_gb=resolved["memory_budget_gb"], audit=resolved["audit"], name=name, log=log)
    result.notes += skipped
    _report_elsewhere(result, resolved, log)
    if resolved["learning_curve"]:
        chosen = result.chosen
        result.learning_curve = learning_curve(chosen["_source"], chosen["probe"], params.get(chosen["probe"], {}),
                                               repeats=resolved["repeats"], seed=resolved["seed"],
                                               memory_budget_gb=resolved["memory_budget_gb"], log=log)
    result.written = write_results(result, resolved["results_dir"])
    return result


# --------------------------------------------------------------------------------------------------
# Rendering


def features_text(row: dict[str, Any]) -> str:
    """"vgg16 block2_pool/meanstd 256px", as compare's tables name features."""
    layer = f"{row['layer']}/" if row.get("layer") else ""
    return f"{row['backbone']} {layer}{row['pooling']} {row['image_size']}px"


def _cache_text(row: dict[str, Any]) -> str:
    """The cache's file name; a fusion by its number of members (its features column names each)."""
    source = row.get("_source")
    if isinstance(source, (list, tuple)) and len(source) > 1:
        return f"fusion of {len(source)} caches"
    return str(row["cache"])


def _valid_columns():
    from featurekit.report import Column, short_weights

    def interval(row: dict[str, Any]) -> str:
        low, high = row.get("valid_roc_auc_ci_low"), row.get("valid_roc_auc_ci_high")
        value = f"{row['valid_roc_auc']:.3f}"
        return value if low is None or not np.isfinite(low) else f"{value} [{low:.3f}, {high:.3f}]"

    return (
        Column("rank", lambda r: "fusion" if r.get("rank") is None else str(r["rank"]), "right"),
        Column("cache", _cache_text),
        Column("features", features_text),
        Column("weights", lambda r: short_weights(r.get("weights_label"))),
        Column("probe", lambda r: str(r["probe"])),
        Column("dim", lambda r: str(r["feature_dim"]), "right"),
        Column("valid ROC AUC [95% CI]", interval, "right"),
        Column("valid AP", lambda r: f"{r['valid_average_precision']:.3f}", "right"),
        Column("valid acc (thr on valid)", lambda r: f"{r['valid_accuracy']:.3f}", "right"),
        Column("fit s", lambda r: f"{r['fit_seconds']:.1f}" + (" (reused)" if r.get("reused") else ""), "right"),
        Column("flags", lambda r: "; ".join(f for f in ("LEAKS" if r.get("leaks") else "",
                                                          "RANDOM FEATURES" if r.get("random_features") else "",
                                                          "streamed" if r.get("streamed") else "") if f)),
    )


def _test_rows(result: SweepResult) -> list[dict[str, str]]:
    test = result.test

    def interval(key: str) -> str:
        low, high = test.get(f"{key}_ci_low"), test.get(f"{key}_ci_high")
        value = f"{test[key]:.3f}"
        return value if low is None or not np.isfinite(low) else f"{value} [{low:.3f}, {high:.3f}]"

    return [{"what": "accuracy [95% CI]", "value": interval("accuracy")},
            {"what": "ROC AUC [95% CI]", "value": interval("roc_auc")},
            {"what": "average precision", "value": f"{test['average_precision']:.3f}"},
            {"what": "accuracy on real images", "value": f"{test['accuracy_real']:.3f}"},
            {"what": "accuracy on fake images", "value": f"{test['accuracy_fake']:.3f}"},
            {"what": f"threshold (chosen on {result.threshold_on})", "value": f"{test['threshold']:.4g}"},
            {"what": "oracle accuracy (best threshold for test; never used)",
             "value": f"{test['oracle_accuracy']:.3f}"},
            {"what": "mean P(fake) of real / of fake images",
             "value": f"{test['mean_p_fake_real']:.3f} / {test['mean_p_fake_fake']:.3f}"},
            {"what": "test images", "value": str(test["n"])}]


def _scored_on(row: dict[str, Any]) -> str:
    from featurekit.shifted_scoring import scored_on

    return scored_on(row)


def _test_set_columns():
    from featurekit.report import Column

    def interval(key: str):
        def text(row: dict[str, Any]) -> str:
            low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
            value = f"{row[key]:.3f}"
            return value if low is None or not np.isfinite(low) else f"{value} [{low:.3f}, {high:.3f}]"
        return text

    return (
        Column("scored on", _scored_on),
        Column("images", lambda r: str(r["n"]), "right"),
        Column("accuracy at the threshold [95% CI]", interval("accuracy"), "right"),
        Column("acc real", lambda r: f"{r['accuracy_real']:.3f}", "right"),
        Column("acc fake", lambda r: f"{r['accuracy_fake']:.3f}", "right"),
        Column("ROC AUC [95% CI]", interval("roc_auc"), "right"),
        Column("oracle acc (best thr for this set; never used)", lambda r: f"{r['oracle_accuracy']:.3f}", "right"),
        Column("mean P(fake) real / fake", lambda r: f"{r['mean_p_fake_real']:.3f} / {r['mean_p_fake_fake']:.3f}",
               "right"),
    )


def _curve_columns():
    from featurekit.report import Column

    return (
        Column("train fraction", lambda p: f"{p['fraction']:.3g}", "right"),
        Column("training images", lambda p: str(p["n_train"]), "right"),
        Column("repeats", lambda p: str(p["repeats"]), "right"),
        Column("test ROC AUC (mean +- sd)", lambda p: f"not fitted: {p['error']}" if "error" in p else
               f"{p['test_roc_auc_mean']:.3f} +- {p['test_roc_auc_sd']:.3f}", "right"),
        Column("test accuracy (mean +- sd)", lambda p: "" if "error" in p else
               f"{p['test_accuracy_mean']:.3f} +- {p['test_accuracy_sd']:.3f}", "right"),
    )


def _chosen_line(result: SweepResult) -> str:
    chosen = result.chosen
    kind = "the top-k fusion" if chosen is result.fusion else f"row {chosen['rank']}"
    return (f"chosen on valid ({kind}): {features_text(chosen)} with {chosen['probe']} ({chosen['feature_dim']} "
            f"features), valid ROC AUC {chosen['valid_roc_auc']:.3f}")


def _curve_line(points: Sequence[dict[str, Any]]) -> str:
    slope = gain_per_doubling(points)
    return "" if slope is None else f"about {slope:+.3f} test ROC AUC per doubling of the training split (least squares)"


def render_markdown(result: SweepResult, plot_name: str | None = None) -> str:
    """The sweep as Markdown: the valid table, the fusion candidate, the choice, then the test figures apart."""
    from featurekit.report import Column, markdown_table, weights_footnotes

    lines = [f"# sweep {result.name}", "", f"Selection: {SELECTION_RULE}."]
    if result.notes:
        lines += [""] + [f"- **{note}**" if note.startswith("LEAK") else f"- {note}" for note in result.notes]
    lines += ["", "## every configuration, on the valid split only", "",
              markdown_table(result.rows, _valid_columns()).rstrip("\n")]
    notes = weights_footnotes(result.rows + ([result.fusion] if result.fusion else []))
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    lines += ["", "## top-k fusion candidate (valid split)", ""]
    lines.append(markdown_table(result.fusion_rows or [result.fusion], _valid_columns()).rstrip("\n")
                 if result.fusion else "none")
    lines += ["", "## the choice, and its test figures (reported once)", "", _chosen_line(result), "",
              markdown_table(_test_rows(result), (Column("test split", lambda r: r["what"]),
                                                  Column("value", lambda r: r["value"], "right"))).rstrip("\n")]
    if result.test_sets:
        lines += ["", "## the choice on views and other test sets (reported only, never used to choose)", "",
                  markdown_table(result.test_sets, _test_set_columns()).rstrip("\n")]
    lines += ["", f"The chosen model's folder: `{result.model_dir}`. Score new images with it:", "",
              f"    {result.predict_command}"]
    if result.learning_curve:
        lines += ["", "## learning curve of the chosen configuration (test split)", "",
                  markdown_table(result.learning_curve, _curve_columns()).rstrip("\n"), "", _curve_line(result.learning_curve)]
        if plot_name:
            lines += ["", f"![learning curve]({plot_name})"]
    return "\n".join(lines) + "\n"


def render_table(result: SweepResult):
    """Rich renderables: the valid table, the fusion candidate, then the choice and its test figures apart."""
    from rich.console import Group
    from rich.text import Text

    from featurekit.report import Column, rich_table

    parts: list[Any] = [Text(f"WARNING: {note}", style="bold red") if note.startswith("LEAK") else Text(f"note: {note}")
                        for note in result.notes]
    parts.append(rich_table(result.rows, _valid_columns(), title=f"sweep {result.name}: every configuration, VALID "
                            "split only", caption=SELECTION_RULE))
    if result.fusion:
        parts.append(rich_table(result.fusion_rows or [result.fusion], _valid_columns(),
                                title="top-k fusion candidate, every probe (valid split)"))
    parts.append(Text(_chosen_line(result), style="bold"))
    parts.append(rich_table(_test_rows(result), (Column("test split", lambda r: r["what"]),
                                                  Column("value", lambda r: r["value"], "right")),
                            title="test figures of the chosen configuration (reported once)"))
    if result.learning_curve:
        parts.append(rich_table(result.learning_curve, _curve_columns(), title="learning curve (test split)",
                                caption=_curve_line(result.learning_curve) or None))
    if result.test_sets:
        parts.append(rich_table(result.test_sets, _test_set_columns(),
                                title="the choice on views and other test sets (reported only, never used to choose)"))
    parts.append(Text(f"chosen model: {result.model_dir}\nscore new images with: {result.predict_command}",
                      style="bold"))
    return Group(*parts)


def write_results(result: SweepResult, results_dir: str | Path) -> list[Path]:
    """results-dir/sweep-NAME.md and .json, and sweep-NAME-learning-curve.png when there is a curve."""
    from featurekit.report import json_text, write_text

    folder = Path(results_dir)
    stem = folder / f"sweep-{result.name}"
    written = []
    plot_name = None
    if result.learning_curve:
        plot = plot_learning_curve(result.learning_curve, stem.with_name(stem.name + "-learning-curve.png"),
                                   f"sweep {result.name}: {_chosen_line(result)}")
        plot_name = plot.name
        written.append(plot)
    written.append(write_text(render_markdown(result, plot_name), stem.with_suffix(".md")))
    written.append(write_text(json_text(result.to_dict()), stem.with_suffix(".json")))
    return written
