"""Every option of every command, declared once: type, default, help, choices, bounds, commands.

Typer builds each command's flags from these declarations (`featurekit.cli`), the TOML loader checks
config files against them (`featurekit.config`), and the `*_from_options` library entry points fill
missing values from them. A default therefore lives in exactly one place and cannot drift between
`--help`, a config file and a Python call.

Adding an option is one `Option(...)` entry in OPTIONS below (name it in snake_case, list the commands
that take it), then reading `options["name"]` where the command's library function needs it. Choice
lists come from `featurekit.parameters`, which the library's own checks import too.

A library function validates its arguments from these declarations with a decorator, instead of
hand-written bounds checks (as scikit-learn's `validate_params`):

    @validate_params("extract", poolings="pooling")
    def extract_many(data, backbone, *, poolings=("flatten",), batch_size=32, seed=0, ...): ...

Errors name the function's parameters (`batch_size=0`); the command line spells them as flags.

This module imports nothing heavy: `--help` reads it and must stay instant.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import math
import numbers
import operator
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from featurekit.parameters import (
    AUDIT_FORMATS,
    AUDIT_MEMORY_BUDGET_MB,
    BALANCE_TOLERANCE,
    BATCH_SIZE,
    CACHE_DIR,
    CPUS_PER_WORKER,
    DTYPE,
    ENGINE,
    GPUS_PER_WORKER,
    HEAD_EPOCHS,
    MAX_LISTED,
    MAX_PIXELS,
    MEMORY_BUDGET_GB,
    N_BOOT,
    NEAR_DUPLICATE_THRESHOLD,
    POOLING,
    PRECISION,
    PREFETCH_BATCHES,
    RAY_TIMEOUT,
    REPEATS,
    RUNS_DIR,
    SEED,
    SHORTCUT_AUC,
    SHORTCUT_N_BOOT,
    TOP_K,
    WEIGHTS as DEFAULT_WEIGHTS,
    DTYPES,
    ENGINES,
    EXTRACT_POOLINGS,
    FORMATS,
    MONITORS,
    ON_MISSING_WEIGHTS,
    PRECISIONS,
    PREPROCESSING_MODES,
    PROBES,
    SCHEDULES,
    SEED_MAX,
    SEED_MIN,
    VIEWS_SPLITS,
)
from featurekit.errors import ConfigFileError, FeaturekitError, given

# --------------------------------------------------------------------------------------------------
# Value types


def _instance(types: type | tuple, convert: Callable[[Any], Any] = lambda value: value,
              valid: Callable[[Any], bool] = lambda value: True) -> Callable[[Any], Any]:
    """A check that a value is one of `types` (a bool is no number: TOML `true` is not 1) and is `valid`; then
    `convert`."""
    def check(value: Any) -> Any:
        if not isinstance(value, types) or (isinstance(value, bool) and types is not bool) or not valid(value):
            raise ValueError
        return convert(value)

    return check


_integer = _instance(numbers.Integral, int)
_string = _instance(str)
# A finite number: NaN and infinity (TOML has `nan` and `inf`) fit no bound and mean no setting.
_number = _instance(numbers.Real, float, math.isfinite)
_path = _instance((str, os.PathLike), valid=lambda value: str(value) != "")


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], list]:
    return lambda value: [item(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def _integer_or_auto(value: Any) -> int | str:
    """An integer, or "auto" (the library picks); from the command line a string of digits is an integer."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value if value == "auto" else _integer(value)


def _string_or_strings(value: Any) -> str | list[str]:
    """Kept as given: a comma-separated string and a (non-empty) list of strings mean the same to the library."""
    return _string(value) if isinstance(value, str) else _instance((list, tuple), _list_of(_string), bool)(value)


def name_list(value: Any) -> list:
    """The names a checked NAMES value (`layer`, `pooling`) stands for, as `Option.convert` checks them: "avg, max"
    and ["avg", "max"] and ["avg, max"] -> ["avg", "max"] (spaces and empty parts dropped); None (not set) -> [None]."""
    if value is None:
        return [None]
    return [part.strip() for item in ([value] if isinstance(value, str) else value) for part in item.split(",")
            if part.strip()]


def _split(value: Any) -> str | list[float]:
    """"0.7,0.15,0.15" or three numbers, finite, non-negative, summing to 1; kept as given (the library
    parses it)."""
    parts = value.split(",") if isinstance(value, str) else value
    numbers_ = [_number(float(p) if isinstance(p, str) else p) for p in _instance((list, tuple))(parts)]
    if len(numbers_) != 3 or any(n < 0 for n in numbers_) or not abs(sum(numbers_) - 1.0) <= 1e-6:
        raise ValueError
    return value if isinstance(value, str) else numbers_


