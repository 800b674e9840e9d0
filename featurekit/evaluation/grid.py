"""Caches x probes: every probe fitted on every cache (or fusion), or reused where its fit still matches.

`ProbeGrid.fits` is the one loop over caches and probes: `compare` scores what it yields on test, and `sweep` on
valid. A fitted probe lives in its default folder (``runs/<cache>/<probe>``, `featurekit.evaluation.fitting`) and
is reused while it was fitted on the same cache, contents, training views and parameters, and loads safely.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rich.markup import escape

from featurekit.cache import SplitAccess
from featurekit.cache.fusion import source_paths
from featurekit.errors import FeaturekitError
from featurekit.evaluation.fitting import FittedProbe, fit_on, load_fitted, read_fitted_meta
from featurekit.evaluation.train_views import open_training_source, parse_train_views
from featurekit.parameters import MEMORY_BUDGET_GB, RUNS_DIR

CacheSource = str | Path | Sequence[str | Path]  # a cache file, or a fusion group of several


@dataclass
class Fit:
    """One probe fitted (or reused) on one cache or fusion, while that cache is open.

    Attributes:
        source: The cache path, or the list of member paths of a fusion.
        cache: The open cache (or fusion); valid only inside the loop that yielded this fit.
        probe: The probe name.
        fitted: The fitted probe (its threshold chosen on valid).
        reused: Whether it was reused rather than fitted now.
        leaks: Whether the cache (or a member of the fusion) leaks across its splits; None when not audited.
    """

    source: CacheSource
    cache: SplitAccess
    probe: str
    fitted: FittedProbe
    reused: bool
    leaks: bool | None


def resolved(path: str | Path) -> Path:
    """A cache path as one file is known by, whichever way it was spelt."""
    return Path(path).expanduser().resolve()


@dataclass
class ProbeGrid:
    """Probes to fit on every cache (or fusion), and how: fitted where missing, reused where the fit still matches.

    The probe names and training views are checked when the grid is made, before any work.

    Attributes:
        probes: Probe names.
        probe_params: Constructor parameters per probe name.
        runs_dir: Where fitted probes live.
        refit: Refit even where a matching fitted probe exists.
        memory_budget_gb: Larger features are streamed from disk.
        log: Where progress messages go.
        train_views: Views of each cache's train split fitted on beside its clean rows (texts, parsed here:
            `featurekit.evaluation.train_views.parse_train_views`).
        audit: Audit each cache for leaks first (exact duplicates across splits) and warn loudly (`audit_leaks`).
    """

    probes: Sequence[str]
    probe_params: dict[str, dict[str, Any]] | None = None
    runs_dir: str | Path = RUNS_DIR
    refit: bool = False
    memory_budget_gb: float = MEMORY_BUDGET_GB
    log: Callable[[str], None] = print
    train_views: Sequence[str] | str | None = None
    audit: bool = True

    def __post_init__(self) -> None:
        from featurekit.probes import get_probe_spec

        for probe in self.probes:  # an unknown name fails before any work (the known ones listed)
            get_probe_spec(probe)
        self.train_views = parse_train_views(self.train_views)  # so do wrong view texts
        self.probe_params = self.probe_params or {}
        self.leaky: dict[Path, bool] = {}  # for each resolved cache path audited, whether it leaks

    def fits(self, sources: Sequence[CacheSource]) -> Iterator[Fit]:
        """One Fit per cache x probe, cache by cache, while its cache is open (a list of paths is a fusion); with
        `audit`, every cache is audited first."""
        if self.audit:
            self.audit_leaks(sources)
        for source in sources:
            leaks = any(self.leaky[resolved(path)] for path in source_paths(source)) if self.audit else None
            with open_training_source(source, self.train_views, log=self.log) as cache:
                for probe in self.probes:
                    yield Fit(source, cache, probe, *self.fitted(cache, probe), leaks)

    def audit_leaks(self, sources: Sequence[CacheSource]) -> None:
        """The cheap audit of every cache (and fusion member) not audited yet: exact duplicates across splits and
        balance. A leak (an image whose identical copy sits in another split) is logged as a loud warning line:
        scores on such a test split are optimistic."""
        from featurekit.audit import audit_cache

        for path in (path for source in sources for path in source_paths(source) if resolved(path) not in self.leaky):
            report = audit_cache(path, near_duplicates=False, shortcuts=False)
            self.leaky[resolved(path)] = report.has_leaks
            if report.has_leaks:
                leak = next((w for w in report.warnings if w.startswith("LEAK")), "")
                self.log(f"[bold red]WARNING: {escape(path.name)} leaks across its splits[/]: {escape(leak)} Its "
                         f"scores are optimistic; the `audit` command lists every duplicate of {escape(str(path))}.")

    def fitted(self, cache: SplitAccess, probe: str) -> tuple[FittedProbe, bool]:
        """The probe fitted on an open cache (or fusion) in its default folder: reused where it still matches.

        Returns:
            (the fitted probe, whether it was reused rather than fitted now).
        """
        directory = Path(self.runs_dir) / cache.run_name / probe
        params = self.probe_params.get(probe, {})
        fitted = None if self.refit else _reusable_fit(directory, cache, probe, params, self.log)
        if fitted is not None:
            return fitted, True
        self.log(f"fitting {probe} on {escape(cache.name)} ...")
        return fit_on(cache, probe, dict(params), directory, self.memory_budget_gb, self.log), False


def _reusable_fit(directory: Path, cache: SplitAccess, probe: str, params: dict[str, Any],
                  log: Callable[[str], None]) -> FittedProbe | None:
    """The fitted probe in `directory` if it was fitted on this cache with these parameters and loads
    safely; None means "fit it again" (the refit replaces the folder).

    A folder in an old or unknown format is never opened (an old pickle could run code: `load_fitted` refuses it
    from its file names and JSON); it is refitted with a message, as is a model that fails to load.
    """
    try:
        meta = read_fitted_meta(directory)
        if not (meta.get("cache_fingerprint") == cache.fingerprint and meta.get("probe") == probe
                # fitted on other training views, or on other contents (or before they were recorded)
                and meta.get("train_view_caches", []) == list(cache.train_view_caches)
                and meta.get("content_checksums") == cache.content_checksums
                and effective_params(probe, dict(meta.get("params") or {})) == effective_params(probe, params)):
            return None
    except (FeaturekitError, TypeError, ValueError):  # no usable fitted.json, or parameters this version lacks
        return None
    try:
        return load_fitted(directory, cache)
    except FeaturekitError as error:
        log(f"not reusing {directory}: {error.problem} Refitting.")
        return None


def effective_params(probe: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every scalar parameter of the probe as it would be built: explicit defaults equal omitted ones."""
    from featurekit.probes import make_probe

    built = make_probe(probe, **params).get_params(deep=True)
    return {k: v for k, v in built.items() if isinstance(v, (str, int, float, bool, type(None)))}
