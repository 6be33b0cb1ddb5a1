"""The search: the PC-DARTS loop over cells and α (:mod:`.loop`, DARTS' ``architect``/``train_search``) and the
pruning policies it applies (:mod:`.pruning`)."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("loop", "pruning"))