def _fusion_groups(value: Any) -> bool | list[list[str | os.PathLike]]:
    """true/false (fuse the compared caches), or fusion groups: `[[compare.fuse]]` tables each with
    `caches = [...]` (two or more), or lists of paths (from Python); groups come back as lists of paths."""
    if isinstance(value, bool):
        return value
    groups = [group["caches"] if isinstance(group, dict) and set(group) == {"caches"} else group
              for group in (value if isinstance(value, (list, tuple)) else [])]
    if not groups or any(not isinstance(group, (list, tuple)) or len(group) < 2 for group in groups):
        raise ValueError
    return [[_path(member) for member in group] for group in groups]


@dataclass(frozen=True)
class Kind:
    """A value type: how to check and convert a value, how to describe it, what Typer parses.

    Attributes:
        expected: How errors describe it ("an integer").
        convert: Returns the value as the library takes it; raises ValueError if it does not fit.
        cli_type: The annotation Typer parses the flag with.
    """

    expected: str
    convert: Callable[[Any], Any]
    cli_type: Any


INT = Kind("an integer (no quotes)", _integer, int)
FLOAT = Kind("a number (no quotes)", _number, float)
STR = Kind("a string", _string, str)
INT_OR_AUTO = Kind('an integer or "auto"', _integer_or_auto, str)
BOOL = Kind("true or false (a boolean, no quotes)", _instance(bool), bool)  # "false" is a string, and always true
PATH = Kind("a path (a string)", _path, Path)
PATHS = Kind("a path or a list of paths", _list_of(_path), list[Path])
STRS = Kind("a string or a list of strings", _list_of(_string), list[str])
NAMES = Kind("a name, names separated by commas, or a list of names", _string_or_strings, str)
WEIGHTS = Kind("imagenet, none, default or a weights file path, or a list of these to try in order",
               _string_or_strings, str)
FUSION = Kind("true or false, or [[compare.fuse]] tables each with caches = [two or more cache files]",
              _fusion_groups, bool)
SPLIT = Kind('three train,valid,test fractions that sum to 1: "0.7,0.15,0.15" or [0.7, 0.15, 0.15]', _split, str)


# --------------------------------------------------------------------------------------------------
# Declarations


@dataclass(frozen=True)
class Option:
    """One option of one or more commands.

    Attributes:
        name: The parameter name (snake_case); the flag is `--name-with-dashes`, the TOML key `name`.
        kind: Its value type.
        default: Its built-in default; None means "not set" (required, or a derived default).
        help: One line for `--help`.
        commands: The commands (TOML table names) that take it.
        choices: The only allowed values (each item, for list kinds).
        minimum, maximum: Inclusive bounds of numbers.
        above: An exclusive lower bound of numbers (learning rates, budgets).
        below: An exclusive upper bound of numbers (dropout).
        required: The command cannot run without a value (from the command line or a config file).
        default_text: What `--help` shows as the default when `default` is None.
        example: A value to show in errors (defaults to `default`).
        short: A one-letter flag ("-d").
        argument: Given positionally on the command line instead of as a flag.
    """

    name: str
    kind: Kind
    default: Any
    help: str
    commands: tuple[str, ...]
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    required: bool = False
    default_text: str | None = None
    example: Any = None
    short: str | None = None
    argument: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def expected(self) -> str:
        """What a valid value looks like, for error messages."""
        if self.choices:
            each = "one of" if self.kind is STR else f"{self.kind.expected}, each one of"
            return f"{each}: {', '.join(self.choices)}"
        bounds = [f"{sign} {limit:.15g}" for sign, limit, _ in self._limits()]  # 16, not 16.0; 0.5; 4294967295
        return self.kind.expected + (f", {' and '.join(bounds)}" if bounds else "")

    def _limits(self) -> list[tuple[str, float, Callable[[Any, Any], bool]]]:
        """The declared bounds as (sign, limit, test), in the order messages name them."""
        return [(sign, getattr(self, field), test) for sign, field, test in _LIMITS if getattr(self, field) is not None]

    def convert(self, value: Any) -> Any:
        """The value as the library takes it; raises ValueError when its type, choices or bounds are wrong."""
        value = self.kind.convert(value)
        if not isinstance(value, str) and not all(test(value, limit) for _, limit, test in self._limits()):
            raise ValueError  # bounds are declared on numbers only; "auto" has none
        if self.choices:
            items = value if isinstance(value, list) else [value]
            if self.kind is NAMES:  # "avg,max": each comma-separated name is a choice
                items = [part.strip() for item in items for part in item.split(",")]
            if any(item not in self.choices for item in items):
                raise ValueError
        return value

    def sample(self) -> Any:
        """A valid value for examples in messages."""
        return self.example if self.example is not None else self.default


_LIMITS = ((">=", "minimum", operator.ge), (">", "above", operator.gt), ("<=", "maximum", operator.le),
           ("<", "below", operator.lt))


