"""What an audit found, as data: JSON through `to_dict()` (`featurekit.report` renders it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Member:
    """One image as the audit lists it."""

    path: str
    split: str
    label: str


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with the same sha256: the splits they sit in, and whether they carry both labels (no classifier
    can be right on both)."""

    sha256: str
    splits: list[str]
    label_conflict: bool
    members: list[Member]


@dataclass(frozen=True)
class NearDuplicatePair:
    """Two images in different splits whose embeddings nearly coincide (cosine similarity, to 6 decimals)."""

    similarity: float
    first: Member
    second: Member


@dataclass(frozen=True)
class NearDuplicates:
    """The near-duplicate search of a cache: its threshold, whether it centred, every pair counted, the most
    similar listed."""

    threshold: float
    centered: bool
    count: int
    listed: list[NearDuplicatePair]


@dataclass
class ShortcutReport:
    """Shortcut probes on trivial file properties, trained on one split and scored on another.

    `property_auc` holds each property's own ROC AUC on the scored split (its direction, or for a
    categorical property its fake rate per value, learnt on the training split), `property_auc_ci`
    its 95 % stratified bootstrap interval; `probes` the
    classifiers on all properties together. `flagged` names what lies beyond the threshold on either
    side of chance (above it, or below 1 - threshold) with a 95 % bootstrap interval that excludes 0.5.
    """

    threshold: float
    train_split: str = "train"
    eval_split: str = "test"
    n_train: int = 0
    n_eval: int = 0
    property_auc: dict[str, float | None] = field(default_factory=dict)
    property_auc_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    probes: dict[str, dict[str, float]] = field(default_factory=dict)
    flagged: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    skipped: str = ""  # why the probes did not run, "" when they did

    def scored(self) -> dict[str, tuple[float, tuple[float, float]]]:
        """Every property that could be scored, then every probe: name -> (ROC AUC, its 95% interval)."""
        alone = {name: (auc, self.property_auc_ci[name]) for name, auc in self.property_auc.items() if auc is not None}
        return alone | {name: (probe["roc_auc"], (probe["roc_auc_ci_low"], probe["roc_auc_ci_high"]))
                        for name, probe in self.probes.items()}

    def far_from_chance(self, auc: float) -> bool:
        """ROC AUC beyond the threshold on either side of chance: above it, or below 1 - threshold."""
        return abs(auc - 0.5) > self.threshold - 0.5

    def is_signal(self, auc: float, interval: tuple[float, float]) -> bool:
        """Far from chance in either direction, with a 95% interval that excludes 0.5.

        Below chance is a signal too: what was learnt on train predicts the opposite on the scored split, so
        the property differs between the classes, in a way that itself differs between the splits.
        """
        return self.far_from_chance(auc) and (interval[0] > 0.5 or interval[1] < 0.5)

    @property
    def verdict(self) -> str:
        if self.skipped:
            return "not run"
        if self.flagged:
            return "SHORTCUT"
        far = any(self.far_from_chance(auc) for auc, _ in self.scored().values())
        return "inconclusive: far from chance, interval includes it" if far else "near chance"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class AuditReport:
    """Everything one audit found; `to_dict()` for JSON (and for every renderer).

    `has_leaks` is True when an image (byte-identical or near-identical) sits in more than one split.
    `warnings` lists every finding a reader must see before trusting a score on this data: leaks,
    shortcuts and imbalance. `notes` lists checks that could not run or were inconclusive.
    """

    source: str
    kind: str  # "data" or "cache"
    class_names: list[str]
    n_images: int
    balance: dict[str, dict[str, Any]]
    exact_cross_split: list[DuplicateGroup]
    exact_within_split: list[DuplicateGroup]
    near_duplicates: NearDuplicates | None = None  # None: not computed (no embeddings)
    shortcuts: ShortcutReport | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def has_leaks(self) -> bool:
        return bool(self.exact_cross_split) or bool(self.near_duplicates and self.near_duplicates.count)

    @property
    def has_shortcuts(self) -> bool:
        return bool(self.shortcuts and self.shortcuts.flagged)

    @property
    def has_label_conflicts(self) -> bool:
        """Identical files carry both labels, across splits or inside one."""
        return any(g.label_conflict for g in self.exact_cross_split + self.exact_within_split)

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found |= {"shortcuts": self.shortcuts and self.shortcuts.to_dict(),
                  "exact_duplicates_across_splits": found["exact_cross_split"],
                  "exact_duplicates_within_split": found["exact_within_split"]}
        return {key: found[key] if key in found else getattr(self, key) for key in _JSON_KEYS}


# The keys of `AuditReport.to_dict()`, in the order of the JSON report (the has_... flags are properties).
_JSON_KEYS = ("source", "kind", "class_names", "n_images", "has_leaks", "has_shortcuts", "has_label_conflicts",
              "warnings", "notes", "balance", "exact_duplicates_across_splits", "exact_duplicates_within_split",
              "near_duplicates", "shortcuts")
