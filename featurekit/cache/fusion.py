"""Several caches of the same images, read as one: features concatenated row by row.

A probe on the fused features of, say, MobileNet `conv_pw_5` and VGG16 `block2_pool` can find what
neither finds alone. `FusedCache` implements `featurekit.cache.SplitAccess`, the reading interface
of `CacheReader` that fitting, compare and the sweep use (`split_indices`, `load`, `iter_batches`,
`labels`, `splits`, `paths`, `class_names`, `fingerprint`, `feature_dim`, `nbytes`, `require_splits`,
`attrs`, `name`, `run_name`, `member_paths`, `verify_contents`), so each of them takes a fusion
wherever it takes a cache.

Alignment, defined:

- Rows are matched by path and must then agree on sha256, label and split; the class names must be
  equal. Anything else is refused, naming the first row that differs: those are not the same images.
- A row that one member has and another lacks is refused too, unless the other member lists that
  file among its skipped (undecodable) files: then the row is left out of the fused view (the
  intersection), with a warning naming how many and the first.
- Member order in a cache does not matter: fused rows follow the row order of the first member.

Members are put in a canonical order (by fingerprint), so `--cache A --cache B` and `--cache B
--cache A` are the same fusion, with the same columns, fingerprint and fitted models. The
fingerprint is a hash of the sorted member fingerprints.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rich.markup import escape

from featurekit.cache import CacheReader, SplitAccess, open_cache
from featurekit.cache.format import BLOCK_BYTES
from featurekit.cache.reader import read_rows
from featurekit.errors import FeaturekitError, given

NAMED_ROWS = 3  # rows named in the warning about rows left out


def fused_fingerprint(member_fingerprints: Sequence[str]) -> str:
    """The fingerprint of a fusion: a hash of its members' fingerprints, sorted (member order is canonical)."""
    payload = json.dumps({"fused": sorted(member_fingerprints)}, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def source_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The cache files of a source: one cache path, or a list of them (two or more: a fusion)."""
    return [Path(p) for p in source] if isinstance(source, (list, tuple)) else [Path(source)]


def open_source(source: str | Path | Sequence[str | Path], log: Callable[[str], None] | None = None,
                keep_order: bool = False) -> CacheReader | "FusedCache":
    """Open a cache, or a fusion of several caches given as a list of paths (`keep_order`: see FusedCache)."""
    paths = source_paths(source)
    if not paths:
        raise FeaturekitError("No cache given.", received="an empty list of caches", fix="Name at least one cache.")
    return FusedCache(paths, log=log, keep_order=keep_order) if len(paths) > 1 else open_cache(paths[0])


def source_name(source: str | Path | Sequence[str | Path]) -> str:
    """How a cache or a fusion is named in tables: the file name, or ``fuse(a.h5+b.h5)`` in the given order."""
    names = [path.name for path in source_paths(source)]
    return f"fuse({'+'.join(names)})" if len(names) > 1 else names[0]


def _member_label(attrs: dict[str, Any], with_size: bool) -> str:
    parts = [attrs.get("backbone"), *([attrs["layer"]] if attrs.get("layer") else []), attrs.get("pooling"),
             *([attrs.get("image_size")] if with_size else [])]
    return "/".join(map(str, parts))


def _label(cache: CacheReader, row: int) -> str:
    label = int(cache.labels[row])
    return cache.class_names[label] if len(cache.class_names) > label else str(label)


class FusedCache(SplitAccess):
    """Member caches of the same images as one cache whose features are the members' side by side.

    Args:
        paths: Two or more finished caches.
        log: Where the warning about rows left out goes (default: print).

    Raises:
        FeaturekitError: Fewer than two distinct caches, other class names, or a row that differs
            (sha256, label, split) or that one member lacks without having skipped it.
    """

    def __init__(self, paths: Sequence[str | Path], log: Callable[[str], None] | None = None,
                 keep_order: bool = False):
        paths = [Path(p) for p in paths]
        if len(paths) < 2:
            raise FeaturekitError("A fusion needs at least two caches.", received=", ".join(map(str, paths)),
                                  fix="Name two or more caches of the same images (`cache` A `cache` B).")
        resolved = [p.expanduser().resolve() for p in paths]
        if len(set(resolved)) < len(resolved):
            twice = next(p for p, where in zip(paths, resolved) if resolved.count(where) > 1)
            raise FeaturekitError("The same cache is named twice in a fusion.", received=str(twice),
                                  fix="Name each cache once.")
        with ExitStack() as stack:
            members = [stack.enter_context(open_cache(p)) for p in paths]
            fingerprints = [m.fingerprint for m in members]
            if len(set(fingerprints)) < len(fingerprints):
                same = [m.path for m in members if fingerprints.count(m.fingerprint) > 1]
                raise FeaturekitError("Two caches of the fusion hold the same features (equal fingerprints).",
                                      received=", ".join(map(str, same)), fix="Fuse caches of different features.")
            # Canonical order (by fingerprint), unless the caller keeps its own: the members' substitutes on another
            # test set or view (other fingerprints) must keep the columns in the order the probe was fitted on.
            self.members: list[CacheReader] = members if keep_order else sorted(members, key=lambda m: m.fingerprint)
            self._rows = self._align(log or print)
            self._stack = stack.pop_all()  # closed by close()
        first = self.members[0]
        keep = self._rows[0]
        self.labels, self.splits = first.labels[keep], first.splits[keep]
        self.paths, self.sha256 = ([values[i] for i in keep] for values in (first.paths, first.sha256))
        self.n_rows, self.feature_dim = len(keep), sum(m.feature_dim for m in self.members)
        self.class_names, self.positive_class = first.class_names, first.positive_class
        self.member_paths = [m.path for m in self.members]
        checksums = [m.content_checksums for m in self.members]  # in member order; None where one has none
        self.content_checksums = None if any(c is None for c in checksums) else checksums
        self.fingerprint = fused_fingerprint(fingerprints)
        self.name = source_name(self.member_paths)
        self.described = f"fusion {self.name}"
        self.path = Path(self.name)  # for messages, like CacheReader.path; not a file
        self.run_name = f"fuse-{self.fingerprint[:12]}"
        self.attrs = self._describe()

    def _align(self, log: Callable[[str], None]) -> list[np.ndarray]:
        """For each member, its row of every fused row (the rows all members hold, in the first's order), once the
        members are found to hold the same classes and images."""
        first = self.members[0]
        first_sha = first.sha256
        left_out: list[tuple[str, str]] = []
        member_rows: list[np.ndarray] = []
        for other in self.members[1:]:
            if other.class_names != first.class_names:
                raise FeaturekitError(
                    f"Caches of a fusion must have the same classes: {first.path.name} has {first.class_names}, "
                    f"{other.path.name} has {other.class_names}.", received=f"{first.path}, {other.path}",
                    fix="Fuse caches extracted from the same data folder.")
            where = {path: row for row, path in enumerate(other.paths)}
            rows = np.array([where.pop(path, -1) for path in first.paths], dtype=np.int64)
            # A row one member holds and the other lacks is left out where the other skipped that file, else refused.
            for holder, lacking, lost in ((first, other, np.flatnonzero(rows < 0)), (other, first, where.values())):
                skipped = {path for path, _ in lacking.skipped}
                for row in lost:
                    if holder.paths[row] not in skipped:
                        raise FeaturekitError(
                            f"The caches of the fusion do not hold the same images: row {row} of {holder.path.name} "
                            f"({holder.paths[row]}) is not in {lacking.path.name} (nor among the files it skipped).",
                            received=f"{holder.path}, {lacking.path}",
                            fix="Fuse caches extracted from the same data folder (re-extract the one that is out of "
                                "date).")
                    left_out.append((holder.paths[row], lacking.path.name))
            other_sha = other.sha256
            for row in np.flatnonzero(rows >= 0):
                match = rows[row]
                for what, mine, theirs in (("sha256", first_sha[row], other_sha[match]),
                                           ("label", _label(first, row), _label(other, match)),
                                           ("split", str(first.splits[row]), str(other.splits[match]))):
                    if mine != theirs:
                        raise FeaturekitError(
                            f"The caches of the fusion do not hold the same images: row {row} of {first.path.name} "
                            f"({first.paths[row]}) has {what} {mine!r}, but row {match} of {other.path.name} has "
                            f"{theirs!r}.", received=f"{first.path}, {other.path}",
                            fix="Fuse caches extracted from the same data folder with the same split "
                                "(re-extract the one that is out of date).")
            member_rows.append(rows)
        keep = np.flatnonzero(np.all([rows >= 0 for rows in member_rows], axis=0))
        if left_out:
            named = "; ".join(f"{path} (skipped by {name})" for path, name in left_out[:NAMED_ROWS])
            more = f" and {len(left_out) - NAMED_ROWS} more" if len(left_out) > NAMED_ROWS else ""
            log(escape(f"fusion: {len(left_out)} images are left out because a member skipped them: {named}{more}."))
        return [keep] + [rows[keep] for rows in member_rows]

    def _describe(self) -> dict[str, Any]:
        """Attributes for rows and records: what each member is, joined; the sizes once where all agree."""
        attrs = [m.attrs for m in self.members]
        sizes = list(dict.fromkeys(str(a.get("image_size")) for a in attrs))
        poolings = list(dict.fromkeys(str(a.get("pooling")) for a in attrs))
        labels = list(dict.fromkeys(str(a.get("weights_label") or "") for a in attrs))
        return {
            "backbone": "fuse(" + "+".join(_member_label(a, len(sizes) > 1) for a in attrs) + ")",
            "weights_label": " + ".join(label for label in labels if label),
            "random_features": any(bool(a.get("random_features")) for a in attrs),
            "layer": "",
            "pooling": "concat",
            "image_size": sizes[0] if len(sizes) == 1 else "+".join(sizes),
            "preprocessing": None,
            "feature_dim": self.feature_dim,
            "n_rows": self.n_rows,
            "class_names": self.members[0].class_names,
            "data_root": self.members[0].attrs.get("data_root", ""),
            "fused": True,
            "member_poolings": poolings,
            "members": [str(m.path) for m in self.members],
            "member_fingerprints": [m.fingerprint for m in self.members],
        }

    # ---- the SplitAccess interface

    def provenance(self, keys: tuple[str, ...]) -> dict[str, Any]:
        return {"cache": self.name, "cache_fingerprint": self.fingerprint,
                "embedding": {key: self.attrs[key] for key in (*keys, "fused", "member_fingerprints")
                              if key in self.attrs},
                "members": [{"path": str(member.path), "fingerprint": member.fingerprint,
                             "embedding": member.provenance(keys)["embedding"]} for member in self.members]}

    def close(self) -> None:
        self._stack.close()

    def verify_contents(self) -> list[str]:
        """Verify every member's contents (see `CacheReader.verify_contents`); notes for what cannot be checked."""
        return [note for member in self.members for note in member.verify_contents()]

    def _plan_blocks(self, rows: np.ndarray) -> list[np.ndarray]:
        """Runs of consecutive rows of the split, each about `BLOCK_BYTES` of fused features."""
        block_rows = max(1, BLOCK_BYTES // max(1, 4 * self.feature_dim))
        return [rows[start:start + block_rows] for start in range(0, len(rows), block_rows)]

    def _read_block(self, rows: np.ndarray) -> np.ndarray:
        """Fused features (float32, members' columns in member order), each member read in bounded windows."""
        return np.concatenate([read_rows(member.features, member_rows[rows])
                               for member, member_rows in zip(self.members, self._rows)], axis=1)


def check_fusion_request(caches: Sequence[str | Path], fuse: bool) -> None:
    """Refuse several caches without `fuse`, and `fuse` with fewer than two caches (for `fit`)."""
    if fuse and len(caches) < 2:
        raise FeaturekitError("`fuse` needs two or more caches of the same images.",
                              received=", ".join(given("cache", str(c)) for c in caches) or "no cache",
                              fix="Repeat `cache`: `cache` A.h5 `cache` B.h5 `fuse`.")
    if not fuse and len(caches) > 1:
        raise FeaturekitError("One probe is fitted on one cache; several were given.",
                              received=", ".join(given("cache", str(c)) for c in caches),
                              fix="Add `fuse` to fit on their concatenated features, or name one `cache`.")


def fusion_command_flags(member_paths: Sequence[str | Path]) -> str:
    """``--cache A --cache B --fuse`` (``--cache A`` for one cache, as `member_paths` of a `CacheReader` gives):
    the flags of the `python cli.py fit` command a message tells the user to run."""
    return " ".join(f"--cache {p}" for p in member_paths) + (" --fuse" if len(member_paths) > 1 else "")