# Each command (its TOML table name; the command line spells it with dashes) -> what Ctrl-C leaves behind, printed
# when the user presses it: it must be true for the command. A command with a `config` option reads config files.
_NOTHING_SAVED = "Interrupted; nothing was written."
COMMANDS: dict[str, str] = {
    "extract": "Interrupted. Finished batches are kept; run the same command again to resume.",
    "info": _NOTHING_SAVED,
    "backbones": _NOTHING_SAVED,
    "fit_head": "Interrupted; nothing was saved for the head in progress (a fitted probe is written only "
                "once complete); probes fitted before are kept.",
    "fit": "Interrupted; nothing was saved for the probe in progress (a fitted probe is written only once "
           "complete); probes fitted before are kept.",
    "compare": "Interrupted; nothing was saved for the probe in progress; probes already fitted are kept "
               "and reused when you run compare again.",
    "train_backbone": "Interrupted. Finished epochs are kept; run the same command again to resume from "
                      "the last one.",
    "run": "Interrupted. Finished caches, extraction batches, trained epochs and fitted probes are kept; "
           "run the same command again to continue where it stopped.",
    "predict": "Interrupted; no predictions were written.",
    "audit": _NOTHING_SAVED,
    "sweep": "Interrupted. Caches extracted and probes fitted so far are kept and reused when you run the "
             "same sweep again.",
    "report": "Interrupted; no page was written; probes already fitted are kept and reused next time.",
}


