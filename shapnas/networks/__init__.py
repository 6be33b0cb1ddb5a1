"""Networks: backbones (:mod:`.backbones`) and their skip adapters (:mod:`.monai_adapters`, :mod:`.skip_adapter`;
nnU-Net's in :mod:`.nnunet`), candidate operations (:mod:`.ops`), genotypes (:mod:`.genotype`), the Implantable
Adaptive Cell (:mod:`.cells`) with its fused edges (:mod:`.fused_edges`, :mod:`.fused_plan`), the retrofit of a
U-Net (:mod:`.retrofit`) and checkpoints (:mod:`.checkpoints`).

For readers who know DARTS: ``operations`` is :mod:`.ops`, ``genotypes`` :mod:`.genotype`, ``model_search``
:mod:`.cells` with :mod:`.retrofit`."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("backbones", "monai_adapters", "skip_adapter", "ops", "genotype", "cells",
                                      "fused_edges", "fused_plan", "retrofit", "checkpoints"))
