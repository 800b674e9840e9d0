"""The HDF5 embedding cache: format and identity, lock, writer and merge, reader.

- `format`: the file's names, attributes, fingerprint and the default cache path;
- `checksums`: what a cache was when it was finished (content checksums, identity), checked on use;
- `lock`: one writer per cache; whether an extraction is under way;
- `batches`: finished batches of a running extraction, crash-safe, and their verification;
- `merge`: verified batches -> the finished cache file;
- `access`: the one reading interface of caches and fusions (load, stream in batches, split checks);
- `reader`: a finished cache, checked on open.
"""

from featurekit.cache.access import SplitAccess
from featurekit.cache.batches import PartialCache
from featurekit.cache.format import (
    IDENTITY_KEYS,
    cache_fingerprint,
    default_cache_path,
    describe_differences,
    library_versions,
    normalise_attr,
)
from featurekit.cache.lock import writer_lock
from featurekit.cache.merge import finalize_cache
from featurekit.cache.reader import CacheReader, open_cache

__all__ = [
    "IDENTITY_KEYS", "CacheReader", "PartialCache", "SplitAccess",
    "cache_fingerprint", "default_cache_path", "describe_differences", "finalize_cache", "library_versions",
    "normalise_attr", "open_cache", "writer_lock",
]
