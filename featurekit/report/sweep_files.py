"""Every file a sweep writes: results-dir/sweep-NAME.md, .json and .html, and the learning curve's PNG."""

from __future__ import annotations

from pathlib import Path

from featurekit.report.formats import json_text
from featurekit.report.output import write_text
from featurekit.report.sweep import chosen_line, plot_learning_curve, sweep_markdown
from featurekit.report.sweep_page import write_sweep_page
from featurekit.rows import SweepResult


def write_sweep_results(result: SweepResult, results_dir: str | Path) -> list[Path]:
    """results-dir/sweep-NAME.md, .json and .html, and sweep-NAME-learning-curve.png when there is a curve."""
    stem = Path(results_dir) / f"sweep-{result.name}"
    plots = [plot_learning_curve(result.learning_curve, stem.with_name(stem.name + "-learning-curve.png"),
                                 f"sweep {result.name}: {chosen_line(result)}")] if result.learning_curve else []
    return [*plots, write_text(sweep_markdown(result, plots[0].name if plots else None), stem.with_suffix(".md")),
            write_text(json_text(result.to_dict()), stem.with_suffix(".json")),
            write_sweep_page(result, stem.with_suffix(".html"))]

