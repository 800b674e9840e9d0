"""Probes fitted on caches and scored, in one order of imports (each module uses only those before it):
`shifted_caches` (caches of views and of other test sets) -> `train_views` (training on clean + degraded views)
-> `fitting` (one cache + one probe -> a fitted probe with its valid threshold) -> `grid` (the one caches x probes
loop) and `scoring` (a fitted probe scored on a split) -> `shifted_scoring` (on views and other test sets) ->
`compare` (every cache x probe on the test split, as rows)."""
