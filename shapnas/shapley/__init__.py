"""Shapley values: exact and Monte-Carlo estimators (:mod:`.monte_carlo`), the Aumann–Shapley and Owen
gradient estimators (:mod:`.aumann`) and the supernet game of a pruning round (:mod:`.supernet_game`)."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("monte_carlo", "aumann", "supernet_game"))
