"""The crash test: SIGKILL a real `python cli.py extract` at random moments, rerun it, compare with a whole run.

Each of N kills lands after a random number of batch files exist, or (every fifth kill) while the final
merge writes its temporary file. Each is followed by a rerun of the same command. A kill passes when

- the resumed cache equals the uninterrupted run's (features, paths, splits, labels, sha256), and
- the rerun recomputed only the missing batches: it reported as done exactly the well-formed batch files the
  kill left, and computed exactly the images of the others (from its "Resuming ...: k of n batches already
  done" line and its "N computed" summary), and
- nothing is left beside the cache (no batch folder, lock or temporary file).

Run it before each release (a few minutes on 2 cores: two Python+TensorFlow starts per kill):

    .venv/bin/python benchmarks/bench_crash.py [--kills 20] [--seed 0] [--images 300] [--batch-size 4]

It prints k/N equal and writes benchmarks/results/crash.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BATCH_FILE = re.compile(r"batch-\d{7}\.h5")


def make_images(root: Path, n_images: int, size: int, seed: int) -> Path:
    """n_images small random PNGs, half in real/ and half in fake/ (the fakes a little brighter)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n_images):
        label = i % 2
        pixels = (rng.integers(0, 160, (size, size, 3)) + 90 * label).clip(0, 255).astype(np.uint8)
        path = root / ("real", "fake")[label] / f"img_{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return root


def command(data: Path, cache: Path, batch_size: int, image_size: int) -> list[str]:
    return [sys.executable, str(REPO / "cli.py"), "extract", "--backbone", "test_tiny", "--data", str(data),
            "--pooling", "flatten", "--image-size", str(image_size), "--batch-size", str(batch_size),
            "--cache", str(cache), "--no-progress"]


def environment() -> dict[str, str]:
    # Wide, plain output so the summary line is one line; TensorFlow quiet.
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}


def run(args: list[str]) -> str:
    done = subprocess.run(args, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"extract failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return " ".join(done.stdout.split())


def count_batch_files(partial: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(partial) if BATCH_FILE.fullmatch(entry.name))
    except FileNotFoundError:
        return 0


def merge_started(cache: Path) -> bool:
    prefix = f".{cache.name}.tmp-"
    return any(entry.name.startswith(prefix) for entry in os.scandir(cache.parent))


def kill_when(args: list[str], ready, deadline_s: float = 300.0) -> tuple[bool, float]:
    """Start `args`; SIGKILL it as soon as `ready()` is true. Returns (killed before it finished, seconds)."""
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=REPO, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and time.perf_counter() - started < deadline_s:
            if ready():
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True, time.perf_counter() - started
            time.sleep(0.001)
        return False, time.perf_counter() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def rows_of(batches: set[int], batch_size: int, n_images: int) -> int:
    return sum(min(batch_size, n_images - b * batch_size) for b in batches)


def same_cache(a: Path, b: Path) -> dict[str, bool]:
    from featurekit.cache import open_cache

    with open_cache(a) as x, open_cache(b) as y:
        return {"features": bool(np.array_equal(x.load()[0], y.load()[0])), "paths": x.paths == y.paths,
                "splits": list(x.splits) == list(y.splits), "labels": bool(np.array_equal(x.labels, y.labels)),
                "sha256": x.sha256 == y.sha256}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "crash.json")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    options = parser.parse_args()

    from featurekit.cache import PartialCache

    rng = np.random.default_rng(options.seed)
    with tempfile.TemporaryDirectory(dir=options.workdir) as scratch:
        work = Path(scratch)
        data = make_images(work / "faces", options.images, 48, options.seed)
        n_batches = -(-options.images // options.batch_size)
        reference = work / "whole.h5"
        started = time.perf_counter()
        run(command(data, reference, options.batch_size, options.image_size))
        print(f"uninterrupted run: {time.perf_counter() - started:.1f} s, {n_batches} batches of {options.batch_size}")

        records = []
        for kill in range(options.kills):
            folder = work / f"kill-{kill:02d}"
            folder.mkdir()
            cache = folder / "c.h5"
            partial = PartialCache(cache)
            args = command(data, cache, options.batch_size, options.image_size)
            if kill % 5 == 4:
                target, want = "merge", None
                killed, seconds = kill_when(args, lambda: merge_started(cache))
            else:
                want = int(rng.integers(1, n_batches))
                target = f"{want} batch files"
                killed, seconds = kill_when(args, lambda: count_batch_files(partial.directory) >= want)
            files_at_kill = count_batch_files(partial.directory)
            done = partial.done_batches() if partial.exists() else set()
            cache_at_kill = cache.exists()

            output = run(args)
            resumed = re.search(r"Resuming .*?: (\d+) of (\d+) batches already done", output)
            computed = re.search(r"(\d+) computed", output)
            reported_done = int(resumed.group(1)) if resumed else (n_batches if "up to date" in output else 0)
            expected_computed = 0 if cache_at_kill else options.images - rows_of(done, options.batch_size, options.images)
            equal = same_cache(cache, reference)
            leftovers = sorted(p.name for p in folder.iterdir() if p.name != "c.h5")
            record = {
                "kill": kill, "target": target, "killed": killed, "seconds_to_kill": round(seconds, 2),
                "batch_files_at_kill": files_at_kill, "well_formed_after_kill": len(done),
                "cache_existed_after_kill": cache_at_kill, "rerun_reported_done": reported_done,
                "rerun_computed": int(computed.group(1)) if computed else None,
                "expected_computed": expected_computed, "equal": equal, "leftovers": leftovers,
            }
            record["only_missing_recomputed"] = (
                record["rerun_computed"] == expected_computed
                and (cache_at_kill or reported_done == len(done)))
            record["passed"] = killed and all(equal.values()) and record["only_missing_recomputed"] and not leftovers
            records.append(record)
            print(f"kill {kill:2d} at {target:>16}: {files_at_kill:3d} batch files, {len(done):3d} well formed"
                  f"{' (cache in place)' if cache_at_kill else ''}; rerun computed {record['rerun_computed']} "
                  f"(expected {expected_computed}); equal={all(equal.values())}; "
                  f"{'PASS' if record['passed'] else 'FAIL'}", flush=True)

    passed = sum(r["passed"] for r in records)
    equal_count = sum(all(r["equal"].values()) for r in records)
    only_missing = sum(r["only_missing_recomputed"] for r in records)
    print(f"{equal_count}/{len(records)} caches equal to the uninterrupted run; {only_missing}/{len(records)} "
          f"reruns recomputed only the missing batches; {passed}/{len(records)} kills passed every check")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps({
        "kills": len(records), "equal": equal_count, "only_missing_recomputed": only_missing, "passed": passed,
        "images": options.images, "batch_size": options.batch_size, "n_batches": n_batches, "seed": options.seed,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "records": records,
    }, indent=2) + "\n")
    print(f"wrote {options.out}")
    sys.exit(0 if passed == len(records) else 1)


if __name__ == "__main__":
    main()
