"""The command line: one thin function per command (parse, resolve config, call the library).

Heavy imports (TensorFlow) happen inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from featurekit.config import load_config_file, parse_split_fractions, resolve_config
from featurekit.errors import FeaturekitError

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
            error_console.print(f"[bold red]Error:[/] {error}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            error_console.print("Interrupted. Finished batches are kept; run the same command again to resume.")
            raise typer.Exit(130) from None

    return wrapper


EXTRACT_DEFAULTS = dict(
    data=None, backbone=None, weights="default", image_size=None, layer=None, pooling="flatten",
    preprocessing=None, batch_size=32, dtype="float32", cache=None, cache_dir="cache", overwrite=False,
    split="0.7,0.15,0.15", seed=0, on_missing_weights="error",
)


@app.command()
@user_errors
def extract(
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Registry name (see `backbones`)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="DIR/<class>/... or DIR/{train,valid,test}/<class>/..."),
    weights: Optional[str] = typer.Option(None, help="imagenet | none (seeded random features) | PATH to .weights.h5 or .keras. Default: the backbone's pretrained weights."),
    pooling: Optional[str] = typer.Option(None, help="flatten (what the study fed its head) | avg | max | meanstd."),
    image_size: Optional[int] = typer.Option(None, help="Square input size. Default: the backbone's native size."),
    layer: Optional[str] = typer.Option(None, help="Tap this layer instead of the last block, e.g. block2_pool."),
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
    """Run a frozen backbone over a data folder once and write an HDF5 embedding cache (resumable)."""
    from featurekit.extract import extract as run_extract

    options = resolve_config("extract", EXTRACT_DEFAULTS, load_config_file(config), dict(
        backbone=backbone, data=data, weights=weights, pooling=pooling, image_size=image_size, layer=layer,
        preprocessing=preprocessing, batch_size=batch_size, dtype=dtype, cache=cache, cache_dir=cache_dir,
        split=split, seed=seed, on_missing_weights=on_missing_weights, overwrite=overwrite or None))
    _require(options, "backbone", "--backbone vgg16")
    _require(options, "data", "--data DIR")
    result = run_extract(
        data=options["data"], backbone=options["backbone"], weights=options["weights"],
        image_size=options["image_size"], layer=options["layer"], pooling=options["pooling"],
        preprocessing=options["preprocessing"], batch_size=options["batch_size"], dtype=options["dtype"],
        cache=options["cache"], cache_dir=options["cache_dir"], overwrite=options["overwrite"],
        split_fractions=parse_split_fractions(options["split"]), seed=options["seed"],
        on_missing_weights=options["on_missing_weights"], config=_jsonable(options),
        log=console.print, progress=not no_progress)
    print_extract_summary(result)


def print_extract_summary(result) -> None:
    """The closing line of an extraction: counts, skipped files, throughput."""
    rate = f", {result.images_per_second:.1f} img/s" if result.n_computed else ""
    console.print(f"[bold]{result.status}[/]: {result.cache_path}  {result.n_images} images, "
                  f"{result.n_skipped} skipped, {result.n_computed} computed in {result.seconds:.1f} s{rate}; "
                  f"weights: {result.weights_label}", highlight=False)
    for path, reason in result.skipped:
        console.print(f"  skipped {path}: {reason}", highlight=False)
    for path, reason in result.unsupported:
        console.print(f"  ignored {path}: {reason}", highlight=False)


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


def _jsonable(options: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
