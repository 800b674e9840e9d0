"""Whole jobs built from the library's steps: a config's extractions, fits and comparison (`workflow`), and the
valid-selected search over caches, probes and fusions (`sweep`)."""
