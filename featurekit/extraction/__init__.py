"""Extraction as request -> plan -> run (the public entry points are in `featurekit.extraction.extract`).

- `request`: the typed, validated request (`ExtractionRequest`, its `Tap`s), checked once.
- `entries`: what differs between a Keras backbone and a hand-made feature (check, build, name).
- `plan`: the targets, their cache names, what is cached already, the resume check, the batch size.
- `memory`: a batch's memory, estimated before anything runs.
- `run`: the engine computes the missing batches; each cache is finalised.
- `progress`: a rich progress bar, for callers that show one.
"""
