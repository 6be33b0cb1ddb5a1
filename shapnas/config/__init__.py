"""Configuration: the stage configs (:mod:`.stage_configs`), the names of datasets, backbones, policies and
estimators (:mod:`.names`), and command-line style overrides (:mod:`.overrides`). Profiles live in
:mod:`shapnas.profiles`. The lowest layer: it imports nothing else of shapnas and no PyTorch."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("stage_configs", "names", "overrides", "arguments"))
