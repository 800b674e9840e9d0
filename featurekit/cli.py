"""The command line: one thin function per command (parse, resolve config, call the library).

Heavy imports (TensorFlow) happen inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement

from featurekit.config import (
    COMPARE_DEFAULTS,
    EXTRACT_DEFAULTS,
    FIT_DEFAULTS,
    HEAD_DEFAULTS,
    TRAIN_BACKBONE_DEFAULTS,
    load_config_file,
    resolve_config,
)
from featurekit.errors import FeaturekitError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines drown the progress bar

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="featurekit: extract frozen CNN embeddings once, then train and compare classifiers on the cache.")
console = Console()
error_console = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", help="TOML file with defaults; flags override it.")


def user_errors(command):
    """Turn FeaturekitError into a clear message and exit code 2; Ctrl-C into exit code 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FeaturekitError as error:
            error_console.print(f"[bold red]Error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            error_console.print("Interrupted. Finished batches are kept; run the same command again to resume.")
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@user_errors
def extract(
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Registry name (see `backbones`)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="DIR/<class>/... or DIR/{train,valid,test}/<class>/..."),
    weights: Optional[str] = typer.Option(None, help="imagenet | none (seeded random features) | PATH to .weights.h5 or .keras. Default: the backbone's pretrained weights."),
    pooling: Optional[str] = typer.Option(None, help="flatten (what the study fed its head) | avg | max | meanstd; several, comma-separated, come from one pass."),
    image_size: Optional[int] = typer.Option(None, help="Square input size. Default: the backbone's native size."),
    layer: Optional[str] = typer.Option(None, help="Tap this layer instead of the last block, e.g. block2_pool; several, comma-separated, come from one pass."),
    preprocessing: Optional[str] = typer.Option(None, help="Override the backbone's own preprocessing (caffe | tf | torch | rescale = the study's x/255)."),
    batch_size: Optional[int] = typer.Option(None, help="Images per forward pass."),
    dtype: Optional[str] = typer.Option(None, help="float32 | float16 (halves the disk)."),
    cache: Optional[Path] = typer.Option(None, help="Cache file. Default: cache/<data>-<backbone>[-<layer>]-<pooling>-<size>.h5"),
    cache_dir: Optional[Path] = typer.Option(None, help="Folder for default cache names."),
    split: Optional[str] = typer.Option(None, help="train,valid,test fractions for the DIR/<class>/ layout."),
    seed: Optional[int] = typer.Option(None, help="Seed of random-init weights."),
    on_missing_weights: Optional[str] = typer.Option(None, help="error | random: continue with labelled random weights when pretrained ones cannot be had."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild a cache that exists or differs."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Run a frozen backbone over a data folder once and write HDF5 embedding caches (resumable).

    Every --layer x --pooling combination becomes its own cache, all from one forward pass.
    """
    from featurekit.extract import extract_from_options

    options = resolve_config("extract", EXTRACT_DEFAULTS, load_config_file(config), dict(
        backbone=backbone, data=data, weights=weights, pooling=pooling, image_size=image_size, layer=layer,
        preprocessing=preprocessing, batch_size=batch_size, dtype=dtype, cache=cache, cache_dir=cache_dir,
        split=split, seed=seed, on_missing_weights=on_missing_weights, overwrite=overwrite or None))
    for result in extract_from_options(options, log=console.print, progress=not no_progress):
        print_extract_summary(result)


def print_extract_summary(result) -> None:
    """The closing line of an extraction: counts, skipped files, throughput."""
    rate = f", {result.images_per_second:.1f} img/s" if result.n_computed else ""
    console.print(f"[bold]{result.status}[/]: {result.cache_path}  {result.n_images} images, "
                  f"{result.n_skipped} skipped, {result.n_computed} computed in {result.seconds:.1f} s{rate}; "
                  f"weights: {result.weights_label}", highlight=False)
    for path, reason in result.skipped:
        console.print(f"  skipped {escape(path)}: {escape(reason)}", highlight=False)
    for path, reason in result.unsupported:
        console.print(f"  ignored {escape(path)}: {escape(reason)}", highlight=False)


@app.command()
@user_errors
def info(cache: Path = typer.Argument(..., help="A cache file written by `extract`.")) -> None:
    """Describe a cache: what made it, from which images, split and class counts."""
    from featurekit.report import cache_summary

    console.print(cache_summary(cache))


@app.command()
@user_errors
def backbones() -> None:
    """List the registered backbones: input size, preprocessing, feature sizes, parameters, weights."""
    from rich.table import Table

    from featurekit.backbones import list_backbones
    from featurekit.embedder import backbone_summary

    table = Table(title="Backbones")
    for column in ("name", "native size", "preprocessing", "last block", "features (flatten / avg / max / meanstd)",
                   "parameters", "weights"):
        table.add_column(column)
    for name in list_backbones():
        summary = backbone_summary(name)
        sizes = " / ".join(str(summary["feature_dim"][p]) for p in ("flatten", "avg", "max", "meanstd"))
        table.add_row(name, str(summary["input_size"]), summary["preprocessing"], summary["output_layer"], sizes,
                      f"{summary['params']:,}", " | ".join([*summary["pretrained"], "none", "PATH"]))
    console.print(table)


def _require(options: dict, key: str, example: str) -> None:
    if options.get(key) in (None, ""):
        flag = "--" + key.replace("_", "-")
        raise FeaturekitError(f"Missing option {flag}.", received="no value on the command line or in --config",
                              fix=f"Pass it, e.g. {example}, or set `{key}` in a --config file.")





@app.command("fit-head")
@user_errors
def fit_head(
    cache: Optional[Path] = typer.Option(None, help="Cache file to train on."),
    epochs: Optional[int] = typer.Option(None, help="Maximum epochs (early stopping on valid keeps the best)."),
    units: Optional[int] = typer.Option(None, help="Hidden units (the study: 512)."),
    dropout: Optional[float] = typer.Option(None, help="Dropout rate (the study: 0.5)."),
    learning_rate: Optional[float] = typer.Option(None, help="Adam learning rate (the study: 1e-3)."),
    batch_size: Optional[int] = typer.Option(None, help="Rows per step."),
    patience: Optional[int] = typer.Option(None, help="Epochs without valid improvement before stopping."),
    seed: Optional[int] = typer.Option(None, help="Seed of weights, dropout and shuffling."),
    out: Optional[Path] = typer.Option(None, help="Output folder. Default: runs/<cache-name>/head"),
    runs_dir: Optional[Path] = typer.Option(None, help="Root of default output folders."),
    memory_budget_gb: Optional[float] = typer.Option(None, help="Features larger than this stream from disk."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Train the study's Dense-512 / Dropout-0.5 / sigmoid head on a cache (train split; early stop on valid)."""
    options = resolve_config("fit_head", HEAD_DEFAULTS, load_config_file(config), dict(
        cache=cache, epochs=epochs, units=units, dropout=dropout, learning_rate=learning_rate, batch_size=batch_size,
        patience=patience, seed=seed, out=out, runs_dir=runs_dir, memory_budget_gb=memory_budget_gb))
    _require(options, "cache", "--cache cache/NAME.h5")
    params = {k: options[k] for k in ("epochs", "units", "dropout", "learning_rate", "batch_size", "patience")}
    params["random_state"] = options["seed"]
    _fit_and_report(options, "head", params)




@app.command()
@user_errors
def fit(
    cache: Optional[Path] = typer.Option(None, help="Cache file to train on."),
    probe: Optional[str] = typer.Option(None, help="head | logreg | linsvm | knn | rbfsvm"),
    out: Optional[Path] = typer.Option(None, help="Output folder. Default: runs/<cache-name>/<probe>"),
    runs_dir: Optional[Path] = typer.Option(None, help="Root of default output folders."),
    memory_budget_gb: Optional[float] = typer.Option(None, help="Features larger than this stream from disk."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Fit one probe (a scikit-learn baseline or the head with its defaults) on a cache."""
    options = resolve_config("fit", FIT_DEFAULTS, load_config_file(config), dict(
        cache=cache, probe=probe, out=out, runs_dir=runs_dir, memory_budget_gb=memory_budget_gb))
    _require(options, "cache", "--cache cache/NAME.h5")
    _fit_and_report(options, options["probe"], {})


def _fit_and_report(options: dict, probe: str, params: dict) -> None:
    from featurekit.fitting import fit_probe

    fitted = fit_probe(options["cache"], probe, params, out=options["out"], runs_dir=options["runs_dir"],
                       memory_budget_gb=options["memory_budget_gb"], log=console.print)
    meta = fitted.meta
    extra = ""
    if hasattr(fitted.estimator, "best_epoch_"):
        extra = f", best epoch {fitted.estimator.best_epoch_ + 1} of {len(fitted.estimator.history_['loss'])}"
    console.print(f"[bold]fitted[/] {probe} on {Path(options['cache']).name}: {meta['n_train']} train rows in "
                  f"{meta['fit_seconds']:.1f} s{extra}; threshold {meta['threshold']:.4g} chosen on valid "
                  f"({meta['n_valid']} rows). Saved to {fitted.directory}", highlight=False)




@app.command()
@user_errors
def compare(
    cache: Optional[list[Path]] = typer.Option(None, help="Cache file (repeat). Default: every cache in --cache-dir."),
    cache_dir: Optional[Path] = typer.Option(None, help="Folder searched when no --cache is given."),
    probe: Optional[list[str]] = typer.Option(None, help="Probe (repeat). Default: head, logreg, linsvm, knn."),
    include_rbf: bool = typer.Option(False, "--include-rbf", help="Add the RBF-kernel SVM (slow on large splits)."),
    refit: bool = typer.Option(False, "--refit", help="Refit even where a matching fitted probe exists."),
    boot: Optional[int] = typer.Option(None, help="Bootstrap resamples for the 95% intervals."),
    head_epochs: Optional[int] = typer.Option(None, help="Maximum epochs of the head."),
    format: Optional[str] = typer.Option(None, "--format", help="table | csv | json | md"),
    out: Optional[Path] = typer.Option(None, help="Write the csv/json/md output here."),
    plot: Optional[Path] = typer.Option(None, help="Write ROC curves of every row to this PNG."),
    runs_dir: Optional[Path] = typer.Option(None, help="Where fitted probes are kept."),
    memory_budget_gb: Optional[float] = typer.Option(None, help="Features larger than this stream from disk."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """One table of every cache x classifier on the test split, with forensic metrics and 95% intervals."""
    from featurekit.compare import compare_from_options

    options = resolve_config("compare", COMPARE_DEFAULTS, load_config_file(config), dict(
        cache=cache or None, cache_dir=cache_dir, probe=probe or None, refit=refit or None, boot=boot, format=format,
        out=out, plot=plot, runs_dir=runs_dir, memory_budget_gb=memory_budget_gb, include_rbf=include_rbf or None,
        head_epochs=head_epochs))
    _check_output_options(options)
    render_results(compare_from_options(options, log=console.print), options)


@app.command("train-backbone")
@user_errors
def train_backbone(
    backbone: Optional[str] = typer.Argument(None, help="The network to train from scratch (inceptionv1)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="DIR/<class>/... or DIR/{train,valid,test}/<class>/..."),
    epochs: Optional[int] = typer.Option(None, help="Most epochs (early stopping on valid may end sooner)."),
    image_size: Optional[int] = typer.Option(None, help="Square training size (224 native; 128 is 3x cheaper on a CPU)."),
    batch_size: Optional[int] = typer.Option(None, help="Images per step."),
    learning_rate: Optional[float] = typer.Option(None, help="Adam learning rate."),
    patience: Optional[int] = typer.Option(None, help="Epochs without valid improvement before stopping."),
    monitor: Optional[str] = typer.Option(None, help="val_loss | val_accuracy: picks the best epoch."),
    seed: Optional[int] = typer.Option(None, help="Seed of initialisation, shuffling and augmentation."),
    out: Optional[Path] = typer.Option(None, help="Output folder. Default: runs/<backbone>-<data>-<size>/"),
    split: Optional[str] = typer.Option(None, help="train,valid,test fractions for the DIR/<class>/ layout."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in --out."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar within epochs."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Train InceptionV1 end to end (batch norm, augmentation, early stopping; resumable), save the backbone."""
    from featurekit.train_backbone import train_from_options

    options = resolve_config("train_backbone", TRAIN_BACKBONE_DEFAULTS, load_config_file(config), dict(
        backbone=backbone, data=data, epochs=epochs, image_size=image_size, batch_size=batch_size,
        learning_rate=learning_rate, patience=patience, monitor=monitor, seed=seed, out=out, split=split,
        overwrite=overwrite or None))
    result = train_from_options(options, log=console.print, progress=not no_progress)
    console.print(f"[bold]trained[/] {options['backbone']}: best valid accuracy {result.best_valid_accuracy:.3f} at "
                  f"epoch {result.best_epoch} of {result.epochs_run}, {result.seconds:.0f} s, "
                  f"{result.train_images_per_second:.1f} train img/s. Backbone saved to {result.model_path}; "
                  f"extract with `python cli.py extract --backbone {options['backbone']} --data {options['data']} "
                  f"--weights {result.model_path} --image-size {options['image_size']}`.", highlight=False)


def render_results(rows: list[dict], options: dict) -> None:
    """Show the compare table and write the files asked for (`format`/`out`, `plot`, or a `results` stem)."""
    from featurekit.report import plot_roc, results_table, write_rows

    if options["format"] == "table":
        table = results_table(rows, title=options.get("title") or "featurekit compare (test split)")
        # Never squeeze numbers into ellipses: a narrow terminal or a log file gets the table's full width.
        natural = Measurement.get(console, console.options.update_width(1000), table).maximum
        terminal_width = console.width
        console.width = max(terminal_width, natural)  # print() alone cannot exceed the console's width
        try:
            console.print(table)
        finally:
            console.width = terminal_width
    else:
        text = write_rows(rows, options["format"], options["out"])
        if not options["out"]:
            console.print(text, highlight=False, markup=False, end="")
    written = []
    if options["out"]:
        written.append(options["out"])
    if options["plot"]:
        written.append(plot_roc(rows, options["plot"]))
    if options.get("results"):
        stem = Path(options["results"])
        for fmt in ("md", "json"):
            write_rows(rows, fmt, stem.with_suffix(f".{fmt}"))
            written.append(stem.with_suffix(f".{fmt}"))
        written.append(plot_roc(rows, stem.with_name(stem.name + "-roc.png")))
    for path in written:
        console.print(f"wrote {path}", highlight=False)


def _check_output_options(options: dict) -> None:
    from featurekit.report import FORMATS

    if options["format"] not in FORMATS:
        raise FeaturekitError(f"Unknown output format {options['format']!r}.", received=f"--format {options['format']}",
                              fix=f"Use one of: {', '.join(FORMATS)}.")
    if options["out"] and options["format"] == "table":
        raise FeaturekitError("--out needs a file format.", received=f"--out {options['out']} --format table",
                              fix="Add --format md, --format csv or --format json.")


@app.command()
@user_errors
def run(
    config: Path = typer.Option(Path("configs/default.toml"), "--config", help="The job: see configs/*.toml."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Data folder overriding the config's."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
) -> None:
    """The whole job of a config: (train backbones), extract each cache, fit every probe, one compare table."""
    from featurekit.workflow import run_job

    run_job(load_config_file(config), data=data, log=console.print, progress=not no_progress,
            render=render_results)


@app.command()
@user_errors
def predict(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders."),
    model: Path = typer.Option(..., "--model", help="A fitted-model folder, e.g. runs/<cache>/head."),
    format: str = typer.Option("table", "--format", help="table | json | csv"),
    batch_size: int = typer.Option(32, help="Images per forward pass."),
) -> None:
    """P(fake) and the label at the model's threshold for image files or folders."""
    import csv
    import io
    import json

    from rich.table import Table

    from featurekit.predict import predict as predict_images

    if format not in ("table", "json", "csv"):
        raise FeaturekitError(f"Unknown output format {format!r}.", received=f"--format {format}",
                              fix="Use table, json or csv.")
    rows = predict_images(model, inputs, batch_size=batch_size)
    if format == "json":
        console.print(json.dumps(rows, indent=2), highlight=False, markup=False)
    elif format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["path", "p_fake", "label", "threshold", "error"])
        writer.writeheader()
        writer.writerows(rows)
        console.print(buffer.getvalue(), highlight=False, markup=False, end="")
    else:
        table = Table(title=f"predictions of {model}")
        for column in ("path", "P(fake)", "label"):
            table.add_column(column)
        for row in rows:
            p = "-" if row["p_fake"] is None else f"{row['p_fake']:.4f}"
            table.add_row(row["path"], p, row["label"] or f"[red]{row.get('error')}[/]")
        console.print(table)
