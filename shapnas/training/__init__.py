"""Training and evaluation: training loops (:mod:`.train`), validation and test evaluation
(:mod:`.evaluate`), segmentation metrics (:mod:`.metrics`) and prediction on volumes (:mod:`.predict`)."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("train", "evaluate", "metrics", "predict"))
