"""Extraction as request -> plan -> run (the public entry points are in `featurekit.extraction.extract`).

- `request`: the typed request (`ExtractionRequest`), made once from settings checked against their declarations.
- `embedder_request`: the `Tap`s and the `EmbedderRequest` that rebuilds the embedder in any process (each
  registry entry checks, builds and names itself: nothing here asks which kind it is).
- `plan`: the targets, their cache names, what is cached already, the resume check, the batch size.
- `memory`: a batch's memory, estimated before anything runs.
- `run`: the engine computes the missing batches; each cache is finalised.
- `progress`: a rich progress bar, for callers that show one.
"""
