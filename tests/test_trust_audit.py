"""The audit bounds what it decodes, says loudly when identical files carry both labels, and calls a
shortcut probe far below chance a signal, with a headline that agrees with its table."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from featurekit.audit import audit_data
from featurekit.cli import app
from featurekit.report import render_audit
from test_audit import face_like, make_split_folder
from test_data import _png_declaring


def test_an_image_beyond_max_pixels_is_skipped_with_the_reason_not_decoded(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces")
    _png_declaring(root / "train" / "real" / "huge.png", 12000, 12000)  # 144 MP: below Pillow's own bomb limit
    report = audit_data(root, n_boot=50)
    reasons = dict((Path(path).name, reason) for path, reason in report.shortcuts.unreadable)
    assert reasons == {"huge.png": "image too large to decode safely: 144,000,000 pixels, more than `max_pixels` "
                                   "64,000,000 (raise it to read this file)"}
    assert report.shortcuts.n_train == 48


def test_max_pixels_is_applied_to_every_file_and_checked(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces", sizes={"train": 4, "valid": 2, "test": 4})
    report = audit_data(root, n_boot=20, max_pixels=1000)  # the images are 32 x 32 = 1,024 pixels
    assert report.shortcuts.skipped == "no image file could be read"
    assert all("more than `max_pixels` 1,000" in reason for _, reason in report.shortcuts.unreadable)
    result = CliRunner().invoke(app, ["audit", str(root), "--max-pixels", "1000", "--n-boot", "20"])
    assert result.exit_code == 0 and "shortcut probes not run" in result.output


def test_identical_files_with_both_labels_inside_one_split_are_a_loud_warning(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces", sizes={"train": 6, "valid": 2, "test": 4})
    shutil.copy(root / "train/real/real_000.jpg", root / "train/fake/mislabelled.jpg")
    report = audit_data(root, shortcuts=False)
    assert not report.has_leaks and report.has_label_conflicts
    conflicts = [w for w in report.warnings if w.startswith("LABEL CONFLICT")]
    assert len(conflicts) == 1 and "mislabelled.jpg" in conflicts[0] and "real_000.jpg" in conflicts[0]
    assert report.to_dict()["has_label_conflicts"] is True
    assert "No leaks" not in render_audit(report.to_dict(), "md")


def test_strict_fails_on_a_label_conflict_and_passes_without(tmp_path: Path):
    root = make_split_folder(tmp_path / "faces", sizes={"train": 6, "valid": 2, "test": 4})
    clean = CliRunner().invoke(app, ["audit", str(root), "--no-shortcuts", "--strict"])
    assert clean.exit_code == 0, clean.output
    shutil.copy(root / "valid/fake/fake_000.jpg", root / "valid/real/copy.jpg")
    result = CliRunner().invoke(app, ["audit", str(root), "--no-shortcuts", "--strict"])
    assert result.exit_code == 1 and "LABEL CONFLICT" in result.output


def inverted_quality_folder(root: Path) -> Path:
    """Real files saved at quality 70 and fake at 95 in train; the other way round in valid and test."""
    from PIL import Image

    seed = 0
    for split, count in {"train": 24, "valid": 8, "test": 16}.items():
        quality = {"real": 70, "fake": 95} if split == "train" else {"real": 95, "fake": 70}
        for name in ("real", "fake"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                seed += 1
                Image.fromarray(face_like(seed)).save(folder / f"{name}_{i:03d}.jpg", quality=quality[name])
    return root


def test_a_shortcut_far_below_chance_is_a_signal_and_the_headline_says_so(tmp_path: Path):
    report = audit_data(inverted_quality_folder(tmp_path / "faces"), n_boot=200)
    shortcuts = report.shortcuts
    low, high = shortcuts.property_auc_ci["jpeg_quality"]
    assert shortcuts.property_auc["jpeg_quality"] == 0.0 and high < 0.5
    assert "jpeg_quality" in shortcuts.flagged and shortcuts.verdict == "SHORTCUT" and report.has_shortcuts
    assert any(w.startswith("SHORTCUT") and "jpeg_quality" in w and "BELOW chance" in w for w in report.warnings)
    markdown = render_audit(report.to_dict(), "md")
    assert "No leaks" not in markdown and "near chance" not in markdown and "shortcut probes (SHORTCUT)" in markdown
