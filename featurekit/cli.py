"""The command line: one thin function per command (parse, resolve config, call the library).

Each command's flags are generated from its declarations in `featurekit.options` (Typer reads the
function's `__signature__`), so `--help`, config files and the library share one set of defaults.
A flag the user did not type (click records each value's source) leaves the value to the config
file, else to the declared default. Heavy imports (TensorFlow) happen inside the commands, so
`--help` is instant; backend start-up logs are silenced before them unless `--verbose`.

Library errors name parameters; `featurekit.flags` spells them as this command's flags when they are
printed. Output to a pipe or a file is never cut to a terminal's width: tables and help print whole.
"""

from __future__ import annotations

import inspect
import shlex
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer import rich_utils
from typer.core import TyperCommand, TyperGroup

from featurekit.config import load_config_file, resolve_config, set_in_file
from featurekit.errors import FeaturekitError
from featurekit.flags import CommandSpelling
from featurekit.options import COMMANDS, Option, options_for, require

PIPED_WIDTH = 100_000  # a pipe or a file gets every line whole: rich tables keep their natural width
PIPED_HELP_WIDTH = 160  # help panels fill the width they get: wide enough that no option name is cut


# The spelling of the command that runs: the library's progress messages name parameters too.
_spelling: ContextVar[CommandSpelling | None] = ContextVar("featurekit_cli_spelling", default=None)


class _FlagConsole(Console):
    """A console that prints the library's messages with the running command's flags (`--max-pixels`)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        spelling = _spelling.get()
        if spelling is not None:
            objects = tuple(spelling.text(o) if isinstance(o, str) else o for o in objects)
        super().print(*objects, **kwargs)


def _console(stderr: bool = False) -> Console:
    """A console of the terminal's width, or of unlimited width on a pipe or a file."""
    console = _FlagConsole(stderr=stderr)
    return console if console.is_terminal else _FlagConsole(stderr=stderr, width=PIPED_WIDTH)


class _SwitchHelp:
    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        option.metavar = ""  # a switch takes no value: help shows no `<bool>` after it
        return option


class _Group(_SwitchHelp, TyperGroup):
    pass


class _Command(_SwitchHelp, TyperCommand):
    def collect_usage_pieces(self, ctx) -> list[str]:
        """`[OPTIONS] INPUTS...`: arguments as click writes them (Typer's own usage reads `{INPUTS}...`)."""
        pieces = super().collect_usage_pieces(ctx)
        return [piece[1:].replace("}", "", 1) if piece.startswith("{") else piece for piece in pieces]


app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich", cls=_Group)  # help: main's
console = _console()
error_console = _console(stderr=True)
# Help on a pipe is printed whole (Typer reads its width from TERMINAL_WIDTH, else the terminal's).
if not console.is_terminal and rich_utils.MAX_WIDTH is None:
    rich_utils.MAX_WIDTH = PIPED_HELP_WIDTH


_VERBOSE_HELP = "Show the backends' own start-up and log lines (TensorFlow, absl, CUDA)."


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", metavar="", help=_VERBOSE_HELP)) -> None:
    """featurekit: extract frozen CNN embeddings once, then train and compare classifiers on the cache."""
    if not verbose:
        from featurekit.backend_logs import quiet_backends

        quiet_backends()


