"""Stability of searched cells across seeds: agreement metrics (:mod:`.metrics`), their chance levels over
random genotypes (:mod:`.chance`), and the report over a group of runs (:mod:`.report`)."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("report", "metrics", "chance"))