OPTIONS: tuple[Option, ...] = (
    Option("data", PATH, None, "Data folder: DIR/<class>/... or DIR/{train,valid,test}/<class>/...",
           ("extract", "train_backbone", "run", "sweep"), required=True, example="DIR", short="-d"),
    # extract
    Option("backbone", STR, None, "Registry name (see `backbones`).", ("extract",), required=True,
           example="vgg16", short="-b"),
    Option("weights", WEIGHTS, DEFAULT_WEIGHTS, "imagenet | none (seeded random features) | PATH to .weights.h5 or "
           ".keras; default: the backbone's pretrained weights. A config may list several to try in order.",
           ("extract",)),
    Option("pooling", NAMES, POOLING, "flatten (what the study fed its head) | avg | max | meanstd; several, "
           "comma-separated, come from one pass.", ("extract",), choices=EXTRACT_POOLINGS),
    Option("image_size", INT, None, "Square input size.", ("extract",), minimum=16, maximum=4096,
           default_text="the backbone's native size", example=224),
    Option("layer", NAMES, None, "Tap this layer instead of the last block, e.g. block2_pool; several, "
           "comma-separated, come from one pass.", ("extract",), default_text="the last block",
           example="block2_pool"),
    Option("preprocessing", STR, None, "Override the backbone's own preprocessing (caffe | tf | torch | rescale = "
           "the study's x/255).", ("extract",), default_text="the backbone's own", example="tf",
           choices=PREPROCESSING_MODES),
    Option("dtype", STR, DTYPE, "Stored feature type (float16 halves the disk).", ("extract",),
           choices=DTYPES),
    Option("cache", PATH, None, "Cache file (one layer and pooling only).", ("extract",),
           default_text="<cache-dir>/<data>-<backbone>[-<layer>]-<pooling>-<size>.h5", example="cache/x.h5"),
    Option("on_missing_weights", STR, "error", "What to do when pretrained weights cannot be had: stop, or "
           "continue with seeded random weights, labelled RANDOM FEATURES.", ("extract",),
           choices=ON_MISSING_WEIGHTS),
    Option("precision", STR, PRECISION, "Compute precision of the backbone: float32 | bfloat16 | float16 | auto "
           "(bfloat16 on a GPU or a CPU with AVX512-BF16/AMX, else float32). The cache records the precision that "
           "ran and it is part of the cache identity; --dtype still sets how features are stored.", ("extract",),
           choices=PRECISIONS),
    Option("engine", STR, ENGINE, "Where the batches are computed: local (this process) | ray (Ray Data actors on a "
           "Ray cluster; needs pip install 'featurekit[ray]').", ("extract",), choices=ENGINES),
    Option("ray_address", STR, None, "The Ray cluster to join (auto, or ray://HOST:10001).", ("extract",),
           default_text="a local Ray started for the run", example="auto"),
    Option("ray_timeout", FLOAT, RAY_TIMEOUT, "Seconds to wait for the Ray cluster at --ray-address to answer before "
           "giving up.", ("extract",), above=0),
    Option("ray_workers", INT, None, "Ray actors, each with its own embedder.", ("extract",), minimum=1,
           default_text="as many as the cluster holds, leaving one CPU for reading", example=2),
    Option("cpus_per_worker", FLOAT, CPUS_PER_WORKER, "CPUs each Ray actor reserves (and its decode threads unless --workers).",
           ("extract",), above=0),
    Option("gpus_per_worker", FLOAT, GPUS_PER_WORKER, "GPUs each Ray actor reserves (0.5: two actors share a GPU, one decodes "
           "while the other computes).", ("extract",), minimum=0),
    Option("ship_bytes", BOOL, False, "Send the Ray actors each file's bytes instead of its path (for nodes that do "
           "not see the data folder).", ("extract",)),
    Option("prefetch_batches", INT, PREFETCH_BATCHES, "Batches decoded ahead of the one being embedded (the local engine).",
           ("extract",), minimum=0),
    Option("allow_train_overlap", BOOL, False, "Extract even when the backbone (from train-backbone) was trained on "
           "images that land in valid/test; the cache records and flags the overlap.", ("extract",)),
    Option("view", STRS, None, "Robustness view: features of degraded copies, cached separately (jpeg:Q | blur:SIGMA "
           "| resize:F, ranges LOW-HIGH drawn per image, joined by + in order, e.g. jpeg:50+blur:1; none = clean). "
           "Repeat the flag for several: one pass each.", ("extract",), default_text="the clean images",
           example=["jpeg:50"]),
    Option("views_split", STR, "all", "Extract views for this split only (test is all compare --view needs).",
           ("extract",), choices=VIEWS_SPLITS),
    # backbones
    Option("files", BOOL, False, "Also list the weights files featurekit knows, per backbone: label, whether they "
           "are exact, whether they are present here, sha256 and licence.", ("backbones",)),
    # info
    Option("cache", PATH, None, "A cache file written by `extract`.", ("info",), required=True, argument=True),
    # fit-head and fit
    Option("cache", PATH, None, "Cache file to train on.", ("fit_head",), required=True, example="cache/NAME.h5"),
    Option("cache", PATHS, None, "Cache file to train on; with --fuse, repeat the flag for the caches to fuse.",
           ("fit",), required=True, example=["cache/NAME.h5"]),
    Option("fuse", BOOL, False, "Train on the concatenated features of every --cache (caches of the same images; "
           "rows are aligned by path and sha256).", ("fit",)),
    Option("epochs", INT, HEAD_EPOCHS, "Most epochs of the head (early stopping on valid keeps the best).",
           ("fit_head",), minimum=1),
    Option("units", INT, 512, "Hidden units of the head (the study: 512).", ("fit_head",), minimum=1),
    Option("dropout", FLOAT, 0.5, "Dropout rate of the head (the study: 0.5).", ("fit_head",), minimum=0, below=1),
    Option("batch_size", INT_OR_AUTO, "auto", "Rows per training step of the head; auto: 256 up to 16k training "
           "rows, then about 64 steps per epoch (at most 4096).", ("fit_head",), minimum=1),
    Option("probe", STR, "logreg", "The probe to fit.", ("fit",), choices=PROBES),
    Option("out", PATH, None, "Output folder.", ("fit_head", "fit"), default_text="<runs-dir>/<cache-name>/<probe>",
           example="runs/NAME"),
    Option("train_views", NAMES, None, "Also train on degraded views of the train split, comma-separated (each "
           "image degraded with its own seeded random strength, e.g. jpeg:30-95,blur:0-2; + chains steps within "
           "a view); each view is extracted once into its own cache and reused. Valid and test stay clean.",
           ("fit", "fit_head", "compare", "sweep"), default_text="the clean train split only",
           example="jpeg:30-95,blur:0-2"),
    # compare
    Option("cache", PATHS, None, "Cache file (repeat the flag for several).", ("compare",),
           default_text="every cache in --cache-dir", example=["cache/a.h5"]),
    Option("probe", STRS, None, "Probe (repeat the flag for several).", ("compare",),
           default_text="head, logreg, linsvm, knn", example=["logreg"], choices=PROBES),
    Option("data", PATH, None, "Keep only the caches made from this data folder (rows of caches of several data "
           "folders carry a data column: folder name and fingerprint; a config's top-level data key sets it too).",
           ("compare",),
           default_text="every cache given or found", example="DIR"),
    Option("include_rbf", BOOL, False, "Add the RBF-kernel SVM (slow on large splits).", ("compare",)),
    Option("refit", BOOL, False, "Refit even where a matching fitted probe exists.", ("compare", "sweep")),
    Option("boot", INT, N_BOOT, "Bootstrap resamples for the 95% intervals (0: no intervals).", ("compare", "sweep"),
           minimum=0),
    Option("head_epochs", INT, HEAD_EPOCHS, "Most epochs of the head.", ("compare", "sweep"), minimum=1),
    Option("plot", PATH, None, "Write ROC curves of every row to this PNG.", ("compare",), example="roc.png"),
    Option("view", STRS, None, "Also score every probe on this view of the test split (e.g. jpeg:50, blur:1; repeat "
           "the flag for several; sweep: the choice, after the choice); a missing view cache is extracted from the "
           "cache's data folder.", ("compare", "sweep"),
           default_text="no views", example=["jpeg:50"]),
    Option("test_data", PATHS, None, "Another test set, never used to choose: DIR (DIR/<class>/..., all its images "
           "are test images), or fake=DIR (DIR's images are all fakes, e.g. of another generator, scored beside the "
           "REAL images of the test split), real=DIR likewise, or real=DIR1,fake=DIR2. Embedded like each cache, "
           "in a cache of its own (repeat for several test sets).", ("compare", "sweep"),
           default_text="none", example=["DIR"]),
    Option("threshold_on", STR, "valid", "Where each probe's threshold is chosen: the valid split, or the valid split "
           "plus the same images under every --view (degraded copies; a missing view cache of the valid split is "
           "extracted). Never on test; the probes are the same (sweep: the choice is still made on valid).",
           ("compare", "sweep"), choices=("valid", "valid+views")),
    Option("wide", BOOL, False, "Show every metric in the terminal table (by default a terminal narrower than "
           "the full table gets the compact one; csv/json/md always carry every column).", ("compare",)),
    Option("fuse", FUSION, False, "Add a row per probe on the concatenated features of every --cache (caches of "
           "the same images); in a config, [[compare.fuse]] tables with caches = [...] name fusion groups.",
           ("compare",)),
    Option("audit", BOOL, True, "Audit each cache first (exact duplicates across splits, class balance; reads "
           "only the cache) and warn loudly about leaks.", ("compare", "sweep")),
    # train-backbone
    Option("backbone", STR, "inceptionv1", "The network to train from scratch (inceptionv1), or to fine-tune with "
           "--unfreeze-from (any registered backbone).", ("train_backbone",), argument=True),
    Option("weights", WEIGHTS, "default", "Fine-tuning: the parent weights (imagenet | PATH to .weights.h5 or .keras).",
           ("train_backbone",), default_text="the backbone's pretrained weights"),
    Option("unfreeze_from", STR, None, "Fine-tune from this layer up: its output ends the frozen trunk (computed "
           "once, cached in --out), the layers above it train, e.g. mixed5 (InceptionV3).", ("train_backbone",),
           default_text="train inceptionv1 from scratch", example="mixed5"),
    Option("top_layer", STR, None, "Fine-tuning: the layer the head sits on; layers above it keep the parent's "
           "weights.", ("train_backbone",), default_text="the backbone's output", example="mixed7"),
    Option("head_pooling", STR, "meanstd", "Fine-tuning: how the head pools the top layer's map.",
           ("train_backbone",), choices=("meanstd", "avg")),
    Option("augment_views", STRS, None, "Fine-tuning: views drawn into the augmented copies (e.g. jpeg:30-95, "
           "blur:0-2; repeat the flag for several).", ("train_backbone",), default_text="flips only",
           example=["jpeg:30-95"]),
    Option("augment_copies", INT, 0, "Fine-tuning: augmented copies of each training image (random flip and view), "
           "cached besides the clean one; each epoch draws one of them per image.", ("train_backbone",), minimum=0),
    Option("learning_rate", FLOAT, None, "Adam learning rate.", ("train_backbone",), above=0,
           default_text="1e-3 from scratch, 1e-4 fine-tuning", example=1e-4),
    Option("epochs", INT, 30, "Most epochs (early stopping on valid may end sooner).", ("train_backbone",),
           minimum=1),
    Option("image_size", INT, 224, "Square training size (224 native; 128 is 3x cheaper on a CPU).",
           ("train_backbone",), minimum=16, maximum=4096),
    Option("monitor", STR, "val_loss", "What picks the best epoch and drives early stopping.", ("train_backbone",),
           choices=MONITORS),
    Option("schedule", STR, "cosine", "Learning rate per epoch: cosine (down to --min-learning-rate at the last "
           "epoch) | plateau (lowered when --monitor stalls) | constant (as before schedules).", ("train_backbone",),
           choices=SCHEDULES),
    Option("warmup_epochs", INT, 0, "Epochs of linear warmup up to --learning-rate before the cosine decay.",
           ("train_backbone",), minimum=0),
    Option("min_learning_rate", FLOAT, 1e-5, "Lowest learning rate of the cosine and plateau schedules.",
           ("train_backbone",), minimum=0),
    Option("plateau_factor", FLOAT, 0.5, "The plateau schedule multiplies the learning rate by this.",
           ("train_backbone",), above=0, below=1),
    Option("plateau_patience", INT, 2, "Epochs without a better --monitor before the plateau schedule lowers the "
           "learning rate (keep it below --patience, which stops the run).", ("train_backbone",), minimum=1),
    Option("out", PATH, None, "Output folder.", ("train_backbone",),
           default_text="<runs-dir>/<backbone>-<data>-<size>/", example="runs/NAME"),
    # run
    Option("config", PATH, "configs/default.toml", "The job: see configs/*.toml.", ("run",)),
    Option("results", PATH, None, "Write the compare table as STEM.md, STEM.json, STEM-roc.png and the page STEM.html; "
           "{data_name} is the data folder's name.", ("run",), example="results/NAME"),
    Option("title", STR, None, "Title of the compare table.", ("run",), example="my study"),
    # predict
    Option("inputs", PATHS, None, "Image files and/or folders.", ("predict",), required=True, argument=True),
    Option("model", PATH, None, "A fitted-model folder, e.g. runs/<cache>/head.", ("predict",), required=True,
           example="runs/NAME/head"),
    # audit
    Option("target", PATH, None, "A cache (.h5) or a data folder.", ("audit",), required=True, argument=True,
           example="cache/NAME.h5"),
    Option("near_duplicates", BOOL, True, "Search a cache for near-duplicate embeddings across splits (quadratic "
           "in the number of rows, in bounded blocks).", ("audit",)),
    Option("near_duplicate_threshold", FLOAT, NEAR_DUPLICATE_THRESHOLD, "Cosine similarity of embeddings from which two images in "
           "different splits count as near-duplicates.", ("audit",), above=0, maximum=1),
    Option("center", BOOL, True, "Centre the embeddings before the cosine similarity (pooled ReLU features need "
           "it).", ("audit",)),
    Option("max_listed", INT, MAX_LISTED, "Most near-duplicate pairs listed (the most similar); all are counted.",
           ("audit",), minimum=0),
    Option("memory_budget_mb", INT, AUDIT_MEMORY_BUDGET_MB, "Memory the near-duplicate search may hold at once (MiB).", ("audit",),
           minimum=1),
    Option("shortcuts", BOOL, True, "Train shortcut probes on trivial file properties (size, JPEG quality, "
           "dimensions, mode, format, mean colour); they should sit near chance.", ("audit",)),
    Option("shortcut_auc", FLOAT, SHORTCUT_AUC, "ROC AUC above which a shortcut probe is called a shortcut.", ("audit",),
           above=0.5, maximum=1),
    Option("balance_tolerance", FLOAT, BALANCE_TOLERANCE, "Largest allowed difference between a split's class fraction and "
           "the whole set's.", ("audit",), above=0, maximum=1),
    Option("n_boot", INT, SHORTCUT_N_BOOT, "Bootstrap resamples for the intervals of the shortcut probes.", ("audit",),
           minimum=1),
    Option("data_root", PATH, None, "The data folder a cache was made from, when it has moved since (the shortcut "
           "probes read its image files).", ("audit",), default_text="the folder recorded in the cache",
           example="DIR"),
    Option("strict", BOOL, False, "Exit with code 1 when the audit finds a leak (an image in several splits), a "
           "shortcut or a label conflict (identical files labelled both ways); by default the audit only warns "
           "(exit 0).", ("audit",)),
    Option("format", STR, "table", "Output: a table on the terminal, or json or md.", ("audit",),
           choices=AUDIT_FORMATS),
    # sweep
    Option("config", PATH, "configs/sweep.toml", "The sweep: [[sweep.backbone]] entries (the extractions) and "
           "the probes, see configs/sweep.toml.", ("sweep",)),
    Option("probe", STRS, None, "Probe (repeat the flag for several).", ("sweep",),
           default_text="head, logreg, linsvm, knn", example=["logreg"], choices=PROBES),
    Option("top_k", INT, TOP_K, "The caches of the best k rows by valid ROC AUC are fused as one more candidate "
           "(0 or 1: no fusion candidate).", ("sweep",), minimum=0),
    Option("learning_curve", BOOL, False, "Refit the chosen configuration on 1/8, 1/4, 1/2 and all of the train "
           "split and plot test ROC AUC against training size.", ("sweep",)),
    Option("repeats", INT, REPEATS, "Seeded repeats of each learning-curve size.", ("sweep",), minimum=1),
    Option("name", STR, None, "Name of the results: results-dir/sweep-NAME.md and .json.", ("sweep",),
           default_text="the config file's name", example="faces"),
    Option("results_dir", PATH, "results", "Folder of the sweep's results.", ("sweep",)),
    Option("on_missing_weights", STR, "skip", "A [[sweep.backbone]] entry whose weights cannot be had (offline, a "
           "missing file): skip it with a warning and run the rest of the grid, or stop with an error.", ("sweep",),
           choices=("skip", "error")),
    # Shared by several commands
    Option("seed", INT, SEED, "Seed of random-init weights, of initialisation, dropout and shuffling (audit: of the "
           "bootstrap; sweep: of the learning curve's subsamples).",
           ("extract", "fit_head", "train_backbone", "audit", "sweep"), minimum=SEED_MIN, maximum=SEED_MAX),
    Option("cache_dir", PATH, CACHE_DIR, "Folder of caches: default cache names go there; compare reads every cache "
           "in it when no --cache is given.", ("extract", "compare")),
    Option("runs_dir", PATH, RUNS_DIR, "Root of default output folders (fitted probes, trained backbones).",
           ("fit_head", "fit", "compare", "train_backbone", "sweep")),
    Option("memory_budget_gb", FLOAT, MEMORY_BUDGET_GB, "Train and valid features larger than this (GiB) stream from disk.",
           ("fit_head", "fit", "compare", "sweep"), above=0),
    Option("batch_size", INT, BATCH_SIZE, "Images per forward pass (extract, predict) or per training step.",
           ("extract", "train_backbone", "predict"), minimum=1),
    Option("split", SPLIT, "0.7,0.15,0.15", "train,valid,test fractions for the DIR/<class>/ layout.",
           ("extract", "train_backbone", "audit")),
    Option("overwrite", BOOL, False, "Rebuild what is there: a cache that exists or differs (extract), a finished "
           "run in --out (train-backbone).", ("extract", "train_backbone")),
    Option("max_pixels", INT, MAX_PIXELS, "Largest image (width x height) decoded; larger files are skipped and "
           "listed (a guard against decompression bombs). 0: no limit of featurekit's own.",
           ("extract", "predict", "audit"), minimum=0),
    Option("workers", INT, None, "Threads that decode images (with --engine ray: in each Ray actor; audit: that "
           "read file properties).", ("extract", "predict", "audit"), minimum=1,
           default_text="one per CPU core", example=4),
    Option("progress", BOOL, True, "Show progress bars.", ("extract", "train_backbone", "run", "sweep")),
    Option("learning_rate", FLOAT, 1e-3, "Adam learning rate (the study: 1e-3).", ("fit_head",), above=0),
    Option("patience", INT, 5, "Epochs without improvement on valid before training stops.",
           ("fit_head", "train_backbone"), minimum=1),
    Option("format", STR, "table", "Output: a table on the terminal, or csv, json or md.",
           ("compare", "backbones", "info", "predict"), choices=FORMATS),
    Option("out", PATH, None, "Write the csv/json/md output to this file instead of the terminal.",
           ("compare", "backbones", "info", "predict", "audit"), example="results.md"),
    Option("config", PATH, None, "TOML file with defaults; flags override it.",
           ("extract", "fit_head", "fit", "compare", "train_backbone"), example="x.toml"),
)