def typer_parameter(option: Option) -> inspect.Parameter:
    """The Typer flag (or argument) of a declared option, with the declared default and help."""
    shown = {"help": escape(option.help),
             "show_default": True if option.default is not None else escape(option.default_text or "") or False}
    if option.argument:
        info = typer.Argument(... if option.required else option.default, metavar=option.name.upper(), **shown)
    else:
        switch = option.kind.cli_type is bool  # a switch takes no value
        names = [f"{option.flag}/--no-{option.flag[2:]}" if switch else option.flag, option.short]
        info = typer.Option(option.default, *filter(None, names), metavar="" if switch else "|".join(option.choices)
                            or None, **shown)
    optional = option.default is None and not (option.argument and option.required)
    annotation = Optional[option.kind.cli_type] if optional else option.kind.cli_type
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def command(body: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Register `body(options)` as the Typer command of its name, its flags generated from featurekit.options.

    Options resolve as declared defaults < config file < the flags the user typed (click records where each
    value came from, so a flag given with its default value still overrides the config file), checked, with
    required options present; the spelling of the command's messages learns which options the user typed and
    which the config file set. A command with a `format` option has its output checked before any work. A
    FeaturekitError exits 2 with its message, its parameters spelled as this command's flags; Ctrl-C exits 130
    with what the command leaves behind.
    """
    name = body.__name__

    def cli_command(typer_context: typer.Context, **flags: Any) -> None:
        spelling = CommandSpelling(name)
        token = _spelling.set(spelling)
        try:
            spelling.typed = {flag: value for flag, value in flags.items() if getattr(
                typer_context.get_parameter_source(flag), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}
            spelling.config = flags.get("config")  # None: the command reads no file
            file_config = load_config_file(spelling.config)
            spelling.from_file = set_in_file(name, file_config)
            options = resolve_config(name, file_config, spelling.typed)
            require(name, options)
            if "format" in options:  # the output is checked before any work is done
                from featurekit.report import check_output

                check_output(options["format"], options["out"])
            body(options)
        except FeaturekitError as error:
            error_console.print(Text.assemble(("Error: ", "bold red"), spelling.error(error)), soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            error_console.print(Text(COMMANDS[name]), soft_wrap=True)
            raise typer.Exit(130) from None
        finally:
            _spelling.reset(token)

    context = inspect.Parameter("typer_context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    cli_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [context] + [typer_parameter(option) for option in options_for(name).values()])
    app.command(name.replace("_", "-"), cls=_Command, help=body.__doc__)(cli_command)
    return body


def show(rendered: Any, options: dict[str, Any]) -> None:
    """Print a table whole, print csv/json/md text as it is, or write it to `out`."""
    from featurekit.report import print_text, print_whole, write_text

    if not isinstance(rendered, str):
        print_whole(console, rendered)
    elif options.get("out"):
        console.print(f"wrote {escape(str(write_text(rendered, options['out'])))}", highlight=False)
    else:
        print_text(console, rendered)


@command
def extract(options: dict[str, Any]) -> None:
    """Run a frozen backbone over a data folder once and write HDF5 embedding caches (resumable).

    Every --layer x --pooling combination becomes its own cache, all from one forward pass.
    """
    from featurekit.extraction.extract import extract_from_options
    from featurekit.extraction.progress import rich_progress_bar

    command = shlex.join(["python", "cli.py", *sys.argv[1:]])
    for result in extract_from_options(options, log=console.print, command=command,
                                       progress=rich_progress_bar if options["progress"] else None):
        # The closing lines of each cache: counts, throughput, skipped files.
        rate = f", {result.images_per_second:.1f} img/s" if result.n_computed else ""
        console.print(f"[bold]{result.status}[/]: {escape(str(result.cache_path))}  {result.n_images} images, "
                      f"{result.n_skipped} skipped, {result.n_computed} computed in {result.seconds:.1f} s{rate}; "
                      f"weights: {escape(str(result.weights_label))}", highlight=False)
        for what, files in (("skipped", result.skipped), ("ignored", result.unsupported)):
            for path, reason in files:
                console.print(f"  {what} {escape(path)}: {escape(reason)}", highlight=False)


@command
def info(options: dict[str, Any]) -> None:
    """Describe a cache: what made it, from which images, split and class counts, skipped files."""
    from featurekit.cache.describe import describe_cache
    from featurekit.report import render_cache

    show(render_cache(describe_cache(options["cache"]), options["format"]), options)


@command
def backbones(options: dict[str, Any]) -> None:
    """List the registered backbones: input size, preprocessing, feature sizes, parameters, weights."""
    from featurekit.backbones import get_spec, list_backbones
    from featurekit.backbones.weights import default_weights_label, known_weights_rows
    from featurekit.report import render_backbones

    files = known_weights_rows() if options["files"] else None
    names = list_backbones()
    labels = {name: default_weights_label(name) for name in names}
    show(render_backbones([get_spec(name).listing() for name in names], options["format"], files, labels), options)


@command
def fit_head(options: dict[str, Any]) -> None:
    """Train the study's Dense-512 / Dropout-0.5 / sigmoid head on a cache (train split; early stop on valid)."""
    from featurekit.jobs.workflow import fit_head_from_options

    print_fitted(fit_head_from_options(options, log=console.print))


@command
def fit(options: dict[str, Any]) -> None:
    """Fit one probe (a scikit-learn baseline, or the head with its declared defaults) on a cache."""
    from featurekit.jobs.workflow import fit_from_options

    print_fitted(fit_from_options(options, log=console.print))


def print_fitted(fitted) -> None:
    """One line: what was fitted on which cache, how long, the threshold chosen on valid, where it is saved."""
    meta, head = fitted.meta, fitted.estimator  # a probe trained in epochs (EpochProbe) sets best_epoch_ and history_
    extra = f", best epoch {head.best_epoch_ + 1} of {len(head.history_['loss'])}" if hasattr(head, "history_") else ""
    console.print(f"[bold]fitted[/] {escape(str(meta['probe']))} on {escape(Path(meta['cache']).name)}: "
                  f"{meta['n_train']} train rows in {meta['fit_seconds']:.1f} s{extra}; threshold "
                  f"{meta['threshold']:.4g} chosen on valid ({meta['n_valid']} rows). Saved to "
                  f"{escape(str(fitted.directory))}", highlight=False)


@command
def compare(options: dict[str, Any]) -> None:
    """One table of every cache x classifier on the test split, with forensic metrics and 95% intervals.

    A terminal narrower than the full table gets the compact columns; --wide shows every metric.
    """
    from featurekit.evaluation.compare import compare_from_options

    on_stdout = options["format"] != "table" and not options["out"]  # csv/json/md: progress to stderr, a pipe gets data
    render_results(compare_from_options(options, log=error_console.print if on_stdout else console.print), options)


def render_results(rows: list[dict], options: dict[str, Any]) -> None:
    """Show the compare table and write the files asked for (`format`/`out`, `plot`, or a `results` stem)."""
    from featurekit.report import plot_roc, render_rows, results_table_for, write_html_report, write_text

    title = options.get("title") or "featurekit compare (test split)"
    show(results_table_for(console, rows, title, wide=bool(options.get("wide"))) if options["format"] == "table"
         else render_rows(rows, options["format"]), options)
    written = [plot_roc(rows, options["plot"])] if options["plot"] else []
    if options.get("results"):
        stem = Path(options["results"])
        written += [write_text(render_rows(rows, fmt), stem.with_suffix(f".{fmt}")) for fmt in ("md", "json")]
        written += [plot_roc(rows, stem.with_name(stem.name + "-roc.png")),
                    write_html_report(rows, stem.with_suffix(".html"), options.get("title") or "featurekit compare")]
    for path in written:
        console.print(f"wrote {escape(str(path))}", highlight=False)


@command
def train_backbone(options: dict[str, Any]) -> None:
    """Train InceptionV1 from scratch, or fine-tune a backbone above --unfreeze-from (resumable); save the backbone."""
    from featurekit.training.runner import train_from_options

    result = train_from_options(options, log=console.print, progress=options["progress"])
    extract = shlex.join(["python", "cli.py", "extract", "--backbone", options["backbone"], "--data",
                          str(options["data"]), "--weights", str(result.model_path),
                          "--image-size", str(options["image_size"])])
    console.print(f"[bold]trained[/] {escape(options['backbone'])}: best valid accuracy "
                  f"{result.best_valid_accuracy:.3f} at epoch {result.best_epoch} of {result.epochs_run}, "
                  f"{result.seconds:.0f} s, {result.train_images_per_second:.1f} train img/s. Backbone saved to "
                  f"{escape(str(result.model_path))}; extract with `{escape(extract)}`.", highlight=False)


@command
def run(options: dict[str, Any]) -> None:
    """The whole job of a config: (train backbones), extract each cache, fit every probe, one compare table."""
    from featurekit.jobs.workflow import run_job

    run_job(load_config_file(options["config"]), options, log=console.print, render=render_results)


@command
def predict(options: dict[str, Any]) -> None:
    """P(fake) and the label at the model's threshold for image files or folders."""
    from featurekit.evaluation.fitting import read_fitted_meta
    from featurekit.predict import predict as predict_images
    from featurekit.report import render_predictions

    rows = predict_images(options["model"], options["inputs"], batch_size=options["batch_size"],
                          max_pixels=options["max_pixels"], workers=options["workers"])
    class_names = read_fitted_meta(options["model"]).get("class_names") or ["real", "fake"]  # predict has read it
    show(render_predictions(rows, options["format"], title=f"predictions of {options['model']}",
                            positive_class=str(class_names[-1])), options)


@command
def audit(options: dict[str, Any]) -> None:
    """Look for leaks before trusting a score: duplicates across splits, class balance, shortcut probes.

    TARGET is a cache (.h5; near-duplicates too, from its embeddings) or a data folder.
    Warnings come first. Exit code 0; with --strict, 1 when a leak or a shortcut is found.
    """
    from featurekit.audit import audit_from_options
    from featurekit.report import render_audit

    report = audit_from_options(options)
    if options["format"] != "table" and not options["out"]:
        for warning in report.warnings:  # stdout carries the json/md; a reader of the terminal sees these first
            error_console.print(Text(f"WARNING: {warning}", style="bold red"), soft_wrap=True)
    show(render_audit(report.to_dict(), options["format"]), options)
    if options["out"]:
        for warning in report.warnings:
            console.print(Text(f"WARNING: {warning}", style="bold red"), soft_wrap=True)
    if options["strict"] and (report.has_leaks or report.has_shortcuts or report.has_label_conflicts):
        error_console.print(Text("audit --strict: leaks, shortcuts or label conflicts found; exit code 1."),
                            soft_wrap=True)
        raise typer.Exit(1)


@command
def sweep(options: dict[str, Any]) -> None:
    """Choose backbone x layer x pooling x probe on VALID ROC AUC over a config's grid; report its test figures once.

    One forward pass per \\[\\[sweep.backbone]] entry; the caches of the top-k rows, fused, are one more candidate.
    --learning-curve refits the choice on 1/8, 1/4, 1/2 and all of train and plots test ROC AUC by training size.
    """
    from featurekit.report import print_whole, sweep_table, write_sweep_results
    from featurekit.jobs.sweep import sweep as run_sweep

    result = run_sweep(load_config_file(options["config"]), options, log=console.print)
    print_whole(console, sweep_table(result))
    for path in write_sweep_results(result, options["results_dir"]):
        console.print(f"wrote {escape(str(path))}", highlight=False)


@command
def report(options: dict[str, Any]) -> None:
    """Write one self-contained HTML page of every cache x probe (compare's inputs; fitted probes are reused).

    The page opens offline: the best row with its intervals, a forest plot of every row, ROC and
    precision-recall curves per feature set, the most confident mistakes, and a sortable table.
    """
    from featurekit.evaluation.compare import compare_from_options
    from featurekit.report import write_html_report

    compare_options = {name: value for name, value in options.items() if name in options_for("compare")}
    rows = compare_from_options(compare_options, log=console.print)
    console.print(f"wrote {escape(str(write_html_report(rows, options['out'], options['title'])))}", highlight=False)
