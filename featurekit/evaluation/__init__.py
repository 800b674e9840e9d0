"""Probes fitted on caches and scored: one fit per cache and probe (`fitting`), every cache x probe on the test
split (`compare`), on views and other test sets (`shifted_scoring`), training on clean + degraded views
(`train_views`)."""
