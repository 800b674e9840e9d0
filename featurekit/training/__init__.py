"""Training a backbone from scratch (`train-backbone`), split by job: checks, state, callbacks, model, runner."""