# `report` takes compare's inputs (fitted probes are reused) and writes one HTML page instead of a table.
OPTIONS += tuple(replace(option, commands=("report",)) for option in OPTIONS if "compare" in option.commands
                 and option.name not in ("format", "out", "plot", "wide", "config")) + (
    Option("out", PATH, "results/report.html", "The HTML page to write: one self-contained file that opens offline.",
           ("report",)),
    Option("title", STR, "featurekit compare", "Title of the page.", ("report",)),
)

# The head's constructor parameters that the fit-head options set (option name -> parameter name).
HEAD_PARAMETERS = {"epochs": "epochs", "units": "units", "dropout": "dropout", "learning_rate": "learning_rate",
                   "batch_size": "batch_size", "patience": "patience", "seed": "random_state"}


# Each command's options by name (tests check that every option names known commands, none twice).
_BY_COMMAND = {command: {o.name: o for o in OPTIONS if command in o.commands} for command in COMMANDS}

# --------------------------------------------------------------------------------------------------
# The API


def options_for(command: str) -> dict[str, Option]:
    """The options of a command by name, in declaration order."""
    return dict(_BY_COMMAND[command])


def defaults(command: str) -> dict[str, Any]:
    """Every option of a command with its declared default (None: not set)."""
    return {name: option.default for name, option in options_for(command).items()}


