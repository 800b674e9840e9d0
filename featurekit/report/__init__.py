"""Presentation, the top layer: rows and results -> terminal tables, CSV, JSON, Markdown, PNG and HTML.

Library functions return rows (plain dicts) or result objects (`featurekit.rows`); the modules here turn
them into every output of every command. They compute nothing and import nothing above `featurekit.rows`,
`featurekit.errors` and `featurekit.fsutil`; nothing below imports from here.

- `document` + `formats`: a command's output as data (tables of columns, notes), and the registry of
  output formats (format name -> renderer);  `output`: files and the terminal.
- One module per command's output: `backbones`, `cache_info` (`info`), `predictions`, `audit`,
  `results` (`compare`, `run`), `sweep`.
- `plots` (matplotlib's object API only), `page` + `sweep_page` (the self-contained HTML report),
  `gallery` (thumbnails of the most confident mistakes).
"""

from featurekit.report.audit import render_audit
from featurekit.report.backbones import render_backbones
from featurekit.report.cache_info import render_cache
from featurekit.report.formats import FORMATS, check_output, render
from featurekit.report.output import print_text, print_whole, write_text
from featurekit.report.page import compare_page, write_html_report
from featurekit.report.plots import plot_roc
from featurekit.report.predictions import render_predictions
from featurekit.report.results import render_rows, results_table, results_table_for
from featurekit.report.sweep import sweep_table
from featurekit.report.sweep_files import write_sweep_results

__all__ = [
    "FORMATS", "check_output", "compare_page", "plot_roc", "print_text", "print_whole", "render", "render_audit",
    "render_backbones", "render_cache", "render_predictions", "render_rows", "results_table",
    "results_table_for", "sweep_table", "write_html_report", "write_sweep_results", "write_text",
]
