"""Near-duplicate search of the audit (issue 8): time and peak memory on a synthetic cache-sized array.

Writes N random embeddings of D features to an HDF5 file with a planted copy across splits, then runs
`find_near_duplicates` streaming from the file with a small memory budget, in a fresh process so the
peak RSS is the search's own. The search is quadratic: the time for 140,000 rows is about
(140,000 / N)^2 times the time measured here (printed as an extrapolation, not a measurement).

    .venv/bin/python benchmarks/bench_audit.py [--rows 20000] [--dim 1024] [--budget-mb 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"


def search(path: Path, budget_mb: int) -> dict:
    """Runs in a fresh process: peak RSS is the search's own (plus the interpreter and imports)."""
    import h5py

    from featurekit.audit import find_near_duplicates

    with h5py.File(path, "r") as f:
        splits = np.array([s.decode() for s in f["splits"][()]])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        _, count = find_near_duplicates(f["features"], splits, 0.99, memory_budget_bytes=budget_mb << 20)
        seconds = time.perf_counter() - started
    return {"pairs_found": count, "seconds": round(seconds, 1), "rss_after_imports_mb": round(before, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    import h5py

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--budget-mb", type=int, default=64)
    parser.add_argument("--search", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.search:
        print(json.dumps(search(args.search, args.budget_mb)))
        return
    rng = np.random.default_rng(0)
    splits = rng.choice(np.array(["train", "valid", "test"]), size=args.rows, p=[0.7, 0.15, 0.15])
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "features.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("splits", data=splits.astype("S5"))
            data = f.create_dataset("features", shape=(args.rows, args.dim), dtype="float32",
                                    chunks=(max(1, (1 << 20) // (4 * args.dim)), args.dim))
            for start in range(0, args.rows, 4096):
                stop = min(start + 4096, args.rows)
                data[start:stop] = np.abs(rng.normal(size=(stop - start, args.dim))).astype(np.float32)
            first_train, first_test = np.flatnonzero(splits == "train")[0], np.flatnonzero(splits == "test")[0]
            data[first_test] = data[first_train]
        child = subprocess.run([sys.executable, __file__, "--search", str(path), "--budget-mb", str(args.budget_mb)],
                               capture_output=True, text=True, check=True)
        measured = json.loads(child.stdout.strip().splitlines()[-1])
    row = {"rows": args.rows, "dim": args.dim, "features_mb": round(args.rows * args.dim * 4 / 2**20),
           "budget_mb": args.budget_mb, **measured, "cpu_count": os.cpu_count(),
           "extrapolated_seconds_140k_rows": round(measured["seconds"] * (140000 / args.rows) ** 2)}
    print(json.dumps(row))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "audit_near_duplicates.json").write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