def config_keys(command: str) -> list[str]:
    """The keys a config file may set for a command: its options, but `config` itself."""
    return [name for name in options_for(command) if name != "config"]


def validate(command: str, values: Mapping[str, Any], source: str | None = None,
             keys: list[str] | None = None) -> dict[str, Any]:
    """Check names, types, choices and bounds; return the values as the library takes them.

    None stays None (not set). Unknown names are refused: a misspelt option never goes unnoticed.

    Args:
        command: The command (TOML table name).
        values: Option values.
        source: Where the values come from, for messages, e.g. "x.toml [extract]"; None means the
            caller's own arguments (flags on the command line, parameters from Python).
        keys: The names allowed there; default: every option (from a file: those it may set).

    Raises:
        FeaturekitError: naming the option, the source and the expected type.
    """
    declared = options_for(command)
    allowed = keys if keys is not None else (config_keys(command) if source else list(declared))
    unknown = [name for name in values if name not in allowed]
    if unknown:
        hint, plural = did_you_mean(unknown[0], allowed), "s" if len(unknown) > 1 else ""
        if source:
            raise ConfigFileError(
                f"Unknown key{plural} {', '.join(f'`{k}`' for k in unknown)} in {source}.{hint}",
                received=", ".join(f"{k} = {toml_literal(values[k])}" for k in unknown),
                fix=f"Valid keys there: {', '.join(sorted(allowed))}.")
        raise FeaturekitError(
            f"Unknown option{plural} {', '.join(unknown)} for {command.replace('_', '-')}.{hint}",
            received=", ".join(given(k, values[k]) for k in unknown),
            fix=f"Valid options: {', '.join(sorted(allowed))}.")
    return {name: check_value(declared[name], value, source) if value is not None else None
            for name, value in values.items()}


