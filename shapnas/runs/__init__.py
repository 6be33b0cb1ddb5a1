"""Run folders: atomic files and stage folders (:mod:`.files`), what a stage folder is and whether it may be
reused (:mod:`.identity`), and the one reader of finished runs (:mod:`.records`)."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("files", "identity", "records"))
