"""Check that a restructuring changed no command's output: run the same commands on two commits, compare.

    python benchmarks/check_outputs_unchanged.py --before 9432967 [--after HEAD] [--data data/faces_sample]

Each commit is checked out into a temporary git worktree and run with this checkout's Python (`sys.executable`;
run it from the repo root, where the venv's editable install sees the worktree's own `featurekit/` first).
The commands: `extract` (MobileNet, shipped weights, two poolings from one pass, float32), `extract` of SPAM,
`fit`, `compare --format json`, `info --format json`, `audit --format json` and `predict --format json`.
Compared: every dataset of every cache (bit for bit), and every field the two JSON outputs share (numbers to
1e-9; timings, paths of the run folders and versions left out). New fields in the new output are listed, not
failures: issues may add outputs. Exit 1 when anything shared differs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
IGNORED_KEYS = {"fit_seconds", "seconds", "created_utc", "versions", "model_dir", "scored_cache", "cache", "path",
                "fitted", "run_dir", "elapsed", "images_per_second", "weights", "source"}


def commands(data: Path, out: Path) -> list[tuple[str, list[str]]]:
    cache = out / "cache"
    mobilenet = cache / f"{data.name}-mobilenet-conv_pw_11_relu-meanstd-128.h5"
    return [
        ("extract", ["extract", "--backbone", "mobilenet", "--data", str(data), "--layer", "conv_pw_11_relu",
                     "--pooling", "meanstd,avg", "--image-size", "128", "--precision", "float32",
                     "--cache-dir", str(cache), "--no-progress"]),
        ("extract_spam", ["extract", "--backbone", "spam", "--data", str(data), "--cache-dir", str(cache),
                          "--no-progress"]),
        ("fit", ["fit", "--cache", str(mobilenet), "--probe", "logreg", "--out", str(out / "runs" / "logreg")]),
        ("compare", ["compare", "--cache-dir", str(cache), "--runs-dir", str(out / "runs"), "--probe", "logreg",
                     "--probe", "knn", "--boot", "200", "--format", "json"]),
        ("info", ["info", str(mobilenet), "--format", "json"]),
        ("audit", ["audit", str(mobilenet), "--format", "json", "--data-root", str(data)]),
        ("predict", ["predict", "--model", str(out / "runs" / "logreg"), str(data / "real"), "--format", "json"]),
    ]


def run_commit(commit: str, data: Path, out: Path) -> dict[str, str]:
    """Outputs (stdout) of every command at `commit`, run in a temporary worktree."""
    tree = out / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True,
                   capture_output=True)
    try:
        outputs = {}
        for name, args in commands(data, out):
            done = subprocess.run([sys.executable, "cli.py", *args], cwd=tree, capture_output=True, text=True,
                                  env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", "COLUMNS": "200",
                                       "HOME": str(Path.home())})
            print(f"  {commit} {name}: exit {done.returncode}", flush=True)
            outputs[name] = done.stdout if done.returncode == 0 else f"EXIT {done.returncode}: {done.stderr[-2000:]}"
        return outputs
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


def differences(before, after, where: str = "") -> tuple[list[str], list[str]]:
    """(differences in what both have, keys only the new output has)."""
    if isinstance(before, dict) and isinstance(after, dict):
        changed, added = [], [f"{where}.{key}" for key in after if key not in before]
        for key in before:
            if key in IGNORED_KEYS or key not in after:
                continue
            c, a = differences(before[key], after[key], f"{where}.{key}")
            changed += c
            added += a
        return changed, added
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{where}: {len(before)} items before, {len(after)} after"], []
        changed, added = [], []
        for i, (b, a) in enumerate(zip(before, after)):
            c, new = differences(b, a, f"{where}[{i}]")
            changed += c
            added += new
        return changed, added
    if isinstance(before, float) and isinstance(after, (int, float)):
        return ([] if abs(before - after) <= 1e-9 or (np.isnan(before) and np.isnan(after))
                else [f"{where}: {before} -> {after}"]), []
    return ([] if before == after else [f"{where}: {before!r} -> {after!r}"]), []


def cache_differences(before: Path, after: Path) -> list[str]:
    found = []
    for path in sorted(before.glob("*.h5")):
        other = after / path.name
        if not other.exists():
            found.append(f"{path.name}: missing after")
            continue
        with h5py.File(path, "r") as a, h5py.File(other, "r") as b:
            for name in a:
                if name not in b or not np.array_equal(a[name][()], b[name][()]):
                    found.append(f"{path.name}/{name} differs")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--data", default=str(REPO / "data" / "faces_sample"))
    args = parser.parse_args()
    data = Path(args.data).resolve()
    with tempfile.TemporaryDirectory() as scratch:
        before_out, after_out = Path(scratch) / "before", Path(scratch) / "after"
        before = run_commit(args.before, data, before_out)
        after = run_commit(args.after, data, after_out)
        failures = cache_differences(before_out / "cache", after_out / "cache")
        for name in before:
            try:
                changed, added = differences(json.loads(before[name] or "null"), json.loads(after[name] or "null"))
            except json.JSONDecodeError:
                changed, added = ([] if before[name].startswith("EXIT") == after[name].startswith("EXIT")
                                  else [f"{name}: {before[name][:200]!r} vs {after[name][:200]!r}"]), []
            failures += [f"{name}{item}" for item in changed]
            if added:
                print(f"{name}: new fields {sorted(set(a.split('[')[-1] for a in added))[:12]}")
    for failure in failures:
        print("DIFFERENT", failure)
    print(f"{len(failures)} differences between {args.before} and {args.after}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
