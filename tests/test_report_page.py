"""The HTML report page and the plots behind it, without a browser (tests/test_report_browser.py renders it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_cache, separable_cache, write_image

FEATURE_SETS = (("block1_pool", 0.9), ("block2_pool", 1.6), ("block3_pool", 0.4))
PROBES = ("logreg", "linsvm", "knn")


def images_for(root: Path, labels: np.ndarray) -> list[str]:
    """Image files under root named as a cache names them (relative paths)."""
    paths = [f"{'fake' if y else 'real'}/{i:05d}.png" for i, y in enumerate(labels)]
    for i, path in enumerate(paths):
        write_image(root / path, seed=i, size=48)
    return paths


def report_rows(root: Path, n: int = 60, seed: int = 0) -> list[dict]:
    """Compare-like rows with scores, labels and image paths: 3 feature sets x 3 probes, one random-feature
    set, one collapsed row and a jpeg:50 view of every probe of the first set."""
    from featurekit.metrics import evaluate

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    paths = images_for(root, labels)
    rows = []
    for number, (layer, separation) in enumerate(FEATURE_SETS):
        for offset, probe in enumerate(PROBES):
            scores = 1 / (1 + np.exp(-(separation * (2 * labels - 1) + rng.normal(size=n) + 0.1 * offset)))
            if layer == "block3_pool" and probe == "knn":
                scores = np.full(n, 0.9)  # a collapsed probe: one class for every image
            metrics = evaluate(labels, scores, 0.5, n_boot=50)
            rows.append({
                "cache": f"faces-vgg16-{layer}-avg-64.h5", "backbone": "vgg16", "weights_label": "imagenet (Keras)",
                "random_features": layer == "block3_pool", "layer": layer, "pooling": "avg", "image_size": 64,
                "preprocessing": "caffe", "feature_dim": 64 * (number + 1), "probe": probe, "test_set": "test",
                "view": "", "n_test": n, **{k: v for k, v in metrics.items() if k != "n"}, "fit_seconds": 0.1,
                "reused": False, "streamed": False, "model_dir": f"runs/{layer}/{probe}", "leaks": False,
                "train_overlap": 0, "backend": "tensorflow", "precision": "bfloat16",
                "scored_cache": f"faces-vgg16-{layer}-avg-64.h5", "_scores": scores, "_labels": labels,
                "_paths": paths, "_image_root": str(root), "_class_names": ["real", "fake"],
            })
    for row in [r for r in rows if r["layer"] == "block1_pool"]:
        rows.append({**row, "view": "jpeg:50", "roc_auc": row["roc_auc"] - 0.1, "_scores": row["_scores"] * 0.9})
    return rows


@pytest.fixture
def rows(tmp_path: Path) -> list[dict]:
    return report_rows(tmp_path / "faces")


def test_the_page_is_self_contained(rows, tmp_path: Path):
    from featurekit.report import write_html_report

    page = write_html_report(rows, tmp_path / "out" / "report.html", "faces <test>").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>faces &lt;test&gt;</title>" in page
    assert "default-src 'none'" in page  # the page's own policy refuses any request
    sources = re.findall(r'\bsrc="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r"<link|<iframe|@import|url\(|https?://(?!www\.w3\.org/)", page)


def test_the_page_leads_with_the_best_row_and_its_intervals(rows):
    from featurekit.report import compare_page

    best = max((r for r in rows if not r["view"]), key=lambda r: r["roc_auc"])
    page = compare_page(rows)
    headline = page[page.index('class="headline"'):page.index("</section>")]
    assert best["layer"] in headline and best["probe"] in headline
    assert f"{best['roc_auc']:.3f}" in headline and f"[{best['roc_auc_ci_low']:.3f}, {best['roc_auc_ci_high']:.3f}]" in headline
    assert "Picked on test" in headline  # says why the best row's figures are optimistic
    assert "Robustness views" in page and "jpeg:50" in page


def test_the_gallery_shows_the_most_confident_mistakes(rows, tmp_path: Path):
    from featurekit.report.gallery import confident_mistakes, gallery_items

    row = rows[0]
    mistakes = confident_mistakes(row, limit=5)
    scores, labels = row["_scores"], row["_labels"]
    wrong = [(abs(s - 0.5), p) for s, y, p in zip(scores, labels, row["_paths"]) if (s >= 0.5) != (y == 1)]
    assert [m["path"] for m in mistakes] == [p for _, p in sorted(wrong, reverse=True)[:5]]
    assert all((m["true"] == "fake") == m["path"].startswith("fake/") for m in mistakes)
    items = gallery_items(row, limit=5)
    assert all(item["uri"].startswith("data:image/jpeg;base64,") for item in items)
    (tmp_path / "faces" / mistakes[0]["path"]).unlink()
    assert gallery_items(row, limit=1)[0]["uri"] is None  # a file gone since: a placeholder, not a failure


def test_curves_are_small_multiples_with_sorted_legends(rows):
    from featurekit.report.plots import MAX_CURVES, curves_figure

    figure = curves_figure(rows, "roc")
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_legend() is not None]
    assert len(panels) == len(FEATURE_SETS)  # the view rows are in the robustness table, not here
    for ax in panels:
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        areas = [float(re.search(r"AUC ([0-9.]+)", t).group(1)) for t in texts]
        assert 1 <= len(texts) <= MAX_CURVES and areas == sorted(areas, reverse=True)
    colours = {}
    for ax in panels:
        for line, text in zip(ax.get_lines(), ax.get_legend().get_texts()):
            colours.setdefault(text.get_text().split(" ")[0], set()).add(line.get_color())
    assert all(len(c) == 1 for c in colours.values())  # a probe keeps its colour in every panel


def test_the_forest_plot_is_sorted_and_marks_random_and_collapsed_rows(rows):
    from featurekit.report.plots import _forest_label, forest_figure

    figure = forest_figure(rows)
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == [_forest_label(r) for r in sorted(rows, key=lambda r: r["roc_auc"])]  # best on top
    assert sum("RANDOM" in label for label in labels) == sum(bool(r["random_features"]) for r in rows) == 3
    assert sum("COLLAPSED" in label for label in labels) == sum(bool(r["collapsed"]) for r in rows) == 1


def test_plots_leave_the_matplotlib_backend_alone(tmp_path: Path):
    """A notebook user's backend stays theirs: no `matplotlib.use`, no pyplot (the old report switched to Agg)."""
    script = f"""
import sys, matplotlib
sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
matplotlib.rcParams["backend"] = "svg"
from pathlib import Path
from test_report_page import report_rows
from featurekit.report import plot_roc, write_html_report
rows = report_rows(Path({str(tmp_path)!r}) / "faces", n=20)
plot_roc(rows, Path({str(tmp_path)!r}) / "roc.png")
write_html_report(rows, Path({str(tmp_path)!r}) / "r.html")
print(matplotlib.rcParams["backend"], "matplotlib.pyplot" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["svg", "False"]
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_command_writes_one_page_from_caches(tmp_path: Path):
    """`report` over caches: fits (or reuses) the probes, and its page shows the images behind the mistakes."""
    from typer.testing import CliRunner

    from featurekit.cli import app

    rng = np.random.default_rng(0)
    labels = np.arange(120) % 2
    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(120) % 10]
    images_for(tmp_path / "faces", labels)
    caches = [make_cache(tmp_path / f"c{number}.h5", rng.normal(size=(120, 8)).astype(np.float32) + shift * labels[:, None],
                         labels, splits, data_root=str(tmp_path / "faces"), layer=f"pool{number}")
              for number, shift in enumerate((0.6, 1.2))]
    out = tmp_path / "results" / "faces.html"
    args = ["report", *sum((["--cache", str(c)] for c in caches), []), "--probe", "logreg", "--probe", "knn",
            "--boot", "20", "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--title", "two caches"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "<h1>two caches</h1>" in page and "pool0" in page and "pool1" in page
    assert page.count("data:image/jpeg;base64,") >= 1  # thumbnails of the best row's mistakes
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "fitting" not in again.output  # fitted probes are reused


def test_the_sweep_writes_its_page_beside_its_markdown(tmp_path: Path):
    from featurekit.report import write_sweep_results
    from featurekit.jobs.sweep import select_on_valid

    caches = [separable_cache(tmp_path / f"s{i}.h5", seed=i, shift=0.5 + i) for i in range(2)]
    result = select_on_valid(caches, ["logreg"], top_k=0, runs_dir=tmp_path / "runs", n_boot=20, audit=False,
                             name="tiny", log=lambda message: None)
    written = write_sweep_results(result, tmp_path / "results")
    assert [p.name for p in written] == ["sweep-tiny.md", "sweep-tiny.json", "sweep-tiny.html"]
    page = (tmp_path / "results" / "sweep-tiny.html").read_text()
    assert "chosen on valid" in page and f"{result.test['roc_auc']:.3f}" in page
    assert json.loads((tmp_path / "results" / "sweep-tiny.json").read_text())["chosen"]["probe"] == "logreg"


def test_an_output_format_is_one_registry_entry(monkeypatch):
    """Every command renders through FORMATS: a new entry there serves them all; unknown formats are refused."""
    from featurekit.errors import FeaturekitError
    from featurekit.report import FORMATS, check_output, render, render_predictions
    from featurekit.report.document import Document
    from featurekit.report.formats import Format

    monkeypatch.setitem(FORMATS, "lines", Format(lambda d: "".join(f"{len(b.rows)}\n" for b in d.blocks
                                                                  if hasattr(b, "rows"))))
    rows = [{"path": "a.png", "p_fake": 0.9, "label": "fake", "threshold": 0.5}]
    assert render_predictions(rows, "lines", "t") == "1\n"
    check_output("lines", "x.txt")
    with pytest.raises(FeaturekitError, match="Unknown output format 'csv' for an audit"):
        render(Document([], name="an audit"), "csv")  # an audit has no CSV form
    with pytest.raises(FeaturekitError, match="needs a file format"):
        check_output("table", "x.txt")


def test_run_writes_the_page_beside_its_markdown_and_json(rows, tmp_path: Path):
    """`run --results STEM` (and the main job) write STEM.html with STEM.md, STEM.json and STEM-roc.png."""
    from featurekit.cli import render_results

    stem = tmp_path / "results" / "job"
    render_results(rows, {"format": "table", "out": None, "plot": None, "results": str(stem), "title": "the job"})
    assert sorted(p.name for p in stem.parent.iterdir()) == ["job-roc.png", "job.html", "job.json", "job.md"]
    page = (stem.parent / "job.html").read_text()
    assert "<h1>the job</h1>" in page and page.count('<tr class="') >= len(rows)