def check_value(option: Option, value: Any, source: str | None = None, parameter: str | None = None) -> Any:
    """One value converted for the library, or a FeaturekitError naming the option, source and type.

    Args:
        option: The declaration.
        value: The value given.
        source: The config file (and table) it comes from; None: the caller's own argument.
        parameter: The caller's name of the option, where it differs (a function's parameter).
    """
    with contextlib.suppress(ValueError):  # the converters' way to say the value does not fit
        return option.convert(value)
    if source:
        raise ConfigFileError(
            f"`{option.name}` in {source} must be {option.expected()}.",
            received=f"{option.name} = {toml_literal(value)} ({_kind_of(value)})",
            fix=f"Write e.g. {option.name} = {toml_literal(option.sample())}.")
    name = parameter or option.name
    raise FeaturekitError(f"{name} must be {option.expected()}.", received=given(name, value),
                          fix=f"Use e.g. {given(name, option.sample())}.", parameters=(name,))


F = TypeVar("F", bound=Callable[..., Any])


def validate_params(command: str, **renamed: str) -> Callable[[F], F]:
    """Decorator: check a library function's arguments against the options `command` declares.

    Every parameter of the function named like an option of `command` (or mapped to one by `renamed`,
    parameter=option) is checked when a caller passes it, by type, choices and bounds, and reaches the
    function converted as the options are (None stays None: "not set"). Errors name the function's
    parameter, as in scikit-learn's `validate_params`:

        @validate_params("compare", n_boot="boot")
        def compare(caches, probes=None, n_boot=1000, ...): ...

    Raises:
        ValueError: at decoration, when `renamed` names a parameter or an option that is not there.
    """
    declared = options_for(command)

    def decorate(function: F) -> F:
        signature = inspect.signature(function)
        checked = {parameter: declared[renamed.get(parameter, parameter)] for parameter in signature.parameters
                   if renamed.get(parameter, parameter) in declared}
        stray = {p: o for p, o in renamed.items() if p not in signature.parameters or o not in declared}
        if stray:
            raise ValueError(f"validate_params({command!r}) of {function.__name__}: no parameter or option {stray}.")

        @functools.wraps(function)
        def validated(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            for parameter, value in bound.arguments.items():
                if parameter in checked and value is not None:
                    bound.arguments[parameter] = check_value(checked[parameter], value, parameter=parameter)
            return function(*bound.args, **bound.kwargs)

        return validated  # type: ignore[return-value]

    return decorate


def require(command: str, values: Mapping[str, Any]) -> None:
    """Refuse values that leave a required option unset."""
    for name, option in options_for(command).items():
        if option.required and values.get(name) in (None, "", []):
            raise FeaturekitError(
                f"Missing option {name}.", received="no value given",
                fix=f"Pass it, e.g. {given(name, option.sample())}"
                    + (f", or set {name} = {toml_literal(option.sample())} in a `config` file."
                       if "config" in options_for(command) else "."),
                parameters=(name,))


def complete(command: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Declared defaults under the given values, checked, with required options present.

    This is how library entry points (`extract_from_options`, ...) get their defaults: from the same
    declarations as the command line and the config files.
    """
    merged = {**defaults(command), **{k: v for k, v in validate(command, values).items() if v is not None}}
    require(command, merged)
    return merged


def head_params(**values: Any) -> dict[str, Any]:
    """The head's constructor parameters: the fit-head options given, declared defaults for the rest.

    fit-head, `fit --probe head`, compare and run all build the head through here, so its defaults
    are the same under every command.
    """
    merged = {**defaults("fit_head"), **{k: v for k, v in values.items() if v is not None}}
    return {parameter: merged[name] for name, parameter in HEAD_PARAMETERS.items()}


# --------------------------------------------------------------------------------------------------
# Messages


def toml_literal(value: Any) -> str:
    """A value as it would be written in a TOML file (for messages)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, os.PathLike)):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


_KIND_NAMES = ((bool, "a boolean"), (numbers.Integral, "an integer"), (numbers.Real, "a number"),
               ((str, os.PathLike), "a string"), ((list, tuple), "a list"), (dict, "a table"))


def _kind_of(value: Any) -> str:
    return next((name for kind, name in _KIND_NAMES if isinstance(value, kind)), type(value).__name__)


def did_you_mean(name: str, valid: list[str]) -> str:
    """" Did you mean `data`?" for a near miss, else ""."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""
