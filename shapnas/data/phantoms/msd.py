"""Brain-tumour phantom in the Medical Segmentation Decathlon Task01 layout (4D images) or the nnU-Net v2
raw layout (``_0000`` channel files), so the generic ``msd`` loader is exercised (Antonelli et al., Nat.
Commun. 2022; nnU-Net ``dataset_format.md``).

MSD Task01 conventions: channels FLAIR, T1w, t1gd, T2w in one 4D file; labels 1 edema, 2 non-enhancing
tumour, 3 enhancing tumour (the brain phantom's NCR 1, ED 2, ET 3 are remapped accordingly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from shapnas.data.phantoms.brain import BRAIN_GRID, brain_case
from shapnas.data.phantoms.common import Grid
from shapnas.data.phantoms.writers import write_json, write_nifti

__all__ = ["write_msd", "MSD_CHANNELS", "MSD_LABELS"]

MSD_CHANNELS = ("FLAIR", "T1w", "t1gd", "T2w")  # same order as the brain phantom (flair, t1, t1ce, t2)
MSD_LABELS = ("background", "edema", "non-enhancing tumor", "enhancing tumour")
_TO_MSD = np.array([0, 2, 1, 3], dtype=np.uint8)  # phantom NCR 1 -> 2, ED 2 -> 1, ET 3 -> 3


def write_msd(out_dir: Path, rngs: list[np.random.Generator], variant: Literal["msd", "nnunet"] = "msd") -> Path:
    """Write ``{dataset.json, imagesTr, labelsTr}``: ``msd`` one 4D image per case and a v1 dataset.json
    (``"labels": {"0": "background", ...}``); ``nnunet`` ``<case>_000c.nii.gz`` channel files and a v2
    dataset.json (``"labels": {"background": 0, ...}``).

    Args:
        out_dir: the ``TaskXX_Name`` / ``DatasetXXX_Name`` folder to fill.
        rngs: one generator per patient.
        variant: ``msd`` or ``nnunet``.

    Returns:
        ``out_dir``.
    """
    if variant not in ("msd", "nnunet"):
        raise ValueError(f"variant={variant!r}; expected msd or nnunet")
    training = []
    for index, rng in enumerate(rngs):
        name = f"BRATS_{index + 1:03d}"
        grid = Grid(*BRAIN_GRID)
        image, label = brain_case(grid, rng)
        if variant == "msd":
            write_nifti(out_dir / "imagesTr" / f"{name}.nii.gz", image, grid.spacing)
        else:
            for c in range(image.shape[-1]):
                write_nifti(out_dir / "imagesTr" / f"{name}_{c:04d}.nii.gz", image[..., c], grid.spacing)
        write_nifti(out_dir / "labelsTr" / f"{name}.nii.gz", _TO_MSD[label], grid.spacing, dtype=np.uint8)
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    if variant == "msd":
        meta = {"name": "BRATS", "description": "synthetic phantom in the MSD Task01 layout (not real data)",
                "reference": "shapnas phantom", "licence": "CC-BY-SA 4.0", "release": "phantom",
                "tensorImageSize": "4D", "modality": {str(i): c for i, c in enumerate(MSD_CHANNELS)},
                "labels": {str(i): n for i, n in enumerate(MSD_LABELS)}, "numTraining": len(training), "numTest": 0,
                "training": training, "test": []}
    else:
        meta = {"channel_names": {str(i): c for i, c in enumerate(MSD_CHANNELS)},
                "labels": {n: i for i, n in enumerate(MSD_LABELS)}, "numTraining": len(training),
                "file_ending": ".nii.gz", "name": "BrainTumour phantom"}
    write_json(out_dir / "dataset.json", meta)
    return out_dir
