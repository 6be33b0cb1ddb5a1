"""Data: official on-disk layouts (:mod:`.layouts`), volumes and slices (:mod:`.volumes`), patient splits
(:mod:`.splits`), the prepared training data of a run (:mod:`.prepared`) and the embedded phantoms
(:mod:`.phantoms`)."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("prepared", "layouts", "volumes", "splits"))
